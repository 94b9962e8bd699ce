"""Root-cause analysis of one metric at one bucket: where it moved (drill-down) and what moved with it
(related metrics), with an explanation in zh and en. The ad hoc CLI and every incident use this."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from metricloop.metrics.slices import parse_slice
from metricloop.rca.cube import LeafCube, leaf_cube
from metricloop.rca.drilldown import Cause, find_causes, find_ratio_causes

TOP_IN_MESSAGES = 3


@dataclass
class RcaReport:
    metric: str
    at: datetime
    grain: str
    dims: list[str]
    where: dict[str, list[str]]
    actual: float
    expected: float
    lower: float | None
    upper: float | None
    leaves: int
    significant: bool
    causes: list[dict]
    related: list[dict] = field(default_factory=list)
    explanation_zh: str = ""
    explanation_en: str = ""
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    sql: list[str] = field(default_factory=list)

    def to_dict(self, *, with_sql: bool = False) -> dict:
        out = {
            "metric": self.metric,
            "at": self.at.isoformat(),
            "grain": self.grain,
            "dimensions": self.dims,
            "where": self.where,
            "total": {"actual": _num(self.actual), "expected": _num(self.expected), "lower": _num(self.lower),
                      "upper": _num(self.upper), "deviation_pct": _pct(self.actual, self.expected),
                      "leaves": self.leaves},
            "significant": self.significant,
            "causes": self.causes,
            "related": self.related,
            "explanation_zh": self.explanation_zh,
            "explanation_en": self.explanation_en,
        }
        if self.message:
            out["message"] = self.message
        if self.warnings:
            out["warnings"] = self.warnings
        out["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        if with_sql:
            out["sql"] = self.sql
        return out


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.6g}") if np.isfinite(x) else None


def _pct(a, e) -> float | None:
    if a is None or e is None or not np.isfinite(e) or e == 0:
        return None
    return round(100.0 * (a - e) / abs(e), 2)


def consistent(dims: dict[str, str], slices: list[str]) -> bool:
    """A cause belongs to an incident when it contradicts none of its slices' values on a shared dimension
    (store=SH-003 & category=Fresh belongs to store=SH-003; store=BJ-001 does not)."""
    if not slices:
        return True
    for sl in slices:
        fixed = parse_slice(sl)
        if all(dims.get(k, v) == v for k, v in fixed.items()):
            return True
    return False


def _mask(leaves, dims: dict[str, str]) -> np.ndarray:
    m = np.ones(len(leaves), dtype=bool)
    for k, v in dims.items():
        m &= (leaves[k] == v).to_numpy()
    return m


def search(cube: LeafCube, direction: str | None = None, sensitivity: float = 5.0) -> tuple[list[Cause], list[str]]:
    """The drill-down in NumPy over the cube's leaves (additive or ratio), for a move in `direction`.

    A later cause that holds an earlier one's leaves is the same cause found in two parts (the search took the
    purest child first, then what was left of its parent): the two are one cause, the parent."""
    leaves = cube.leaves
    where = f"metric {cube.metric.name}"
    if cube.metric.is_ratio:
        res = find_ratio_causes(leaves, actual_num="actual_num", actual_den="actual_den",
                                expected_num="expected_num", expected_den="expected_den", dims=cube.dims,
                                where=where, direction=direction, noise="noise", sensitivity=sensitivity)
    else:
        res = find_causes(leaves, actual="actual", expected="expected", dims=cube.dims, where=where,
                          direction=direction, noise="noise", sensitivity=sensitivity)
    causes: list[Cause] = []
    masks: list[np.ndarray] = []
    for c in res.causes:
        m = _mask(leaves, c.dimensions)
        merged = False
        for i, earlier in enumerate(masks):
            if (earlier & ~m).sum() == 0:  # this one holds the earlier cause: it is that cause, whole
                causes[i], masks[i] = c, m
                merged = True
                break
        if not merged:
            causes.append(c)
            masks.append(m)
    sign = {"down": -1.0, "up": 1.0}.get(direction or "", 0.0)
    for i, c in enumerate(causes):
        taken = np.zeros(len(leaves), dtype=bool)
        for j, other in enumerate(masks):
            if j != i:
                taken |= other
        causes[i], masks[i] = _generalise(cube, c, masks[i], sign, taken)
    for c, m in zip(causes, masks, strict=True):
        _numbers(cube, c, m)
    return causes, res.warnings


REST_Z = 2.0  # how clearly the rest of a parent must have moved the same way for the parent to be the cause


def _leaf_z(cube: LeafCube) -> np.ndarray:
    """Each leaf's deviation in its own noise sd (the detector's), 0 where the noise is unknown."""
    leaves = cube.leaves
    if cube.metric.is_ratio:
        fair = np.nan_to_num(leaves["expected_rate"] / cube.metric.ratio.scale, nan=0.0) * leaves["actual_den"]
        dev = (leaves["actual_num"] - fair).to_numpy(dtype=np.float64)
    else:
        dev = (leaves["actual"] - leaves["expected"]).to_numpy(dtype=np.float64)
    sd = leaves["noise"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(np.isfinite(sd) & (sd > 0), dev / sd, 0.0)
    return np.clip(z, -5.0, 5.0)


def _generalise(cube: LeafCube, c: Cause, m: np.ndarray, sign: float, taken: np.ndarray) -> tuple[Cause, np.ndarray]:
    """A cause whose parent's other leaves moved the same way, clearly, is the parent (ZTO late in South on
    every channel, found first on the channel where it was worst). One dimension is dropped at a time, while the
    rest of the parent passes REST_Z (Stouffer over its leaves) and moved at least half as far, relatively. A parent
    that would hold another cause's leaves (`taken`) is not taken: the two stay apart."""
    if not sign or len(c.dimensions) < 2:
        return c, m
    z = _leaf_z(cube)
    leaves = cube.leaves
    while len(c.dimensions) >= 2:
        best = None
        own = _rel(cube, m)
        for d in c.dimensions:
            parent = {k: v for k, v in c.dimensions.items() if k != d}
            pm = _mask(leaves, parent)
            if (pm & taken).any():
                continue
            rest = pm & ~m
            n = int(rest.sum())
            if n == 0:
                continue
            zr = sign * float(z[rest].sum()) / np.sqrt(n)
            if zr >= REST_Z and sign * _rel(cube, rest) >= 0.5 * sign * own and (best is None or zr > best[0]):
                best = (zr, parent, pm)
        if best is None:
            break
        c = Cause(dimensions=best[1], actual=0.0, expected=0.0, share=0.0, effects=c.effects)
        m = best[2]
    return c, m


def _rel(cube: LeafCube, m: np.ndarray) -> float:
    leaves = cube.leaves
    if cube.metric.is_ratio:
        ad = float(leaves["actual_den"][m].sum())
        fair = float((np.nan_to_num(leaves["expected_rate"][m] / cube.metric.ratio.scale, nan=0.0)
                      * leaves["actual_den"][m]).sum())
        return (float(leaves["actual_num"][m].sum()) - fair) / fair if ad and fair else 0.0
    e = float(leaves["expected"][m].sum())
    return (float(leaves["actual"][m].sum()) - e) / abs(e) if e else 0.0


def _numbers(cube: LeafCube, c: Cause, m: np.ndarray) -> None:
    """A cause's actual, expected (and for a ratio its rate and mix effects), read from its leaves."""
    leaves = cube.leaves
    c.leaves = int(m.sum())
    if not cube.metric.is_ratio:
        c.actual, c.expected = float(leaves["actual"][m].sum()), float(leaves["expected"][m].sum())
        return
    s = cube.metric.ratio.scale
    na, da = leaves["actual_num"].to_numpy(float), leaves["actual_den"].to_numpy(float)
    ne, de = leaves["expected_num"].to_numpy(float), leaves["expected_den"].to_numpy(float)
    c.actual = float(na[m].sum() / da[m].sum() * s) if da[m].sum() else float("nan")
    c.expected = float(ne[m].sum() / de[m].sum() * s) if de[m].sum() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_e = np.where(de != 0, ne / np.where(de != 0, de, 1.0), 0.0)
        rate_a = np.where(da != 0, na / np.where(da != 0, da, 1.0), rate_e)
    total_e = ne.sum() / de.sum() if de.sum() else 0.0
    share_a = da / da.sum() if da.sum() else da * 0
    share_e = de / de.sum() if de.sum() else de * 0
    c.effects = {"rate": float((share_a[m] * (rate_a[m] - rate_e[m])).sum()) * s,
                 "mix": float(((share_a[m] - share_e[m]) * (rate_e[m] - total_e)).sum()) * s}
    change = (na.sum() / da.sum() - total_e) * s if da.sum() else 0.0
    c.share = (c.effects["rate"] + c.effects["mix"]) / change if change else 0.0


def analyse(
    ws,
    metric: str,
    *,
    at: str | datetime,
    by: list[str] | None = None,
    keep: list[str] | None = None,
    where: dict[str, list[str]] | None = None,
    grain: str | None = None,
    detector: dict | None = None,
    calendar=None,
    slices: list[str] | None = None,
    direction: str | None = None,
    require_anomaly: bool = True,
    with_related: bool = True,
    catalog=None,
    cache: dict | None = None,
) -> RcaReport:
    """Explain `metric` at bucket `at`. `slices` (an incident's) keep only the causes that belong to them and
    pick the slice related metrics are read on. With `require_anomaly`, a total inside its band is reported as
    "no significant deviation" and no cause is named (an incident has already been judged abnormal)."""
    catalog = catalog or ws.catalog()
    spec = catalog.metric(metric)
    t0 = time.perf_counter()
    # one monitor run opens many incidents on the same bucket (40 stores): they share one cube (`cache`)
    key = (metric, str(at), tuple(by or ()), tuple(keep or ()), grain, repr(sorted((where or {}).items())),
           repr(detector), id(calendar) if calendar is not None else None)  # (a cached calendar stays alive)
    cube = cache.get(key) if cache is not None else None
    if cube is None:
        cube = leaf_cube(ws, metric, at=at, dims=by, keep=keep, grain=grain, where=where, detector=detector,
                         calendar=calendar, catalog=catalog)
        if cache is not None:
            cache[key] = cube
    t1 = time.perf_counter()
    causes: list[Cause] = []
    warnings = list(cube.warnings)
    message = ""
    if require_anomaly and not cube.total_flagged:
        message = (f"no significant deviation: {spec.name} at {cube.at:%Y-%m-%d %H:%M} is inside its expected band "
                   f"({_band_text(cube)}); no cause is named · 无显著偏差：未发现异常，不给出原因")
    else:
        if direction is None and np.isfinite(cube.total_expected):
            direction = "down" if cube.total_actual < cube.total_expected else "up"
        # an incident's slice has passed the alert's own test already: the search localises it and is asked for
        # less proof than an ad hoc look at a total that may hold nothing (sensitivity 10 drops the extra 1 sd)
        causes, more = search(cube, direction, sensitivity=10.0 if slices else 5.0)
        warnings += more
        if slices:
            causes = [c for c in causes if consistent(c.dimensions, slices)]
            causes = _whole_slice(cube, causes, slices, direction) if causes else _slice_itself(cube, slices)
        if not causes:
            message = "no significant deviation: no combination of dimension values stands out · 无显著偏差"
    # a cause inside `--where store=SH-003` is named with it: store=SH-003 & channel=store
    pinned = {k: v[0] for k, v in (where or {}).items() if len(v) == 1}
    for c in causes:
        c.dimensions = {**{k: v for k, v in pinned.items() if k not in c.dimensions}, **c.dimensions}
    t2 = time.perf_counter()
    total_dev = _deviation(cube, slices)
    cause_rows = []
    for i, c in enumerate(causes, 1):
        row = c.to_dict()
        row["rank"] = i
        row["label"] = c.label()
        row["leaves"] = c.leaves
        if not spec.is_ratio and total_dev:
            row["share"] = round((c.actual - c.expected) / total_dev, 4)
        cause_rows.append(row)
    report = RcaReport(
        metric=spec.name, at=cube.at, grain=cube.grain, dims=cube.dims, where=dict(where or {}),
        actual=cube.total_actual, expected=cube.total_expected, lower=cube.total_lower, upper=cube.total_upper,
        leaves=len(cube.leaves), significant=bool(cause_rows), causes=cause_rows, message=message,
        warnings=warnings, sql=cube.sql,
    )
    if with_related and cause_rows:
        from metricloop.rca.related import related_report

        focus = _focus(slices, cause_rows)
        report.related = related_report(ws, catalog, spec, at=cube.at, grain=cube.grain, focus=focus,
                                        calendar=calendar)
    t3 = time.perf_counter()
    from metricloop.rca.explain import explain

    report.explanation_zh, report.explanation_en = explain(spec, report, slices=slices, cube=cube)
    report.seconds = {"leaves_query_and_expected": t1 - t0, "search": t2 - t1, "related": t3 - t2}
    return report


def _slice_mask(cube: LeafCube, slices: list[str] | None) -> tuple[dict[str, str], np.ndarray | None]:
    """The lead slice and its leaves (all of them when the cube was read inside it, `--where`); never the total."""
    fixed = parse_slice(slices[0]) if slices else {}
    if not fixed:
        return {}, None
    inside = {k: v for k, v in fixed.items() if k in cube.leaves}
    m = _mask(cube.leaves, inside)
    return fixed, m if m.any() else None


def _slice_itself(cube: LeafCube, slices: list[str]) -> list[Cause]:
    """When nothing finer stands out, the incident's own slice is the combination that explains it: the alert's
    test has already found it abnormal (a store whose every part fell alike). Never the total."""
    fixed, m = _slice_mask(cube, slices)
    if m is None:
        return []
    c = Cause(dimensions=fixed, actual=0.0, expected=0.0, share=0.0)
    _numbers(cube, c, m)
    return [c]


def _whole_slice(cube: LeafCube, causes: list[Cause], slices: list[str] | None, direction: str | None) -> list[Cause]:
    """The slice itself, when the leaves of it outside the causes moved the same way, clearly (the rule that makes
    a cause its parent): a channel whose every region fell to 0 is the channel, not its largest region."""
    sign = {"down": -1.0, "up": 1.0}.get(direction or "", 0.0)
    fixed, m = _slice_mask(cube, slices)
    if not sign or m is None or not causes:
        return causes
    taken = np.zeros(len(cube.leaves), dtype=bool)
    for c in causes:
        taken |= _mask(cube.leaves, {k: v for k, v in c.dimensions.items() if k in cube.leaves})
    rest = m & ~taken
    n = int(rest.sum())
    if n == 0:  # the causes hold all of the slice: moving the same way, they are the slice, told in parts
        same = all(sign * (c.actual - c.expected) > 0 for c in causes)
        return _slice_itself(cube, slices) if len(causes) > 1 and same else causes
    zr = sign * float(_leaf_z(cube)[rest].sum()) / np.sqrt(n)
    if zr >= REST_Z and sign * _rel(cube, rest) >= 0.5 * sign * _rel(cube, m & taken):
        return _slice_itself(cube, slices)
    return causes


def _band_text(cube: LeafCube) -> str:
    def f(x):
        return "?" if x is None or not np.isfinite(x) else f"{x:,.4g}"

    return f"actual {f(cube.total_actual)}, expected {f(cube.total_expected)}, band {f(cube.total_lower)}–" \
           f"{f(cube.total_upper)}"


def _deviation(cube: LeafCube, slices: list[str] | None) -> float:
    """actual − expected summed over the leaves of the incident's slices (the whole cube without slices)."""
    leaves = cube.leaves
    if "actual" not in leaves:
        return 0.0
    mask = np.zeros(len(leaves), dtype=bool) if slices else np.ones(len(leaves), dtype=bool)
    for sl in slices or []:
        fixed = parse_slice(sl)
        if any(k not in leaves for k in fixed):
            continue
        m = np.ones(len(leaves), dtype=bool)
        for k, v in fixed.items():
            m &= (leaves[k] == v).to_numpy()
        mask |= m
        break  # the lead slice: the incident's first, its broadest
    if not mask.any():
        mask[:] = True
    return float((leaves["actual"][mask] - leaves["expected"][mask]).sum())


def _focus(slices: list[str] | None, causes: list[dict]) -> dict[str, str]:
    """Where related metrics are read: the incident's lead slice, or (for a total) its top cause."""
    fixed = parse_slice(slices[0]) if slices else {}
    if fixed:
        return fixed
    return dict(causes[0]["dimensions"]) if causes else {}
