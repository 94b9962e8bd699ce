"""Each series judged in its own noise family, learnt from its own past (docs/detectors.md, "Each
series in its own noise family"): sparse rates and sums as counts of lumps (`run_by_family`), a
count's runs tested as a count (`count_runs`), noise learnt per hour of the day (`slot_noise_factor`),
holiday lifts learnt from the series' own past days off (`holiday_lift`).

A count that drops to zero is the commonest outage of a low-volume series (a city's complaints, a
shop's hourly orders), and the hardest to see point by point: 0 where 3 are usual is a 5 % event for a
Poisson hour, never beyond a band. Several such hours together are not: the count over the run is
itself a count, with the summed expectation. `count_runs` tests that sum, for runs of 2 to a day's
worth of points (a week of days), against a negative binomial whose mean is the summed expectation and
whose extra (beyond-Poisson) spread is what the series' own model learnt point by point, shared along
the run as far as the series' own errors run together (their lag-1 correlation, learnt causally: a slow
swing of the rate moves every point of a run together, day-to-day chance does not). Each point of the
run must lie at least one sd (by its own score) on the run's side of its expectation, and counts for
at most its own band edge: one spike
with quiet neighbours is the point test's business, not a run's.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from metricloop.detect.base import COUNT, Scores

# longest run looked at, in points of the step: a week of days, a day of hours, half an hour of minutes
LONGEST = {"day": 7, "hour": 24, "minute": 30, "week": 4, "month": 3}


WINDOWS = (2, 3, 4, 6, 8, 12, 16, 24)  # run lengths tried (and the longest): a geometric ladder keeps it cheap


def _log_tail_threshold(k: float) -> float:
    return float(-(np.log(2.0) + special.log_ndtr(-abs(k))))


def count_runs(scores: Scores, k: float, longest: int | None = None, z: np.ndarray | None = None) -> np.ndarray | None:
    """Signed length of the shortest run of 2..`longest` points ending at each point whose summed
    count is beyond the band of k for that sum (0 where none); None when no series is a count."""
    fam = np.asarray(scores.family)
    rows = np.flatnonzero(fam == COUNT)
    if not len(rows):
        return None
    longest = longest or LONGEST.get(scores.grain or "", 7)
    if longest < 2:
        return None
    unit = np.ones((len(rows), 1)) if scores.unit is None else np.asarray(scores.unit, float)[rows]
    x = scores.values[rows] / unit
    mu = scores.expected[rows] / unit
    var = scores.scale[rows] / (unit * unit)
    usable = (np.isfinite(x) & np.isfinite(mu) & np.isfinite(var) & (mu >= 0)
              & ~scores.learning[rows] & ~scores.suppressed[rows])
    # the threshold of one point of k, plus the windows looked at (each end point tries every run length of the ladder)
    windows = [w for w in WINDOWS if w < longest] + [longest]
    need = _log_tail_threshold(k) + np.log(len(windows))
    mu = np.where(usable, np.maximum(mu, 0.0), 0.0)
    extra_sd = np.sqrt(np.clip(np.where(usable, var - mu, 0.0), 0.0, None))
    sd = np.sqrt(np.where(usable, np.maximum(var, mu), 0.0))
    from metricloop.detect.conditions import RHO_SPAN, lag_correlation, run_length, standardised

    z = standardised(scores) if z is None else z
    if z is None:
        return None
    zr = z[rows]
    rho = lag_correlation(zr, RHO_SPAN.get(scores.grain or "", 60))
    out = np.zeros(scores.values.shape, np.int16)
    sub = np.zeros(x.shape, np.int16)
    for side in (1, -1):
        # each point ≥ 1 sd off on that side (its own score's deviate, as the Gaussian run test asks):
        # a zero where zeros are common adds nothing, and the run ends with the outage
        with np.errstate(invalid="ignore"):
            on_side = usable & (side * (x - mu) > 0) & (side * zr >= 1.0)
        # a point counts for at most its own band edge (a spike is the point test's)
        xc = np.where(on_side, np.minimum(x, mu + k * sd) if side > 0 else x, 0.0)
        run = run_length(on_side)
        cx, cm, ce = (np.cumsum(a, axis=1) for a in (xc, np.where(on_side, mu, 0.0), np.where(on_side, extra_sd, 0.0)))
        hit = np.zeros(x.shape, np.int16)
        for w in reversed(windows):
            sx, sm, se = (_window(c, w) for c in (cx, cm, ce))
            cand = (run >= w) & (sm > 0)
            # cheap screen before the exact tail: at least 3 normal sd of the sum's own spread off
            # the extra variance of a sum of w points with extra sds e_i: (Σe)² · share, where share is
            # 1/w for independent points and 1 for fully shared ones (w + 2Σ(w−j)ρ^j over w²)
            # (closed form of Σ_{j<w} (w−j)·ρ^j)
            share = (w + 2 * rho * (w * (1 - rho) - (1 - rho**w)) / (1 - rho) ** 2) / (w * w)
            ev = se * se * share
            spread = np.sqrt(sm + ev)
            with np.errstate(invalid="ignore", divide="ignore"):
                cand &= side * (sx - sm) > 3.0 * spread
            if not cand.any():
                continue
            ell = _nb_log_tail(np.round(sx[cand]), sm[cand], sm[cand] + ev[cand], side)
            got = np.zeros(x.shape, bool)
            got[cand] = ell > need
            hit[got] = w
        sub = np.where(hit > 0, side * hit, sub)
    out[rows] = sub
    return out


def _window(c: np.ndarray, w: int) -> np.ndarray:
    s = c.copy()
    s[:, w:] -= c[:, :-w]
    s[:, :w - 1] = 0.0
    return s


def _nb_log_tail(s: np.ndarray, mean: np.ndarray, var: np.ndarray, side: int) -> np.ndarray:
    """−ln of the two-sided tail of a sum `s` on its side of a negative binomial (Poisson when the
    variance is the mean)."""
    var = np.maximum(var, mean * 1.0001)
    p = mean / var
    n = mean * p / (1 - p)
    with np.errstate(divide="ignore", invalid="ignore"):
        lt = stats.nbinom.logsf(s - 1, n, p) if side > 0 else stats.nbinom.logcdf(s, n, p)
        ell = -np.minimum(0.0, np.log(2.0) + lt)
    return np.where(np.isfinite(ell), ell, 1e6)


def merge_runs(sustained: np.ndarray | None, extra: np.ndarray | None) -> np.ndarray | None:
    """The two run tests together: where both fire, the longer run."""
    if extra is None:
        return sustained
    if sustained is None:
        return extra
    return np.where(np.abs(extra) > np.abs(sustained), extra, sustained).astype(sustained.dtype)


# ---------------------------------------------------------------------------- sparse rates and sums
#
# An error rate of a service with 20 requests a minute is 0 most minutes, then 5 %, then 0, then 9 %:
# one error in 19 requests, two in 22. Its median and its robust spread are 0, so a Gaussian band
# collapses onto 0 and every error alerts. Without the denominator the rate is still a count in
# disguise: it moves in lumps of about one event's worth. Such a series is modelled as a count of
# lumps of its own typical non-zero value (learnt from its warm-up), like a sum of a few baskets.

SPARSE_ZEROS = 0.1  # share of exact zeros, in the series' busiest slots, that makes a series sparse
# (a sum of a few baskets an hour is empty at night, but hardly ever at its busiest hours: `lump_size`'s)
# the lump: a low quantile of the non-zero values (one error in n requests; the median is often two)
LUMP_QUANTILE = 0.25


def sparse_lump_size(values: np.ndarray, times, warmup: int, per_slot: int | None) -> np.ndarray:
    """Per series, the lump size of a sparse non-negative series that is not a count (NaN = not sparse):
    a low quantile (`LUMP_QUANTILE`) of its warm-up's non-zero values, where at least `SPARSE_ZEROS` of
    the warm-up's values are exactly 0 even in its busiest quarter of slots (hours of the day below a
    day, days of the week for days), so that a shop's shut nights, always 0, do not make a busy shop
    "sparse"."""
    m, T = values.shape
    out = np.full(m, np.nan)
    if T == 0:
        return out
    fin = np.isfinite(values)
    idx = np.cumsum(fin, axis=1)
    win = np.where(fin & (idx <= warmup), values, np.nan)
    with np.errstate(invalid="ignore"):
        n = np.isfinite(win).sum(axis=1)
        nonneg = ~(win < 0).any(axis=1)
        integer = (np.where(np.isfinite(win), np.abs(win - np.round(win)), 0.0) < 1e-9).all(axis=1)
        zero = np.isfinite(win) & (win == 0)
    cand = (n >= min(warmup, 8)) & nonneg & ~integer & (zero.sum(axis=1) >= SPARSE_ZEROS * np.maximum(n, 1))
    if not cand.any():
        return out
    slots = _slots(times, T, per_slot)
    for i in np.flatnonzero(cand):
        w, z = win[i], zero[i]
        ok = np.isfinite(w)
        k = slots.max() + 1
        cnt = np.bincount(slots[ok], minlength=k)
        mean = np.bincount(slots[ok], weights=w[ok], minlength=k) / np.maximum(cnt, 1)
        zs = np.bincount(slots[ok], weights=z[ok].astype(float), minlength=k)
        seen = cnt > 0
        busy = seen & (mean >= np.quantile(mean[seen], 0.75))
        if zs[busy].sum() >= SPARSE_ZEROS * cnt[busy].sum():
            nz = w[ok & ~z]
            if len(nz):
                out[i] = float(np.quantile(nz, LUMP_QUANTILE))
    return out


def _slots(times, T: int, per_slot: int | None) -> np.ndarray:
    if times is None or per_slot is None:
        return np.zeros(T, np.int64)
    if per_slot == 24:
        return np.asarray(times.hour, np.int64)
    return np.asarray(times.day_of_week, np.int64)


def as_lumps(values: np.ndarray, lump: np.ndarray) -> np.ndarray:
    """Values in lumps: a non-zero value is at least one lump (one error is one error, however many
    requests it was out of)."""
    u = lump[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(values > 0, np.maximum(np.round(values / u), 1.0), np.round(values / u))
    return np.where(np.isfinite(u), n, values)


def run_by_family(batch, masks, params, kind: str):
    """`engine.run_engine`, with sparse series (see `sparse_lump_size`) modelled as counts of their
    lumps; returns the engine's output in value units and the lump size per series (None = none)."""
    from metricloop.detect.engine import FAM_COUNT, run_engine
    from metricloop.detect.prepare import Batch

    per_slot = 24 if batch.grain in ("hour", "minute") else 7 if batch.grain == "day" else None
    if kind != "auto" or batch.denominator is not None:
        return _slot_noise(run_engine(batch, masks, params, kind=kind), batch, per_slot), None
    lump = sparse_lump_size(batch.values, batch.times, params.warmup, per_slot)
    rows = np.isfinite(lump)
    if not rows.any():
        return _slot_noise(run_engine(batch, masks, params, kind=kind), batch, per_slot), None
    counted = Batch(as_lumps(batch.values, lump), batch.times, batch.grain, batch.numerator, batch.denominator,
                    ratio_scale=batch.ratio_scale, step=batch.step)
    out = run_engine(counted, masks, params, kind=kind)
    u = np.where(rows, lump, 1.0)[:, None]
    out.expected = out.expected * u
    out.scale = out.scale * np.where((out.family == FAM_COUNT)[:, None], u * u, u)
    if out.lump is not None:
        out.lump = np.where(rows[:, None], 0.0, out.lump)
    return _slot_noise(out, batch, per_slot), np.where(rows & (out.family == FAM_COUNT), lump, np.nan)


def _slot_noise(out, batch, per_slot: int | None):
    """The engine's Gaussian sd with each slot's own learnt width (`slot_noise_factor`)."""
    from metricloop.detect.engine import FAM_GAUSS

    rows = np.flatnonzero(out.family == FAM_GAUSS)
    if per_slot is None or batch.times is None or not len(rows):
        return out
    slots = _slots(batch.times, batch.values.shape[1], per_slot)
    usable = ~out.learning[rows] & ~out.excluded[rows]
    fac = slot_noise_factor(batch.values[rows], out.expected[rows], out.scale[rows], usable, slots)
    out.scale = out.scale.copy()
    out.scale[rows] = out.scale[rows] * fac
    return out


def lump_units(unit: np.ndarray | None, lump: np.ndarray | None, shape: tuple[int, int],
               labels: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """The scoring unit (series × time) with the sparse series' lumps, and their model labels."""
    if lump is None or not np.isfinite(lump).any():
        return unit, labels
    base = np.ones(shape) if unit is None else unit
    rows = np.isfinite(lump)
    unit = np.where(rows[:, None], np.nan_to_num(lump, nan=1.0)[:, None], base)
    return unit, [("sparse" if r else lab) for r, lab in zip(rows, labels, strict=True)]


# ---------------------------------------------------------------------------- noise by slot
#
# A conversion rate's noise comes from its denominator: at 3 am, with a handful of visitors, it swings
# ten times wider than at noon, while its level may not move with the hour at all, so the engine's
# scale (which follows the seasonal level) is one width for every hour: too narrow at night, too wide
# at noon. Without the denominator the width is learnt: each slot's (hour of the day, or day of the
# week) own spread of standardised errors, relative to the series' overall, from the points before.

SLOT_PRIOR = 10.0  # a slot's own spread is pooled with the series' overall one, worth this many visits
SLOT_CLIP = 3.0  # an error counts for at most this many sd (anomalies must not widen their own slot)
SLOT_RANGE = (0.25, 6.0)  # the variance of a slot stays within this factor of the series'


def _before_in_slot(a: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Per point, the sum of `a` over the earlier points of the same slot (rows are series). Each
    slot's points, in time order, fill one row of a (slot × visit) grid, summed along the visits:
    one running sum per slot from 0, as a loop over the slots would add them (so a point's sum never
    depends on a later point, not even in its rounding), in a handful of array operations."""
    slots = np.asarray(slots)
    T = slots.size
    period = int(slots.max()) + 1 if T else 0
    if 0 < period < T and np.array_equal(slots, (np.arange(T) + slots[0]) % period):
        # the usual case, a regular grid (slot = time of day): whole cycles side by side, summed down
        lead = int(slots[0])
        grid = np.zeros((a.shape[0], -(-(T + lead) // period) * period), a.dtype)
        grid[:, lead:lead + T] = a
        grid = grid.reshape(a.shape[0], -1, period)
        np.cumsum(grid, axis=1, out=grid)
        return grid.reshape(a.shape[0], -1)[:, lead:lead + T] - a
    order = np.argsort(slots, kind="stable")  # stable: time order within a slot
    key = slots[order]
    first = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    sizes = np.diff(np.r_[first, key.size])
    group = np.repeat(np.arange(first.size), sizes)
    visit = np.arange(key.size) - np.repeat(first, sizes)
    grid = np.zeros((a.shape[0], first.size, int(sizes.max()) if sizes.size else 0), a.dtype)
    grid[:, group, visit] = a[:, order]
    np.cumsum(grid, axis=2, out=grid)
    out = np.empty_like(a)
    out[:, order] = grid[:, group, visit]
    return out - a


def slot_noise_factor(values: np.ndarray, expected: np.ndarray, sd: np.ndarray, usable: np.ndarray,
                      slots: np.ndarray) -> np.ndarray:
    """Per point, the factor (on the sd) of its slot's noise relative to the series' overall, learnt
    causally from the usable points before it (1 where nothing is known)."""
    from scipy.stats import norm

    kappa = float(2 * norm.cdf(SLOT_CLIP) - 1 - 2 * SLOT_CLIP * norm.pdf(SLOT_CLIP)
                  + 2 * SLOT_CLIP**2 * norm.sf(SLOT_CLIP))
    with np.errstate(invalid="ignore", divide="ignore"):
        z2 = np.minimum(((values - expected) / sd) ** 2, SLOT_CLIP**2) / kappa
    ok = usable & np.isfinite(z2)
    z2 = np.where(ok, z2, 0.0)
    n = ok.astype(float)

    def before(a: np.ndarray) -> np.ndarray:
        c = np.cumsum(a, axis=1)
        return c - a

    overall = (SLOT_PRIOR + before(z2)) / (SLOT_PRIOR + before(n))
    visits = _before_in_slot(n, slots)
    own = (SLOT_PRIOR * overall + _before_in_slot(z2, slots)) / (SLOT_PRIOR + visits)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = own / overall - 1.0
        # a slot's mean of z² is itself noisy (variance about 2 per visit): keep only the part of its
        # difference from the series' that this noise cannot explain (James–Stein), since at k = 5 a
        # band 10 % too narrow by chance alone passes nine times as many points
        noise = 2.0 / (SLOT_PRIOR + visits)
        f = 1.0 + f * np.clip(1.0 - noise / np.maximum(f * f, 1e-12), 0.0, 1.0)
        f = np.clip(f, *SLOT_RANGE)
    return np.sqrt(np.where(np.isfinite(f), f, 1.0))


# ---------------------------------------------------------------------------- holiday lift
#
# Where a series' own past shows it, a public holiday is judged like a Sunday (engine, calendar
# "learn" mode). Many series follow holidays without looking like a Sunday: a shop that sells twice a
# Sunday's on National Day, a B2B series at half a Sunday's. What the series did on its past days off
# (apart: those on weekdays, those on weekends, make-up workdays), relative to what the model expected,
# is a lift learnt from them and applied to the next ones, with the lift's own uncertainty in the band.

LIFT_PRIOR_DAYS = 2.0  # the lift is shrunk towards none as if this many days had shown none
LIFT_PRIOR_SD = 0.2  # spread of a lift from one holiday to the next before any is seen (log)


def holiday_lift(values: np.ndarray, expected: np.ndarray, scale: np.ndarray, is_var: np.ndarray,
                 learning: np.ndarray, masks, step: float | None,
                 judged: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`expected` and `scale` (sd, or variance where `is_var`) on days off and make-up workdays, moved by
    each series' own lift on the past ones (causal: from the buckets before). Unchanged elsewhere. On the
    first such day a series has, no lift and the spread of one nobody has seen yet (`LIFT_PRIOR_SD`): a
    first Mid-Autumn half again busier than a Sunday is inside it; a day at zero is ~3.5 sd off, so a
    run of them (an outage over the holiday) still alerts. `judged` (series × time, > 0 where the
    engine judged the day by a learnt holiday pattern) keeps the lifts of days judged as a Sunday apart
    from those judged as their own weekday."""
    ev = getattr(masks, "evidence", None) if masks is not None else None
    if ev is None or not np.any(ev) or not step:
        return expected, scale
    per_day = max(1.0, 86400.0 / step)
    wd = masks.weekday_as if masks.weekday_as is not None else np.full(len(ev), -1)
    # three kinds, each with its own lift: days off on weekdays (judged as the series decides: like a
    # weekend or not), days off on weekends, and make-up workdays
    makeup = ev & (wd >= 0) & (wd < 5)
    moved = ev & (wd >= 5)
    expected, scale = expected.copy(), scale.copy()
    for cols in (np.flatnonzero(moved), np.flatnonzero(ev & ~moved & ~makeup), np.flatnonzero(makeup)):
        if not len(cols):
            continue
        x, e = values[:, cols], expected[:, cols]
        mode = (judged[:, cols] > 0) if judged is not None else np.zeros(x.shape, bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.log(x / e)
        ok = np.isfinite(d) & (x > 0) & (e > 0) & ~learning[:, cols]
        d = np.where(ok, d, 0.0)
        n = np.zeros(x.shape)
        s1 = np.zeros(x.shape)
        s2 = np.zeros(x.shape)
        for same in (mode, ~mode):  # each point learns from the past days judged as it is
            o = ok & same
            for acc, a in ((n, o.astype(float)), (s1, np.where(o, d, 0.0)), (s2, np.where(o, d * d, 0.0))):
                c = np.cumsum(a, axis=1) - a
                acc[same] = c[same]
        days = n / per_day
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, s1 / np.maximum(n, 1), 0.0)
            var = np.where(n > 1, np.maximum(s2 / np.maximum(n, 1) - mean * mean, 0.0), 0.0)
        spread2 = (LIFT_PRIOR_DAYS * LIFT_PRIOR_SD**2 + days * var) / (LIFT_PRIOR_DAYS + days)
        use = np.isfinite(e) & (e > 0)
        w = days / (days + LIFT_PRIOR_DAYS)
        lift = np.exp(w * mean)
        e_new = e * lift
        sc = scale[:, cols]
        v = np.where(is_var[:, None], sc, sc * sc)
        # the noise scales with the level, and the lift is uncertain by its spread over past days
        # off (less the noise that spread already holds) plus the error of its mean
        with np.errstate(invalid="ignore", divide="ignore"):
            rel_noise = v / (e * e)
        extra = np.maximum(spread2 - rel_noise, 0.0) + spread2 / np.maximum(days, 1.0)
        v_new = lift * lift * v + e_new * e_new * extra
        expected[:, cols] = np.where(use, e_new, e)
        scale[:, cols] = np.where(use, np.where(is_var[:, None], v_new, np.sqrt(v_new)), sc)
    return expected, scale
