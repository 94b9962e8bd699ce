"""Dimension drill-down: the smallest set of dimension-value combinations that explains a deviation.

Input is a cube of leaves (one row per combination of dimension values) with an actual and an expected
value. The search runs in NumPy over integer codes, so the leaves can come from one pushed-down GROUP BY.

The method, in four steps (docs/rca.md has a worked example):

1. Each leaf gets a deviation score ``d = 2 (actual - expected) / (|actual| + |expected|)``, bounded in
   [-2, 2] and 0 when both are 0. Ordinary leaves scatter around 0; the scatter is measured robustly
   over the leaves themselves (median absolute deviation, weighted by size), so no noise level is
   assumed. A leaf is *abnormal* when its score is far outside that scatter and its absolute
   deviation is more than a small leaf's chance.
2. Every combination of up to ``max_depth`` dimensions is a candidate element. For each, in one
   ``bincount`` per dimension subset: its *purity* (how much of its volume is abnormal, in one direction)
   and its *coverage* (what share of the remaining abnormal deviation it holds).
3. The element with the best harmonic mean of purity and coverage is taken; a more general element wins
   a tie. Its leaves are set aside, and the search repeats on what is left. An ancestor of the true
   cause has low purity (it mixes in ordinary leaves), a descendant low coverage (it holds only part),
   which is why the harmonic mean finds the right depth.
4. It stops when what is left is not significant: the next element explains too little of the deviation,
   its own aggregate is within noise, or the abnormal leaves left are too few to be more than chance.

Ratios are explained by their numerator and denominator (``ratio_effects``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metricloop.errors import MetricloopError

MAX_DEPTH = 3
MAX_CAUSES = 5
HUBER = 3.0
# a cause must explain at least this share of what the strongest cause explains: no padding with weak ones
MIN_RELATIVE_GAIN = 0.02
# nor is a cause one that moves less than this share of the cube's total volume (a single small leaf's chance)
MIN_VOLUME_SHARE = 0.001


@dataclass
class Cause:
    dimensions: dict[str, str]
    actual: float
    expected: float
    share: float  # of the total deviation (actual - expected), signed share
    leaves: int = 0
    effects: dict[str, float] | None = None  # ratios: the rate and mix effects on the total ratio

    @property
    def deviation_pct(self) -> float | None:
        if self.expected == 0:
            return None
        return 100.0 * (self.actual - self.expected) / abs(self.expected)

    def label(self) -> str:
        return " & ".join(f"{k}={v}" for k, v in self.dimensions.items())

    def to_dict(self) -> dict:
        pct = self.deviation_pct
        return {
            "dimensions": self.dimensions,
            "actual": _round(self.actual),
            "expected": _round(self.expected),
            "deviation_pct": None if pct is None else round(pct, 2),
            "share": round(self.share, 4),
            **({"effects": {k: _round(x) for k, x in self.effects.items()}} if self.effects else {}),
        }


@dataclass
class Result:
    causes: list[Cause]
    actual: float
    expected: float
    leaves: int
    significant: bool
    warnings: list[str] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict:
        out: dict = {
            "causes": [c.to_dict() for c in self.causes],
            "total": {"actual": _round(self.actual), "expected": _round(self.expected), "leaves": self.leaves},
        }
        if self.message:
            out["message"] = self.message
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def _round(x: float) -> float:
    return float(f"{x:.6g}") if math.isfinite(x) else x


# ------------------------------------------------------------------ input


def _dimensions(frame: pd.DataFrame, dims: list[str] | None, *, exclude, where: str) -> list[str]:
    """The dimension columns: those named, or every non-numeric column."""
    if dims is None:
        dims = [c for c in frame.columns if c not in exclude and not pd.api.types.is_numeric_dtype(frame[c])]
    missing = [d for d in dims if d not in frame.columns]
    if missing:
        raise MetricloopError(f"no dimension column {', '.join(map(repr, missing))}", where=where)
    if not dims:
        raise MetricloopError(
            "the cube has no dimension columns: name them with --dims (every non-numeric column is one by default)",
            where=where,
        )
    return list(dims)


def prepare_cube(
    frame: pd.DataFrame, *, actual: str, expected: str, dims: list[str] | None = None, where: str = "input"
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Check and clean a leaf table: the dimension columns (default: every non-numeric column), duplicates
    summed, NaN values dropped. Returns (frame, dims, warnings)."""
    warnings: list[str] = []
    for col in (actual, expected):
        if col not in frame.columns:
            raise MetricloopError(f"no column '{col}' (columns: {', '.join(map(str, frame.columns))})", where=where)
    dims = _dimensions(frame, dims, exclude=(actual, expected), where=where)
    out = frame[dims + [actual, expected]].copy()
    for col in (actual, expected):
        vals = pd.to_numeric(out[col], errors="coerce")
        bad = int(vals.isna().sum() - out[col].isna().sum())
        if bad:
            warnings.append(f"{bad} value(s) in '{col}' are not numbers and were dropped")
        out[col] = vals
    nan_rows = out[[actual, expected]].isna().any(axis=1) | ~np.isfinite(out[[actual, expected]]).all(axis=1)
    if nan_rows.any():
        warnings.append(f"{int(nan_rows.sum())} leaf row(s) with a missing actual or expected value were left out")
        out = out[~nan_rows]
    for d in dims:
        out[d] = out[d].astype("string").fillna("(missing)")
    dup = out.duplicated(subset=dims, keep=False)
    if dup.any():
        n = int(out.duplicated(subset=dims).sum())
        warnings.append(f"{n} duplicate leaf row(s) (same dimension values) were summed")
        out = out.groupby(dims, as_index=False, sort=False, observed=True)[[actual, expected]].sum()
    if ((out[actual] < 0) | (out[expected] < 0)).any():
        warnings.append("some values are negative: deviations are scored on absolute size")
    return out.reset_index(drop=True), list(dims), warnings


# ------------------------------------------------------------------ search


def _size_bins(f: np.ndarray, informative: np.ndarray) -> np.ndarray:
    """Each informative leaf's bin of similar expected value (about 50 leaves or more a bin); −1 elsewhere."""
    idx = np.flatnonzero(informative)
    out = np.full(len(f), -1, dtype=np.int64)
    if len(idx) == 0:
        return out
    order = idx[np.argsort(np.abs(f[idx]), kind="stable")]
    n_bins = int(np.clip(len(idx) // 50, 1, 30))
    for k, chunk in enumerate(np.array_split(order, n_bins)):
        out[chunk] = k
    return out


def leaf_scores(v: np.ndarray, f: np.ndarray, clip: float = HUBER) -> np.ndarray:
    """Each leaf's standardised deviation, learnt from the cube itself; 0 for a leaf empty on both sides.

    The leaves are cut into bins of similar expected value (under chance, what the scatter depends on; the
    actual would put a leaf that fell to 0 among smaller, quieter leaves). In each bin:
    1. the scatter of actual − expected is measured robustly: the larger of the MAD and the spread of the
       central 98 % (the MAD alone reads a bin of mostly-empty counts, 0 0 0 1, as noiseless), so the
       leaves under a cause, a minority in every bin, do not inflate it. No noise model is assumed: counts,
       relative noise and a constant jitter all come out of the same fit;
    2. the deviation in those units is clipped at ±clip (a Huber score), so a few leaves in a heavy tail
       cannot make an element significant alone. (Clipping a skewed count leaves a small bias
       that thousands of leaves add up; re-centring per bin was tried and is worse, since a large cause
       shifts its bins' centre. The search's relative-gain rule keeps such elements out instead.)
    """
    informative = (np.abs(v) + np.abs(f)) > 0
    score = np.zeros(len(v))
    if not informative.any():
        return score
    bins = _size_bins(f, informative)
    dev = v - f
    size = np.abs(f)
    centres, scatters = [], []
    for k in range(int(bins.max()) + 1):
        sel = bins == k
        d = dev[sel]
        mad = 1.4826 * float(np.median(np.abs(d - np.median(d))))
        lo, hi = np.quantile(d, [0.01, 0.99])
        central = d[(d >= lo) & (d <= hi)]
        spread = float(np.sqrt(np.mean((central - central.mean()) ** 2) / 0.8735)) if len(central) else 0.0
        centres.append(float(np.median(size[sel])))
        scatters.append(max(mad, spread))
    # between bins the scatter is interpolated on log size and never falls as size grows; above the largest
    # bin it grows in proportion (relative noise); below the smallest it stays
    c = np.maximum(np.array(centres), 1e-12)
    floor = 1e-3 * max(float(size[informative].mean()), 1e-12)
    sc = np.maximum.accumulate(np.maximum(np.array(scatters), floor))
    scale = np.interp(np.log(np.maximum(size, 1e-12)), np.log(c), sc)
    above = size > c[-1]
    scale[above] = sc[-1] * size[above] / c[-1]
    score[informative] = np.clip(dev[informative] / scale[informative], -clip, clip)
    return score

def _codes(frame: pd.DataFrame, dims: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    codes = np.empty((len(dims), len(frame)), dtype=np.int64)
    uniques = []
    for i, dim in enumerate(dims):
        c, u = pd.factorize(frame[dim], sort=False)
        codes[i] = c
        uniques.append(np.asarray(u, dtype=object))
    return codes, uniques


def _subsets(n_dims: int, max_depth: int) -> list[tuple[int, ...]]:
    return [s for depth in range(1, min(max_depth, n_dims) + 1) for s in itertools.combinations(range(n_dims), depth)]


def find_causes(
    frame: pd.DataFrame,
    *,
    actual: str = "actual",
    expected: str = "expected",
    dims: list[str] | None = None,
    max_depth: int = MAX_DEPTH,
    max_causes: int = MAX_CAUSES,
    sensitivity: float = 5.0,
    where: str = "input",
    direction: str | None = None,
    noise: str | None = None,
) -> Result:
    """The combinations that explain the deviation of the cube's total, most important first. `noise` names a
    column with each leaf's own noise sd (the detector's, from the leaf's past); without it the scatter is learnt
    across the cube's leaves (leaf_scores). With a `direction`
    ("down" for a drop, "up" for a rise) only combinations that moved that way are causes: one large order in
    another store does not explain a store's drop."""
    cube, dims, warnings = prepare_cube(frame, actual=actual, expected=expected, dims=dims, where=where)
    if noise is not None:  # each leaf's own sd, carried beside it (duplicate leaves add their variances)
        sd = frame[dims].astype("string").fillna("(missing)")
        sd["__var"] = pd.to_numeric(frame[noise], errors="coerce").to_numpy(dtype=np.float64) ** 2
        sd = sd.groupby(dims, as_index=False, sort=False, observed=True)["__var"].sum(min_count=1)
        cube = cube.merge(sd, on=dims, how="left")
        cube["__noise"] = np.sqrt(cube.pop("__var"))
    v = cube[actual].to_numpy(dtype=np.float64)
    f = cube[expected].to_numpy(dtype=np.float64)
    total_v, total_f = float(v.sum()), float(f.sum())
    n = len(cube)
    if n == 0:
        return Result([], 0.0, 0.0, 0, False, warnings, "the cube has no leaves")
    if np.all(f == 0):
        return Result([], total_v, total_f, n, False, warnings + ["every expected value is 0"],
                      "no expected values to compare against (all are 0)")
    # The test of an element: Stouffer's z over its leaves' standardised deviations (leaf_scores),
    # z = Σ score / √n with n the leaves that carry information. Many leaves that agree make it large even
    # where one big noisy leaf dominates the element's total. (Weighting by the expected value, the score
    # test of the ripple ratio, is biased: a forecast that came out high is one the actual falls short of.)
    den = ((np.abs(v) + np.abs(f)) > 0).astype(np.float64)
    codes, uniques = _codes(cube, dims)
    cards = [len(u) for u in uniques]
    groups = []  # per dimension subset: each leaf's element index, the element count, each element's key
    for subset in _subsets(len(dims), max_depth):
        key = np.zeros(n, dtype=np.int64)
        for i in subset:
            key = key * cards[i] + codes[i]
        inv, ukey = pd.factorize(key, sort=False)
        groups.append((subset, inv.astype(np.int32), len(ukey), ukey))
    n_candidates = sum(m for _, _, m, _ in groups)
    # how far beyond chance an element's own aggregate must be: the largest of n_candidates normal z-scores
    # is about sqrt(2 ln n); sensitivity 5 asks 1 sd more, 10 asks none, 0 asks 2.
    z_needed = math.sqrt(2 * math.log(max(n_candidates, 2))) + (10 - float(sensitivity)) * 0.2
    # a leaf counts at most a little beyond that threshold: one leaf far out can be a cause on its own (a
    # store whose sales fell 80 %), but a few leaves far out cannot outvote the many that agree elsewhere
    clip = max(HUBER, z_needed + 0.5)
    if noise is not None:
        sd = cube["__noise"].to_numpy(dtype=np.float64)
        ok = np.isfinite(sd) & (sd > 0)
        num = leaf_scores(v, f, clip=clip)
        with np.errstate(invalid="ignore", divide="ignore"):
            num[ok] = np.clip((v[ok] - f[ok]) / sd[ok], -clip, clip)
    else:
        num = leaf_scores(v, f, clip=clip)
    alive = np.ones(n, dtype=bool)
    volume = float(np.abs(f).sum() + np.abs(v).sum()) / 2
    causes: list[Cause] = []
    first_gain = None
    sign = {"down": -1.0, "up": 1.0}.get(direction or "", 0.0)

    for _ in range(max_causes):
        best = None  # ((gain, -depth), subset, key)
        va, fa = v * alive, f * alive
        base_err = np.abs(va - fa)
        score_num, score_den = num * alive, den * alive
        for subset, inv, m, ukey in groups:
            sv = np.bincount(inv, weights=va, minlength=m)
            sf = np.bincount(inv, weights=fa, minlength=m)
            a = np.bincount(inv, weights=score_num, minlength=m)
            b = np.bincount(inv, weights=score_den, minlength=m)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(sf != 0, sv / np.where(sf != 0, sf, 1.0), 1.0)
                z = np.abs(a) / np.sqrt(np.where(b > 0, b, np.inf))
            # the ripple hypothesis: every leaf of the element moved by the element's own ratio
            fitted_err = np.abs(va - fa * ratio[inv])
            gain = np.bincount(inv, weights=base_err - fitted_err, minlength=m)
            gain[z < z_needed] = -np.inf
            if sign:
                gain[(sv - sf) * sign <= 0] = -np.inf
            j = int(np.argmax(gain))
            cand = (float(gain[j]), -len(subset))
            if best is None or cand > best[0]:
                best = (cand, subset, int(ukey[j]))
        if best is None:
            break
        (gain, _), subset, keyval = best
        if not math.isfinite(gain) or gain <= 0:
            break
        if first_gain is None:
            first_gain = gain
        elif gain < MIN_RELATIVE_GAIN * first_gain:
            break
        values = []
        rest = keyval
        for i in reversed(subset):
            values.append(rest % cards[i])
            rest //= cards[i]
        values.reverse()
        mask = alive.copy()
        for i, val in zip(subset, values, strict=True):
            mask &= codes[i] == val
        e_v, e_f = float(v[mask].sum()), float(f[mask].sum())
        if abs(e_v - e_f) < MIN_VOLUME_SHARE * volume:
            alive &= ~mask  # immaterial: set aside, and look on
            continue
        causes.append(
            Cause(
                dimensions={dims[i]: str(uniques[i][val]) for i, val in zip(subset, values, strict=True)},
                actual=e_v,
                expected=e_f,
                share=0.0,
                leaves=int(mask.sum()),
            )
        )
        alive &= ~mask

    total_dev = total_v - total_f
    denom = total_dev if abs(total_dev) > 1e-12 else sum(c.actual - c.expected for c in causes) or 1.0
    for c in causes:
        c.share = (c.actual - c.expected) / denom
    msg = "" if causes else "no significant deviation: no combination of dimension values stands out"
    return Result(causes, total_v, total_f, n, bool(causes), warnings, msg)


# ------------------------------------------------------------------ ratios


def find_ratio_causes(
    frame: pd.DataFrame,
    *,
    actual_num: str,
    actual_den: str,
    expected_num: str,
    expected_den: str,
    dims: list[str] | None = None,
    max_depth: int = MAX_DEPTH,
    sensitivity: float = 5.0,
    where: str = "input",
    direction: str | None = None,
    noise: str | None = None,
) -> Result:
    """Explain a ratio (e.g. on-time / orders) by where its *rate* moved, and say for each cause how much of
    the total ratio's change is the rate effect (those leaves got worse) and how much the mix effect (their
    share of the denominator moved, towards or away from leaves with a different rate).

    The search compares each leaf's actual numerator with the numerator it would have had at its expected
    rate on its actual volume (expected_num / expected_den × actual_den), so a leaf whose volume grew but
    whose rate held is not a cause."""
    cols = [actual_num, actual_den, expected_num, expected_den]
    warnings: list[str] = []
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise MetricloopError(f"no column {', '.join(map(repr, missing))}", where=where)
    dims = _dimensions(frame, dims, exclude=cols, where=where)
    work = frame[dims + cols].copy()
    for c in cols:
        work[c] = pd.to_numeric(work[c], errors="coerce")
    bad = work[cols].isna().any(axis=1)
    if bad.any():
        warnings.append(f"{int(bad.sum())} leaf row(s) with a missing value were left out")
        work = work[~bad]
    for d in dims:
        work[d] = work[d].astype("string").fillna("(missing)")
    extra = [noise] if noise is not None else []
    if noise is not None:
        work[noise] = pd.to_numeric(frame.loc[work.index, noise], errors="coerce") ** 2  # variances add
    work = work.groupby(dims, as_index=False, sort=False, observed=True)[cols + extra].sum()
    if noise is not None:
        work[noise] = np.sqrt(work[noise])
    na, da, ne, de = (work[c].to_numpy(dtype=np.float64) for c in cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_e = np.where(de != 0, ne / np.where(de != 0, de, 1.0), 0.0)
    work["_actual"] = na
    work["_expected"] = rate_e * da
    res = find_causes(work, actual="_actual", expected="_expected", dims=dims, max_depth=max_depth,
                      sensitivity=sensitivity, where=where, direction=direction, noise=noise)
    res.warnings = warnings + [w for w in res.warnings if w not in warnings]
    total_a = na.sum() / da.sum() if da.sum() else float("nan")
    total_e = ne.sum() / de.sum() if de.sum() else float("nan")
    res.actual, res.expected = float(total_a), float(total_e)
    d_share_a = da / da.sum() if da.sum() else da * 0
    d_share_e = de / de.sum() if de.sum() else de * 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_a = np.where(da != 0, na / np.where(da != 0, da, 1.0), rate_e)
    change = total_a - total_e
    for cause in res.causes:
        mask = np.ones(len(work), dtype=bool)
        for k, val in cause.dimensions.items():
            mask &= (work[k] == val).to_numpy()
        rate_effect = float((d_share_a[mask] * (rate_a[mask] - rate_e[mask])).sum())
        mix_effect = float(((d_share_a[mask] - d_share_e[mask]) * (rate_e[mask] - total_e)).sum())
        cause.actual = float(na[mask].sum() / da[mask].sum()) if da[mask].sum() else float("nan")
        cause.expected = float(ne[mask].sum() / de[mask].sum()) if de[mask].sum() else float("nan")
        cause.share = (rate_effect + mix_effect) / change if change else 0.0
        cause.effects = {"rate": rate_effect, "mix": mix_effect}
    return res
