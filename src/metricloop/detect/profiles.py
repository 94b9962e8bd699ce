"""Starting and re-checking a series' model: noise family, seasonal profile, level and scale.

Everything here works on a window of history (series × points) with robust statistics (medians);
`engine.run_engine` calls it when a series finishes its warm-up and, later, to look at the profile
choice again.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from metricloop.detect.prepare import PROFILES, SLOT_PROFILES, slot_hours

if TYPE_CHECKING:
    from metricloop.detect.engine import EngineParams

FAM_GAUSS, FAM_COUNT, FAM_RATIO = 0, 1, 2
TINY = 1e-12


def _nanquantile_rows(a: np.ndarray, q: float) -> np.ndarray:
    """Per-row quantile ignoring NaN (lower/upper average at the median), NaN for an all-NaN row.

    np.nanmedian / np.nanpercentile fall back to a Python loop per row on 2-D input; sorting the
    rows once (NaN sorts last) and indexing is two orders of magnitude faster here."""
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    srt = np.sort(a, axis=1)
    k = np.isfinite(srt).sum(axis=1)
    pos = q * np.maximum(k - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    rows = np.arange(a.shape[0])
    frac = pos - lo
    out = srt[rows, lo] * (1 - frac) + srt[rows, hi] * frac
    return np.where(k > 0, out, np.nan)


def _nanmedian(a: np.ndarray, axis: int = 1) -> np.ndarray:
    if np.ndim(a) == 2 and axis == 1:
        return _nanquantile_rows(a, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _choose_family(win: np.ndarray, num: np.ndarray | None, den: np.ndarray | None, kind: str, p: EngineParams):
    m = win.shape[0]
    fam = np.full(m, FAM_GAUSS, np.int8)
    if kind == "gauss":
        return fam
    ratio_ok = np.zeros(m, bool)
    if num is not None and den is not None:
        with np.errstate(invalid="ignore"):
            # a proportion: the numerator is (nearly always) part of the denominator; buckets with no
            # denominator say nothing, and a complaint about yesterday's order may exceed today's orders
            usable = np.isfinite(num) & np.isfinite(den) & (den > 0)
            part = usable & (num >= 0) & (num <= den)
            ratio_ok = (part.sum(axis=1) >= 0.9 * usable.sum(axis=1)) & part.any(axis=1)
    if kind == "ratio":
        fam[ratio_ok] = FAM_RATIO
        return fam
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(win)
        integer = np.where(finite, (win >= 0) & (np.abs(win - np.round(win)) < 1e-9), True).all(axis=1)
    small = _nanmedian(win) <= p.count_max_median
    if kind == "count":
        fam[integer] = FAM_COUNT
        return fam
    fam[integer & small] = FAM_COUNT
    fam[ratio_ok] = FAM_RATIO
    return fam


SLOT_LOOP_MAX = 48  # profiles with more slots than this take their slot medians in one sort


def slot_medians(r: np.ndarray, ph: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Per series and slot, the median and the mean of r (NaN ignored; NaN for a slot never seen):
    (m, H) → two (m, period). Long cycles (288 slots of 5 minutes) are laid out as
    (m, period, visits) and sorted once instead of one median per slot."""
    m = r.shape[0]
    med = np.full((m, period), np.nan)
    mean = np.full((m, period), np.nan)
    if period <= SLOT_LOOP_MAX:
        for k in range(period):
            cols = ph == k
            if cols.any():
                med[:, k] = _nanmedian(r[:, cols])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean[:, k] = np.nanmean(r[:, cols], axis=1)
        return med, mean
    ph = np.asarray(ph, dtype=np.int64)
    order = np.argsort(ph, kind="stable")
    counts = np.bincount(ph, minlength=period)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(ph), np.int64)
    rank[order] = np.arange(len(ph)) - starts[ph[order]]
    cube = np.full((m, period, max(int(counts.max()), 1)), np.nan)
    cube[:, ph, rank] = r
    flat = cube.reshape(m * period, -1)
    med = _nanquantile_rows(flat, 0.5).reshape(m, period)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(cube, axis=2)
    return med, mean


def _centred(prof: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """A profile (m, period) rescaled to mean 1 (multiplicative rows) or shifted to mean 0 (additive)."""
    centre = prof.mean(axis=1)
    return np.where(mult[:, None], prof / np.where(np.abs(centre) > TINY, centre, 1.0)[:, None],
                    prof - centre[:, None])


def _profile_fit(r: np.ndarray, ph: np.ndarray, period: int, mult: np.ndarray,
                 seen: np.ndarray | None = None) -> np.ndarray:
    """Median of r per phase slot (the mean where the median is under half of it: a mostly empty
    slot) → (m, period), centred. A slot never seen in the window (an hour of
    the week that fell in a holiday) takes the median of the same hour on the other days, or is
    neutral; `seen`, when given, is filled with which slots were actually observed."""
    m = r.shape[0]
    neutral = np.where(mult, 1.0, 0.0)
    prof = np.full((m, period), np.nan)
    if period >= 1:
        med, mean = slot_medians(r, ph, period)
        # a quiet slot of a sum or a count is mostly 0 (one basket at 3 am every few nights):
        # its median says "nothing ever happens", its mean says how much does
        with np.errstate(invalid="ignore"):
            sparse = mult[:, None] & (med < 0.5 * mean)
        prof = np.where(sparse, mean, med)
    if seen is not None:
        seen[:] = np.isfinite(prof)
    if period == 168:
        by_hour = _nanmedian(np.transpose(prof.reshape(m, 7, 24), (0, 2, 1)).reshape(m * 24, 7)).reshape(m, 24)
        prof = np.where(np.isfinite(prof), prof, np.tile(by_hour, 7))
    prof = _centred(np.where(np.isfinite(prof), prof, neutral[:, None]), mult)
    if m and period == 1:
        prof[:] = neutral[:, None]
    return prof


PRIOR_POINTS = 2  # how many points of the series-wide scatter a slot's own scatter is pooled with


def _shrink(prof: np.ndarray, r: np.ndarray, ph: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """Pull each slot of a profile towards flat by how much of its deviation noise could explain
    (empirical Bayes): four Mondays' median of a noisy store is mostly noise, a +24 % weekend seen
    in every week is not. A series without a rhythm ends up with a flat profile, so always fitting
    one costs little."""
    m, period = prof.shape
    if period == 1 or m == 0:
        return prof
    neutral = np.where(mult, 1.0, 0.0)[:, None]
    dev = prof - neutral
    with np.errstate(invalid="ignore", divide="ignore"):
        # the profile is centred (mean 1 or 0) and r is relative to the median: re-level before
        # measuring the scatter, or a skewed shape (quiet nights, a busy noon) reads as noise
        fit = prof[:, ph]
        shift = np.where(mult, _nanmedian(r / np.where(np.abs(fit) > TINY, fit, np.nan)), _nanmedian(r - fit))
        shift = np.where(np.isfinite(shift), shift, np.where(mult, 1.0, 0.0))
        resid = r - np.where(mult[:, None], fit * shift[:, None], fit + shift[:, None])
    n = slot_counts(np.isfinite(r), ph, period)
    # each slot's own scatter, pooled with the series' (worth PRIOR_POINTS points): a quiet night hour
    # of 2 orders is not as noisy, in orders, as noon's 80, and judging it by noon's scatter pulled
    # nights towards the daily mean (an hourly count expecting 10 orders at 3 am where 2 are usual)
    series2 = _nanmedian(np.abs(resid)) ** 2
    own2 = np.nan_to_num(slot_medians(np.abs(resid), ph, period)[0], nan=0.0) ** 2
    sigma2 = 1.4826**2 * (n * own2 + PRIOR_POINTS * series2[:, None]) / (n + PRIOR_POINTS)
    noise = (np.pi / 2) * sigma2 / np.maximum(n, 1)  # variance of a slot's median
    between = np.maximum(np.mean(dev * dev, axis=1) - np.mean(noise, axis=1), 0.0)
    w = np.where(n > 0, between[:, None] / (between[:, None] + noise + TINY), 0.0)
    return _centred(neutral + np.nan_to_num(w) * dev, mult)


MIN_SLOT_DAYS = 7  # observations a time-of-day slot needs before it may differ from its hour
SLOT_Z2 = 9.0  # a slot keeps (1 − SLOT_Z2 / z²) of its deviation from the hour, z in standard errors


def refine_slots(base: np.ndarray, r: np.ndarray, ph: np.ndarray, mult: np.ndarray, per_day: int = 0) -> np.ndarray:
    """A sub-hourly profile (m, slots) that starts as its hour profile expanded to the series' step
    (`base`) and keeps, per time-of-day slot, the part of the slot's own median deviation from its
    hour that noise cannot explain: a daily cron job at 03:30 seen on 7 or more days is learned
    as the 03:30 slot, and no longer flags every day or widens the noise of its whole hour; a slot
    seen on fewer days, or within ~3 standard errors of its hour, stays at the hour. With two day
    types (`per_day` slots each), the time of day is refined on both together first, then each
    day type on its own: a job that runs every day is learned from weekdays before 7 weekends passed."""
    m, period = base.shape
    if m == 0:
        return base
    if per_day and period == 2 * per_day:
        both = _slot_step(base, r, ph, ph % per_day, per_day, mult)
        base = base + np.tile(both, 2)
    return _centred(base + _slot_step(base, r, ph, ph, period, mult), mult)


def _slot_step(base: np.ndarray, r: np.ndarray, ph: np.ndarray, key: np.ndarray, n_keys: int,
               mult: np.ndarray) -> np.ndarray:
    """Per key (a time-of-day slot), the shrunk median departure (m, n_keys) of r from `base` at ph."""
    fit = base[:, ph]
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(mult, _nanmedian(r / np.where(np.abs(fit) > TINY, fit, np.nan)), _nanmedian(r - fit))
        shift = np.where(np.isfinite(shift) & (np.abs(shift) > TINY), shift, np.where(mult, 1.0, 0.0))
        # each point's departure from its hour, in profile units
        e = np.where(mult[:, None], r / np.where(mult, shift, 1.0)[:, None],
                     r - np.where(mult, 0.0, shift)[:, None]) - fit
    n = slot_counts(np.isfinite(e), key, n_keys)
    dev = np.nan_to_num(slot_medians(e, key, n_keys)[0])
    spread = np.abs(e - dev[:, key])
    series2 = _nanmedian(spread) ** 2
    own2 = np.nan_to_num(slot_medians(spread, key, n_keys)[0], nan=0.0) ** 2
    sigma2 = 1.4826**2 * (n * own2 + PRIOR_POINTS * series2[:, None]) / (n + PRIOR_POINTS)
    noise = (np.pi / 2) * sigma2 / np.maximum(n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.clip(1.0 - SLOT_Z2 * noise / (dev * dev), 0.0, 1.0)
    return np.where((n >= MIN_SLOT_DAYS) & np.isfinite(w), w, 0.0) * dev


def _relative(y: np.ndarray, mult: np.ndarray) -> np.ndarray:
    med = _nanmedian(y)
    safe = np.where(np.abs(med) > TINY, med, 1.0)
    return np.where(mult[:, None], y / safe[:, None], y - med[:, None])


def init_state(win: np.ndarray, phases: dict[str, np.ndarray], candidates: list[str], mult: np.ndarray,
               mean_level: np.ndarray | None = None, current: np.ndarray | None = None,
               allowed: np.ndarray | None = None, detail: dict | None = None,
               slot_win: np.ndarray | None = None):
    """Robust start from a warm-up window (m, H): profile choice, profile, level, scale.

    `mean_level` marks counts and ratios: their level is a mean (the median of a sparse count is 0).
    `allowed` (m, n_candidates) says which profiles each series may take (a cycle only where its
    own past shows it). `detail`, when given, gets "refine" (m, longest period): what the time-of-day
    slots of a sub-hourly profile add to its hour profile (`refine_slots`), 0 elsewhere. `slot_win`
    is the window those slots are refined on: with the points the model kept out as anomalies
    (a daily job is out of band until it is learned; a slot's median ignores a one-off)."""
    m, h = win.shape
    choice = np.zeros(m, np.int64)  # index into candidates
    if len(candidates) > 1 and h >= 8:
        # halves of the observed points, not of the window: a warm-up that began inside an event
        # (kept out of the baseline) has nothing in its first half to fit a profile on
        seen_cols = np.flatnonzero(np.isfinite(win).any(axis=0))
        half = int(seen_cols[len(seen_cols) // 2]) if len(seen_cols) >= 8 else h // 2
        r1, r2 = _relative(win[:, :half], mult), _relative(win[:, half:], mult)
        errs = []
        for j, name in enumerate(candidates):
            if allowed is not None and not allowed[:, j].any():
                errs.append(np.full(m, np.inf))  # a cycle none of these series shows
                continue
            ph = phases[name]
            if name.startswith(SLOT_PROFILES):
                # chosen as its hour profile: a slot's refinement needs days the halves may not hold
                base, _, hours = slot_hours(name)
                prof = _profile_fit(r1, hours[ph[:half]], PROFILES[base], mult)[:, hours]
            else:
                prof = _profile_fit(r1, ph[:half], PROFILES[name], mult)
            pred = prof[:, ph[half:]]
            # compare shapes, not levels: re-level the profile to the second half before measuring
            with np.errstate(invalid="ignore", divide="ignore"):
                lvl = np.where(mult, _nanmedian(r2 / np.where(np.abs(pred) > TINY, pred, np.nan)),
                               _nanmedian(r2 - pred))
            lvl = np.where(np.isfinite(lvl), lvl, np.where(mult, 1.0, 0.0))
            pred = np.where(mult[:, None], pred * lvl[:, None], pred + lvl[:, None])
            # a winsorised mean, not a median: a weekend pattern touches only 2 days in 7, which a
            # median of the errors would never see; winsorising keeps an odd day from deciding
            err = np.abs(r2 - pred)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                cap = _nanquantile_rows(err, 0.9)
                errs.append(np.nanmean(np.minimum(err, cap[:, None]), axis=1))
        errs_a = np.nan_to_num(np.vstack(errs), nan=np.inf)
        if allowed is not None:
            errs_a = np.where(allowed.T, errs_a, np.inf)
        if current is not None:
            choice = current.copy()  # hysteresis: a series keeps its profile unless another is clearly better
            best = errs_a.argmin(axis=0)
            better = errs_a[best, np.arange(m)] < 0.9 * errs_a[choice, np.arange(m)]
            # a window mostly taken by events (a festival, the Spring Festival) cannot overrule the profile
            full = (np.isfinite(win[:, :half]).sum(axis=1) >= 0.6 * half) & (
                np.isfinite(win[:, half:]).sum(axis=1) >= 0.6 * (h - half))
            choice = np.where(better & full, best, choice)
        else:
            # business series nearly always have a weekly or daily rhythm: the first profile only has
            # to predict no worse than none; a richer one must beat it clearly (10 %)
            for j in range(1, len(candidates)):
                margin = 1.0 if j == 1 and not candidates[j].startswith("cycle:") else 0.9
                better = errs_a[j] < margin * errs_a[choice, np.arange(m)]
                choice = np.where(better, j, choice)
    pmax = max(PROFILES[c] for c in candidates)
    season = np.repeat(np.where(mult, 1.0, 0.0)[:, None], pmax, axis=1)
    level = np.zeros(m)
    sigma = np.zeros(m)
    closed = np.zeros((m, pmax), bool)
    refine = np.zeros((m, pmax))
    complete = np.ones(m, bool)  # every slot of the chosen profile was observed
    rel_all = _relative(win, mult)
    for j, name in enumerate(candidates):
        rows = choice == j
        if not rows.any():
            continue
        ph = phases[name]
        period = PROFILES[name]
        slots = name.startswith(SLOT_PROFILES)
        hours = slot_hours(name)[2] if slots else None
        hph = hours[ph] if slots else ph  # the hour-profile slot of each point
        hperiod = PROFILES[slot_hours(name)[0]] if slots else period
        seen = np.zeros((int(rows.sum()), hperiod), bool)
        prof = _shrink(_profile_fit(rel_all[rows], hph, hperiod, mult[rows], seen), rel_all[rows], hph, mult[rows])
        if hperiod == 48:
            # a day type not yet seen (two days of 5-minute data, a Monday and a Tuesday): its hours
            # take the other day type's, not a flat profile that would flag every hour of the weekend
            prof = _centred(np.where(seen, prof, np.roll(prof, 24, axis=1)), mult[rows])
        if slots:
            hourly = prof[:, hours]
            src = rel_all[rows] if slot_win is None else _relative(slot_win[rows], mult[rows])
            per = int(name.split(":")[1]) if name.startswith("slot_by_daytype:") else 0
            prof = refine_slots(hourly, src, ph, mult[rows], per)
            refine[rows, :period] = prof - hourly
            seen = seen[:, hours]
        complete[rows] = seen.all(axis=1)
        season[rows, :period] = prof
        d = np.where(mult[rows, None], win[rows] / np.where(np.abs(prof[:, ph]) > TINY, prof[:, ph], 1.0),
                     win[rows] - prof[:, ph])
        last = min(h, max(7, min(period, 24)))
        recent = _nanmedian(d[:, -last:])
        level[rows] = np.where(np.isfinite(recent), recent, _nanmedian(d))  # the recent days may all be events
        if mean_level is not None and mean_level[rows].any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(d[:, -max(last, 14):], axis=1)
                # multiplicative: total over the profile's total (a Poisson rate's estimate), not the
                # mean of value/slot, where 2 orders in a 3 am slot of 0.02 would read as a level of 100
                tail = win[rows][:, -max(last, 14):]
                fac = np.where(np.isfinite(tail), prof[:, ph[-max(last, 14):]], np.nan)
                pooled = np.nansum(tail, axis=1) / np.nansum(fac, axis=1)
                mean = np.where(mult[rows] & np.isfinite(pooled) & (np.nansum(fac, axis=1) > TINY), pooled, mean)
            level[rows] = np.where(mean_level[rows], mean, level[rows])
        shut = closed_slots(win[rows], hph, hperiod)
        shut = shut[:, hours] if slots else shut  # shut hours, not 5-minute slots that were 0 twice
        closed[rows, :period] = shut
        # the noise of the open slots: a shop's quiet closed nights would make it look tiny
        d = np.where(shut[:, ph], np.nan, d)
        diffs = np.abs(np.diff(d, axis=1))
        sigma[rows] = 1.4826 * _nanmedian(diffs) / np.sqrt(2.0)
    sigma = np.where(np.isfinite(sigma), sigma, 0.0)
    if current is not None:
        # never switch to a profile with slots the window did not see (they would be guesses)
        keep = ~complete & (choice != current)
        if keep.any():
            choice = np.where(keep, current, choice)
    if detail is not None:
        detail["refine"] = refine
    return choice, season, level, sigma, closed


def closed_slots(win: np.ndarray, ph: np.ndarray, period: int, min_seen: int = 2,
                 max_open_zeros: float = 0.05) -> np.ndarray:
    """Slots (m, period) in which every observed value of the window was exactly 0, seen at least
    `min_seen` times, in a series whose other slots are (nearly) never 0: a store's hours while it is
    shut, a B2B channel's Sundays. Nothing happens there, so they say nothing about the level or the
    noise of the open slots. A sparse count (a city's one complaint a day) has zeros everywhere; its
    empty weekends are chance, not a closed shop."""
    if period == 1:
        return np.zeros((win.shape[0], 1), bool)
    fin = np.isfinite(win)
    nonzero = fin & (win != 0)
    out = (slot_counts(fin, ph, period) >= min_seen) & (slot_counts(nonzero, ph, period) == 0)
    open_pts = fin & ~out[:, ph]
    zeros = (open_pts & ~nonzero).sum(axis=1) / np.maximum(open_pts.sum(axis=1), 1)
    return out & (zeros <= max_open_zeros)[:, None]


def _slot_add(weights: np.ndarray, ph: np.ndarray, period: int) -> np.ndarray:
    """Each row's sum of `weights` per phase slot, (m, H) → (m, period), by one `bincount` over
    row·period + slot: O(m·H) whatever the period (a one-hot product costs m·H·period, which at a
    week of 5-minute slots is 2,016 times the data)."""
    m, h = weights.shape
    ph = np.asarray(ph, np.int64)
    inside = (ph >= 0) & (ph < period)  # a phase outside the slots counts nowhere, as in the one-hot product
    if not inside.all():
        weights, ph = weights[:, inside], ph[inside]
    key = (np.arange(m, dtype=np.int64)[:, None] * period + ph[None, :]).ravel()
    return np.bincount(key, weights=weights.ravel(), minlength=m * period).reshape(m, period)


def slot_counts(flags: np.ndarray, ph: np.ndarray, period: int) -> np.ndarray:
    """How many True each series (row) has in each phase slot: (m, H) flags → (m, period) counts."""
    return _slot_add(np.asarray(flags, float), ph, period).astype(np.int64)


def slot_sums(values: np.ndarray, ph: np.ndarray, period: int) -> np.ndarray:
    """Each series' (row's) sum per phase slot, NaN counting as 0: (m, H) → (m, period)."""
    return _slot_add(np.nan_to_num(np.asarray(values, float)), ph, period)
