"""The robust, seasonal, trend-aware baseline shared by `band` and `auto`.

One pass over time, vectorised across series (every step is a handful of numpy operations on
arrays of length n_series), so the output at t is computed before x[t+1] is even looked at:
causal by construction. Per series it keeps

- a robust level: an exponentially weighted Huber M-estimate (errors beyond `huber`·scale are
  clipped before they enter it, points beyond `exclude_z`·scale, and runs of points beyond
  `run_z`·scale on one side, do not enter it at all);
- an optional damped trend;
- a seasonal profile (hour of day, day of week or hour of week; multiplicative for positive series);
- a scale: a winsorised exponentially weighted standard deviation of one-step errors (MAD-like),
  on top of the noise the data must have (Poisson for counts, binomial for ratios);
- a run counter: after `adapt_after` consecutive out-of-band points in one direction the level is
  reset to the mean of that run ("new normal") instead of alerting forever.

The state is initialised robustly (medians) from the first `warmup` valid points; until then the
series is "learning".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metricloop.detect.calendar import CalendarMasks
from metricloop.detect.periods import detect_periods
from metricloop.detect.prepare import PROFILES, SLOT_PROFILES, Batch, candidate_profiles, phase_index
from metricloop.detect.profiles import (  # noqa: F401 - FAM_* and TINY are part of this module's interface
    FAM_COUNT,
    FAM_GAUSS,
    FAM_RATIO,
    TINY,
    _choose_family,
    _nanmedian,
    init_state,
    slot_counts,
    slot_medians,
    slot_sums,
)


def _winsor_kappa(c: float) -> float:
    """E[min(Z², c²)] for a standard normal Z: makes the clipped variance consistent."""
    from scipy.stats import norm

    return float(2 * norm.cdf(c) - 1 - 2 * c * norm.pdf(c) + 2 * c * c * norm.sf(c))


@dataclass
class EngineParams:
    alpha: float = 0.15  # level smoothing
    beta: float = 0.0  # trend smoothing (0 = no trend)
    phi: float = 0.97  # trend damping
    gamma: float = 0.15  # seasonal profile smoothing (per visit of a slot)
    lam: float = 0.05  # scale smoothing
    huber: float = 2.0
    exclude_z: float = 3.5
    run_z: float = 2.0  # two points in a row beyond this, on one side, stay out of the baseline
    adapt_after: int = 7
    warmup: int = 28
    seasonality: str = "auto"  # auto | none | hour_of_day | day_of_week | hour_of_week
    multiplicative: str = "auto"  # auto | yes | no
    rel_floor: float = 0.002  # the scale is never below this fraction of the level
    compare_tolerance: float = 0.08  # extra relative uncertainty of a same-event-last-time comparison
    count_max_median: float = 100.0  # auto: integer series with a smaller median are counts
    init_inflation: float = 2.0  # variance multiplier at the end of warm-up
    reselect_every: int = 28  # steps between looks at the seasonal profile choice
    noise_power: float = 1.0  # sd ∝ seasonal factor ** noise_power
    compare_halfwidth: int = 0  # buckets either side of last time's bucket that the event lift is averaged over
    lumpy: bool = False  # estimate a sum's lump size (its variance grows with its mean, like a count's)
    # cycles found in each series' own past (`periods.detect_periods`), counted in points of the step:
    # the longest looked for (0 = none), the history looked at, and periods to snap to (a day, a week)
    max_period: int = 0
    period_window: int = 0
    period_hints: tuple[int, ...] = ()
    period: int = 0  # a cycle declared by a person, in points (0 = none declared)
    # a profile slot whose recent visits' median error is this many sd out at a re-check is re-set by it
    # (0 = never): `run_z`, the line beyond which points in a row stay out of the baseline
    release_z: float = 2.0


@dataclass
class EngineOut:
    expected: np.ndarray
    scale: np.ndarray  # sd (gauss, ratio) or variance (count)
    family: np.ndarray  # FAM_* per series
    learning: np.ndarray
    excluded: np.ndarray
    profile: list[str]
    suppressed: np.ndarray | None = None  # days off of series whose profile has no weekday to judge them by
    ceiling: np.ndarray | None = None  # per series: the largest possible value (a proportion's scale), else inf
    lump: np.ndarray | None = None  # series × time: lump size of a sum (see `lump_size`) then, 0 = none
    # series × time (int8): where a learned holiday pattern judged the point, from how many past days
    # off it was learned; 0 = judged by the series' own weekly rhythm
    calendar: np.ndarray | None = None
    # series × time: learned-calendar buckets judged normally (the series' past does not show the
    # event, or it has no past yet): the calendar's suppression does not apply there
    released: np.ndarray | None = None


def not_started(y: np.ndarray) -> np.ndarray:
    """Leading zeros of each series (before its first non-zero value): a store before it opened,
    a city before its first complaint. Zero-filled queries report them as 0; learning from them
    would teach the model that 0 is normal. Causal: it looks only at the past."""
    with np.errstate(invalid="ignore"):
        seen = np.logical_or.accumulate(np.isfinite(y) & (y != 0), axis=1)
    return ~seen & np.isfinite(y)


def run_engine(batch: Batch, masks: CalendarMasks | None, p: EngineParams, kind: str = "auto") -> EngineOut:
    y = np.where(not_started(batch.values), np.nan, batch.values)
    m, T = y.shape
    times = batch.times
    masks = masks or CalendarMasks.empty(T)
    cal_ex = np.broadcast_to(masks.exclude, (m, T))
    cmp_ref = np.broadcast_to(masks.compare_ref, (m, T))
    candidates = candidate_profiles(batch.grain, batch.step) if p.seasonality == "auto" else [p.seasonality]
    find_cycles = p.seasonality == "auto" and p.max_period >= 2 and not p.period
    known_periods = {PROFILES[c] for c in candidates}
    phases = {c: phase_index(times, T, c) for c in candidates}
    real_phases = dict(phases)  # each bucket's own weekday, whatever the calendar says
    if masks.weekday_as is not None and (masks.weekday_as >= 0).any() and times is not None:
        # days off use the weekend slot, make-up workdays a weekday slot
        wd_as = masks.weekday_as.astype(np.int64)
        if "day_of_week" in phases:
            phases["day_of_week"] = np.where(wd_as >= 0, wd_as, phases["day_of_week"])
        if "hour_of_week" in phases:
            phases["hour_of_week"] = np.where(wd_as >= 0, wd_as * 24 + np.asarray(times.hour), phases["hour_of_week"])
        if "hour_by_daytype" in phases:
            phases["hour_by_daytype"] = np.where(wd_as >= 0, (wd_as >= 5) * 24 + np.asarray(times.hour),
                                                 phases["hour_by_daytype"])
        for c in [c for c in phases if c.startswith("slot_by_daytype:")]:
            n_day = PROFILES[c] // 2
            phases[c] = np.where(wd_as >= 0, (wd_as >= 5) * n_day + phases[c] % n_day, phases[c])
    phase_tab = np.vstack([phases[c] for c in candidates])  # (n_profiles, T)
    phase_real = np.vstack([real_phases[c] for c in candidates])
    # holidays and make-up workdays in "learn" mode: a series is judged by them only once its own
    # past holidays looked like days off (closer to the slot the calendar gives than to their own
    # weekday's, by more than one sd), in at least LEARN_DAYS days and twice as often as not
    learn_t = masks.learned_buckets()
    evid_t = masks.evidence if masks.evidence is not None else np.zeros(T, bool)
    learning_cal = bool(learn_t.any())
    per_day = 1
    if times is not None and len(times) > 1:
        per_day = max(1, int(round(86400e9 / float(np.median(np.diff(times.as_unit("ns").asi8))))))
    # a day off of hours is judged hour by hour, and only its busy hours tell the two slots apart:
    # a quarter of its buckets stand for one day of evidence
    day_weight = max(1, per_day // 4)
    fav = np.zeros(m)
    against = np.zeros(m)
    cal_days = np.zeros((T, m), np.int8) if learning_cal else None
    num, den = batch.numerator, batch.denominator
    kappa = _winsor_kappa(p.huber)
    kappa_out = _winsor_kappa(3.0)
    kappa_wide = _winsor_kappa(p.exclude_z)

    # the loop walks time: time-major buffers make every per-step read and write contiguous
    yT = np.ascontiguousarray(y.T)
    denT = np.ascontiguousarray(den.T) if den is not None else None
    exT = np.array(cal_ex.T, dtype=bool, order="C")  # a copy: learned buckets are released per series
    refT = np.ascontiguousarray(cmp_ref.T)
    wd_as = masks.weekday_as if masks.weekday_as is not None else np.full(T, -1, np.int8)
    weekly = np.array([c in ("day_of_week", "hour_by_daytype", "hour_of_week") or c.startswith("slot_by_daytype:")
                       for c in candidates])
    offday_sup = np.zeros((T, m), bool)
    # learned-calendar buckets a series is judged on normally (see `released` below)
    released = np.zeros((T, m), bool) if learning_cal else None
    expected = np.full((T, m), np.nan)
    scale = np.full((T, m), np.nan)
    learning = np.ones((T, m), bool)
    excluded = np.zeros((T, m), bool)
    track_level = bool((masks.compare_ref >= 0).any())
    day_span = None
    if track_level and p.compare_halfwidth > 0 and times is not None:
        # sub-daily buckets take the lift of last time's whole calendar day: events are dated, and a
        # window straddling midnight would blend the day before the event into its first hours
        day = np.asarray(times.normalize().asi8)
        first = np.searchsorted(day, day, side="left")
        day_span = (first, np.searchsorted(day, day, side="right"))
    baseline = np.full((T, m), np.nan) if track_level else None  # the expectation without event lifts
    lump_t = np.zeros((T, m)) if p.lumpy else None

    rows = np.arange(m)
    inited = np.zeros(m, bool)
    since = np.zeros(m, np.int64)  # steps since (re)initialisation
    n_obs = np.zeros(m, np.int64)
    fam = np.zeros(m, np.int8)
    mult = np.zeros(m, bool)
    prof = np.zeros(m, np.int64)
    # the unit factor of a ratio (100 for %): given, or read off the first bucket with a numerator
    ratio_sc = np.full(m, float(batch.ratio_scale) if batch.ratio_scale else np.nan)
    pmax = max(PROFILES[c] for c in candidates)
    # which profiles each series may take: the grain's own, and the cycle found in its own past
    allowed = np.ones((m, len(candidates)), bool)
    S = np.zeros((m, pmax))
    old_S = np.zeros((m, pmax))
    closed = np.zeros((m, pmax), bool)  # slots that were always 0 (shut hours): no updates from them
    # what the time-of-day slots of a sub-hourly profile add to its hours (`profiles.refine_slots`), as
    # last applied to S: a re-check adds the change, leaving what the updates learned since
    R = np.zeros((m, pmax))
    rel_at = np.full((m, pmax), -1, np.int64)  # when each slot was last re-set (`_release_stuck_slots`)
    slot_days = max([PROFILES[c] for c in candidates if c.startswith(SLOT_PROFILES)], default=0)
    slot_days = slot_days // 2 if any(c.startswith("slot_by_daytype:") for c in candidates) else slot_days
    L = np.zeros(m)
    lump = np.zeros(m)  # per series: variance per unit of mean a sum of lumps has (0 = not modelled)
    weigh = np.zeros(m)  # per series: exponent of the slot factor that weights its level updates (0 = equal)
    B = np.zeros(m)
    V = np.zeros(m)
    quantum = np.zeros(m)  # per series: its value resolution (smallest step between values), a floor on the sd
    run_len = np.zeros(m, np.int64)
    old_L = np.zeros(m)  # the level (and, in old_S, the profile: a flat profile's one slot absorbs
    # level changes too) before the latest "new normal", remembered for a while
    old_dir = np.zeros(m)
    old_age = np.full(m, -1, np.int64)  # steps since that new normal, -1 = nothing to recall
    recall_any = False
    run_dir = np.zeros(m)
    run_sum = np.zeros(m)
    prev_far = np.zeros(m, bool)
    prev_sign = np.zeros(m)
    use_trend = p.beta > 0

    def add_cycle(period: int) -> int:
        """The index of profile cycle:`period`, added to the candidates on first sight."""
        nonlocal phase_tab, phase_real, weekly, allowed, S, old_S, closed, pmax, R, rel_at
        name = f"cycle:{period}"
        if name in candidates:
            return candidates.index(name)
        candidates.append(name)
        phases[name] = phase_index(times, T, name)
        phase_tab = np.vstack([phase_tab, phases[name][None, :]])
        phase_real = np.vstack([phase_real, phases[name][None, :]])
        weekly = np.append(weekly, False)
        allowed = np.hstack([allowed, np.zeros((m, 1), bool)])
        if period > pmax:
            grow = ((0, 0), (0, period - pmax))
            S = np.pad(S, grow, constant_values=0.0)
            old_S = np.pad(old_S, grow, constant_values=0.0)
            closed = np.pad(closed, grow, constant_values=False)
            R = np.pad(R, grow, constant_values=0.0)
            rel_at = np.pad(rel_at, grow, constant_values=-1)
            pmax = period
        return len(candidates) - 1

    def look_for_cycles(idx: np.ndarray, t: int) -> None:
        """Cycles in the clean history of series `idx` before t: each series may then take the cycle
        it shows (and keeps the one it follows)."""
        lo = max(0, t - p.period_window)
        win = y[idx, lo:t].copy()
        win[excluded[lo:t, idx].T | exT[lo:t, idx].T] = np.nan
        found = detect_periods(win, p.max_period, p.period_hints, covered=tuple(k for k in known_periods if k > 1))
        # a cycle the grain's own profiles already hold (a day of hours, 12 hours within it) is theirs
        covered = np.array([any(k % f == 0 for k in known_periods) if f > 0 else True for f in found], bool)
        found = np.where(covered, 0, found)
        cyc = np.array([c.startswith("cycle:") for c in candidates])
        cur = prof[idx]
        keep = np.zeros((len(idx), len(candidates)), bool)
        keep[np.arange(len(idx)), cur] = True
        allowed[idx] = np.where(cyc[None, :], keep, allowed[idx])
        for period in np.unique(found[found > 0]):
            j = add_cycle(int(period))
            allowed[idx[found == period], j] = True

    def window_start(idx: np.ndarray, t: int) -> int:
        """History a profile is fitted on: two warm-ups, or three of the longest cycle allowed."""
        need = 2 * p.warmup
        cyc = [PROFILES[c] for j, c in enumerate(candidates) if c.startswith("cycle:") and allowed[idx, j].any()]
        if cyc:
            need = max(need, min(3 * max(cyc), max(p.period_window, need)))
        if slot_days:
            # four weeks: a time-of-day slot of a day off needs MIN_SLOT_DAYS weekend days
            need = max(need, 28 * slot_days)
        return max(0, t - need)

    # slots visited once a day or once a week can get stuck (`_release_stuck_slots`)
    release = p.release_z > 0 and max(PROFILES[c] for c in candidates) > 1

    def _release_stuck_slots(j: np.ndarray, lo: int, t: int) -> None:
        """Re-set the profile slots whose own recent visits all missed them on the same side.

        A slot is visited once a day or once a week, and a visit beyond `exclude_z` (or two in a row
        beyond `run_z`) never enters the baseline: no run of points in a row ever forms to make it a
        new normal, so a shop's Thursday 14:00 rush or a new Saturday routine that the warm-up did not
        show would be "an anomaly" every week for good, and its weekly excesses would teach the score's
        calibration that huge deviations are common (a real spike is then missed). Per slot, the median
        over its visits since `lo` of the error against what the model expected then (a ratio for a
        multiplicative series); where that median is more than `release_z` sd out, with at least
        `RELEASE_VISITS` visits, the slot takes it. The median ignores a one-off, and the slots' common
        part (a level that moved, which a new normal handles) is taken out first."""
        for c in np.unique(prof[j]):
            r = j[prof[j] == c]
            period = PROFILES[candidates[c]]
            ph_c = phase_tab[c, lo:t]
            x = y[r, lo:t]
            e = expected[lo:t, r].T
            sd_t = scale[lo:t, r].T
            sd_t = np.where((fam[r] == FAM_COUNT)[:, None], np.sqrt(np.maximum(sd_t, 0.0)), sd_t)
            # visits since the slot's last re-set only: those before it were judged against the old value
            after = np.arange(lo, t)[None, :] > rel_at[r][:, ph_c]
            with np.errstate(invalid="ignore", divide="ignore"):
                ok = np.isfinite(x) & np.isfinite(e) & np.isfinite(sd_t) & (sd_t > 0) & ~exT[lo:t, r].T & after
                z = np.where(ok, (x - e) / sd_t, np.nan)
                mr = mult[r][:, None]
                err = np.where(ok, np.where(mr, x / np.where(np.abs(e) > TINY, e, np.nan), x - e), np.nan)
            enough = slot_counts(ok, ph_c, period) >= RELEASE_VISITS
            z_med = np.where(enough, slot_medians(z, ph_c, period)[0], np.nan)
            e_med = np.where(enough, slot_medians(err, ph_c, period)[0], np.nan)
            common_z = np.nan_to_num(_nanmedian(z_med))
            common_e = _nanmedian(e_med)
            common_e = np.where(np.isfinite(common_e), common_e, np.where(mult[r], 1.0, 0.0))
            stuck = (np.abs(z_med - common_z[:, None]) > p.release_z) & ~closed[r, :period]
            if not stuck.any():
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                fix = np.where(mult[r][:, None], S[r, :period] * e_med / common_e[:, None],
                               S[r, :period] + e_med - common_e[:, None])
            done = stuck & np.isfinite(fix)
            S[r, :period] = np.where(done, fix, S[r, :period])
            rel_at[r, :period] = np.where(done, t, rel_at[r, :period])

    if p.period >= 2 and p.seasonality in ("auto", "none"):
        declared = add_cycle(int(p.period))  # (it grows `allowed`: add first, then index)
        allowed[:, declared] = True  # declared: every series may take it

    for t in range(T):
        # ---- initialise series whose warm-up just completed (uses data before t only)
        ready = ~inited & (n_obs >= p.warmup)
        if ready.any():
            idx = np.flatnonzero(ready)
            if find_cycles:
                look_for_cycles(idx, t)
            lo = window_start(idx, t)
            win = y[idx, lo:t].copy()
            win[exT[lo:t, idx].T] = np.nan
            wnum = num[idx, lo:t] if num is not None else None
            wden = den[idx, lo:t] if den is not None else None
            f = _choose_family(win, wnum, wden, kind, p)
            if p.multiplicative == "auto":
                with np.errstate(invalid="ignore"):
                    # a rhythm in a positive series scales with its level. Zeros are allowed when
                    # most buckets are busy (an hourly count's quiet nights): an additive profile
                    # there would carry a rise of the daytime level into the nights
                    filled = np.where(np.isnan(win), 1.0, win)
                    mu = ((filled >= 0).all(axis=1) & ((filled > 0).mean(axis=1) >= 0.5)
                          & (_nanmedian(win) > 0) & (f != FAM_RATIO))
            else:
                mu = np.full(len(idx), p.multiplicative == "yes")
            ph_win = {c: phases[c][lo:t] for c in candidates}
            detail: dict = {}
            choice, season, lvl, sig, shut_win = init_state(win, ph_win, candidates, mu, f != FAM_GAUSS,
                                                            allowed=allowed[idx], detail=detail)
            R[idx] = detail["refine"]
            fam[idx], mult[idx], prof[idx] = f, mu, choice
            quantum[idx] = np.where(f == FAM_GAUSS, resolution(y[idx, lo:t]), 0.0)
            weigh[idx] = np.where(mu, np.where(f == FAM_COUNT, 1.0, 2 - 2 * p.noise_power), 0.0)
            S[idx] = season
            closed[idx] = shut_win
            L[idx], B[idx] = np.nan_to_num(lvl), 0.0
            if p.lumpy:
                lump[idx] = np.where((f == FAM_GAUSS) & mu, lump_size(win, ph_win, candidates, choice), 0.0)
            noise = _noise_var(f, lvl, ratio_sc[idx], _nanmedian(wden) if wden is not None else None,
                               lump[idx] if p.lumpy else None)
            # a profile from a few weeks of medians is itself uncertain: start with a wider scale
            # that the first weeks of updates shrink to the real one
            V[idx] = np.maximum(p.init_inflation * sig**2 - noise, 0.0)
            inited[idx] = True
            since[idx] = 0
        elif (len(candidates) > 1 or find_cycles or release) and t % p.reselect_every == 0:
            # ---- look at the profile again on recent clean history: a weekly pattern hidden in the
            # warm-up (a festival, a new store), or a cycle that needed more history to show, is
            # picked up later, causally
            idx = np.flatnonzero(inited & (since >= p.reselect_every))
            if len(idx) and find_cycles:
                look_for_cycles(idx, t)
            if len(idx) and len(candidates) == 1 and release:
                # one profile to choose from (days): nothing to re-fit, only stuck slots to re-set
                _release_stuck_slots(idx, window_start(idx, t), t)
            elif len(idx) and len(candidates) > 1:
                lo = window_start(idx, t)
                win = y[idx, lo:t].copy()
                win[excluded[lo:t, idx].T] = np.nan
                ph_win = {c: phases[c][lo:t] for c in candidates}
                detail = {}
                raw = None
                if slot_days:
                    # sub-hourly: the re-check sees the points kept out as anomalies too. A pattern
                    # the warm-up could not show (weekend nights after a Tuesday-Wednesday warm-up,
                    # a 03:30 job) is out of band from its first sight, so without them it would
                    # never be learned; a slot's median over up to four weeks ignores one-offs
                    raw = y[idx, lo:t].copy()
                    raw[exT[lo:t, idx].T] = np.nan
                    win = raw
                choice, season, lvl, sig, shut_win = init_state(win, ph_win, candidates, mult[idx],
                                                            fam[idx] != FAM_GAUSS, current=prof[idx],
                                                            allowed=allowed[idx], detail=detail, slot_win=raw)
                enough = np.isfinite(win).sum(axis=1) >= p.warmup // 2
                moved = (choice != prof[idx]) & enough & np.isfinite(lvl) & ~exT[t, idx]
                if p.lumpy:
                    # the lump size again, on recent clean history: a warm-up inside a festival
                    # (Double 11's swings) would otherwise set it for good
                    now = np.where(moved, choice, prof[idx])
                    fresh = lump_size(win, ph_win, candidates, now)
                    lump[idx] = np.where(enough & (fam[idx] == FAM_GAUSS) & mult[idx] & (fresh > 0), fresh, lump[idx])
                if slot_days:
                    # the same sub-hourly profile: its slots gain (or lose) what the longer history shows
                    same = (choice == prof[idx]) & enough
                    if same.any():
                        j = idx[same]
                        S[j] += detail["refine"][same] - R[j]
                        R[j] = detail["refine"][same]
                if release:
                    # (a sub-hourly time-of-day profile has its own re-check: `refine_slots` above)
                    own = np.array([c.startswith(SLOT_PROFILES) for c in candidates], bool)[prof[idx]]
                    stay = (choice == prof[idx]) & ~own
                    if stay.any():
                        _release_stuck_slots(idx[stay], lo, t)
                if moved.any():
                    j = idx[moved]
                    R[j] = detail["refine"][moved]
                    prof[j], S[j], L[j], B[j] = choice[moved], season[moved], lvl[moved], 0.0
                    rel_at[j] = t  # errors before the switch were against another profile
                    old_age[j] = -1  # a remembered level belongs to the old profile
                    closed[j] = shut_win[moved]
                    wden = den[j, lo:t] if den is not None else None
                    noise = _noise_var(fam[j], lvl[moved], ratio_sc[j], _nanmedian(wden) if wden is not None else None,
                                       lump[j] if p.lumpy else None)
                    V[j] = np.maximum(p.init_inflation * sig[moved] ** 2 - noise, 0.0)
        since += 1

        x = yT[t]
        if num is not None and den is not None and np.isnan(ratio_sc).any():
            with np.errstate(invalid="ignore", divide="ignore"):
                sc = x * den[:, t] / num[:, t]
            ratio_sc = np.where(np.isnan(ratio_sc) & np.isfinite(sc) & (sc > 0), sc, ratio_sc)
        ph = phase_tab[prof, t]
        cal_step = learning_cal and learn_t[t]
        if cal_step:
            ph_cal, ph_real = ph, phase_real[prof, t]
            use_cal = (fav >= LEARN_DAYS * day_weight) & (fav >= 2 * against)
            ph = np.where(use_cal, ph_cal, ph_real)
            # a learned holiday applies to a series only where its own past can show it. A series with
            # no past yet (its data start in the Spring Festival's fortnight) or whose profile has no
            # days off is judged and learns on these buckets like on any other: they count towards
            # its warm-up, and are neither kept out nor silenced. On a day off, one whose past days off
            # looked like ordinary days is judged as on any day (it still learns nothing from it: a day
            # off stays a risky day to learn a level from). A series with a weekly rhythm keeps out its
            # first Spring Festival (a festival unlike any other day off: shops open through the
            # National Day's week close for it) until it has one to compare with
            ordinary = evid_t[t] & (against >= LEARN_DAYS * day_weight) & (against >= 2 * fav)
            learn_here = ~use_cal & (~inited | ~weekly[prof])
            rel = learn_here | (~use_cal & ordinary)
            if rel.any():
                released[t] = rel
                exT[t] &= ~learn_here
        s = S[rows, ph]
        lvl = L + p.phi * B if use_trend else L
        pred = _expect(lvl, s, mult, fam)
        shut = closed[rows, ph]
        pred = np.where(shut, 0.0, pred)  # a slot that was always 0 (a shop's night) is expected to stay 0
        dent = denT[t] if denT is not None else None
        noise = _noise_var(fam, pred, ratio_sc, dent, lump if p.lumpy else None)
        # multiplicative series: the model's own noise scales with the seasonal factor — in
        # proportion for days (a whole day runs high or low), less than that for hours (a quiet night
        # hour is a small count: its noise is partly Poisson-like, not 20 % of nothing)
        sfac = np.where(mult, np.abs(s) ** p.noise_power, 1.0)
        sd = np.sqrt(V * sfac * sfac + noise)
        sd = np.maximum(sd, np.maximum(np.maximum(p.rel_floor * np.abs(pred), quantum), 1e-9))
        ref_t = refT[t] if released is None or not cal_step else np.where(released[t], -1, refT[t])
        if cal_step:
            with np.errstate(invalid="ignore"):
                p_cal = _expect(lvl, S[rows, ph_cal], mult, fam)
                p_real = _expect(lvl, S[rows, ph_real], mult, fam)
                xt = yT[t]
                info = (evid_t[t] & (ph_cal != ph_real) & inited & np.isfinite(xt) & ~shut
                        & (np.abs(p_cal - p_real) > sd))
                closer = np.abs(xt - p_cal) < np.abs(xt - p_real)
            fav += info & closer
            against += info & ~closer
            # while a series' past cannot yet tell whether it follows the calendar, a day off that
            # looks like the calendar's day (closer to the slot the calendar gives it) is not an
            # alert: it is what the series learns from. One that looks like neither still alerts
            offday_sup[t] |= info & closer & ~use_cal & ~ordinary
            cal_days[t] = np.where(use_cal, np.clip(np.round(fav / day_weight), 1, 127), 0)
        if baseline is not None:
            baseline[t] = np.where(inited, pred, np.nan)
        if baseline is not None and (ref_t >= 0).any():
            # same event last time: today's baseline (level, weekday, trend) times the lift the event
            # had over its own baseline then
            has = ref_t >= 0
            ref_val, ref_base = _event_reference(yT, baseline, scale, fam, ref_t, p.compare_halfwidth, day_span)
            with np.errstate(invalid="ignore", divide="ignore"):
                pc = np.where(mult, pred * ref_val / ref_base, pred + ref_val - ref_base)
            # no value for this series last time (a newer store): nothing to compare with, so no alert
            offday_sup[t] |= has & ~np.isfinite(pc)
            has &= np.isfinite(pc)
            pred = np.where(has, pc, pred)
            # last time's day had its own noise too: twice the variance, plus the tolerance
            # (for a proportion the tolerance is relative to the distance from its bound: 8 % of a
            # 1 % late rate, not 8 points of a 99 % on-time rate)
            room = np.where(fam == FAM_RATIO, np.minimum(np.abs(pc), np.abs(np.nan_to_num(ratio_sc, nan=1.0) - pc)),
                            np.abs(pc))
            sd = np.where(has, np.sqrt(2 * sd**2 + (p.compare_tolerance * room) ** 2), sd)
        if recall_any:
            # back to the level from before a "new normal" (a store that recovered after an outage
            # was accepted as its new level): judged against that old level, so recovery is no news
            c = np.flatnonzero(old_age >= 0)  # the few series that remember one
            x0 = yT[t, c]
            s_old = old_S[c, ph[c]]
            f_c = fam[c]
            old_pred = _expect(old_L[c], s_old, mult[c], f_c)
            old_noise = _noise_var(f_c, old_pred, ratio_sc[c], dent[c] if dent is not None else None,
                                   lump[c] if p.lumpy else None)
            old_sd = np.sqrt(V[c] * sfac[c] * sfac[c] + old_noise)
            with np.errstate(invalid="ignore", divide="ignore"):
                far = np.abs(x0 - pred[c])
                near = np.abs(x0 - old_pred)
                back = (inited[c] & ~shut[c] & (ref_t[c] < 0) & np.isfinite(x0) & (far > p.run_z * sd[c])
                        & ((near < p.run_z * old_sd) | (near < 0.2 * far)) & (np.sign(x0 - pred[c]) == -old_dir[c]))
            if back.any():
                b = c[back]
                pred = pred.copy()
                sd = sd.copy()
                s = s.copy()
                pred[b] = old_pred[back]
                sd[b] = np.maximum(old_sd[back], p.rel_floor * np.abs(old_pred[back]))
                L[b], B[b] = old_L[b], 0.0
                S[b] = old_S[b]
                rel_at[b] = t  # the profile restored is another one than the errors so far were against
                s[b] = s_old[back]
                if lvl is not L:
                    lvl = lvl.copy()
                    lvl[b] = old_L[b]  # this step's level updates start from the old level
                run_len[b], run_sum[b], old_age[b] = 0, 0.0, -1
            old_age[c] += (old_age[c] >= 0)
            old_age[old_age > RECALL_FOR * p.adapt_after] = -1
            recall_any = bool((old_age >= 0).any())
        live = inited
        expected[t] = np.where(live, pred, np.nan)
        scale[t] = np.where(live, np.where(fam == FAM_COUNT, sd**2, sd), np.nan)
        learning[t] = ~live
        if lump_t is not None:
            lump_t[t] = lump
        if wd_as[t] >= 0:
            offday_sup[t] |= ~weekly[prof] & (use_cal if cal_step else True)

        valid = np.isfinite(x)
        ex_t = exT[t]
        n_obs += valid & ~ex_t
        with np.errstate(invalid="ignore"):
            resid = x - pred
            z = resid / sd
            active = valid & live & ~ex_t & np.isfinite(pred) & ~shut
            # a point far out, or the second of two in a row beyond `run_z` on the same side, stays
            # out of the baseline: an outage (0 orders an hour where 8 are usual is "only" 2.7 sd)
            # must not teach the model that zero is normal while it lasts
            far = np.abs(z) > p.run_z
            out = active & ((np.abs(z) > p.exclude_z) | (far & prev_far & (np.sign(z) == prev_sign)))
            normal = active & ~out
        prev_far = np.where(valid, far, prev_far)
        prev_sign = np.where(valid, np.sign(z), prev_sign)
        excluded[t] = out | ex_t
        # ---- run of out-of-band points in one direction → "new normal"
        dirn = np.sign(z)
        cont = out & (dirn == run_dir)
        with np.errstate(invalid="ignore", divide="ignore"):
            deseason = np.where(mult, x / np.where(np.abs(s) > TINY, s, 1.0), x - s)
        run_len = np.where(out, np.where(cont, run_len + 1, 1), np.where(normal, 0, run_len))
        run_sum = np.where(out, np.where(cont, run_sum + deseason, deseason), np.where(normal, 0.0, run_sum))
        run_dir = np.where(out, dirn, run_dir)
        adapt = run_len >= p.adapt_after
        if adapt.any():
            # out-of-band points never moved the level or the profile: they are still the old ones
            old_L[adapt], old_dir[adapt], old_age[adapt] = L[adapt], run_dir[adapt], 0
            old_S[adapt] = S[adapt]
            recall_any = True
            L[adapt] = run_sum[adapt] / run_len[adapt]
            B[adapt] = 0.0
            run_len[adapt], run_sum[adapt] = 0, 0.0
        # ---- scale: normal points fully, out-of-band points lightly (so a too-small scale recovers)
        # Huber clipping protects a Gaussian level; on skewed counts and rates it would pull the
        # level down, and the exclusion of out-of-band points already protects them
        cap = np.where(fam == FAM_GAUSS, p.huber, p.exclude_z) * sd
        rc = np.clip(np.nan_to_num(resid), -cap, cap)
        inv2 = 1.0 / np.maximum(sfac * sfac, 1e-6)
        # the extra variance is clamped after averaging, not per point: clamping each point would
        # bias it upwards and widen count and ratio bands for nothing
        e2 = (rc * rc / np.where(fam == FAM_GAUSS, kappa, kappa_wide) - noise) * inv2
        capo = 3.0 * sd
        ro = np.clip(np.nan_to_num(resid), -capo, capo)
        e2o = (ro * ro / kappa_out - noise) * inv2
        V = np.where(normal, (1 - p.lam) * V + p.lam * e2, V)
        lo_w = p.lam / 4
        V = np.where(out & ~adapt, (1 - lo_w) * V + lo_w * e2o, V)
        V = np.maximum(V, 0.0)
        if not normal.any():
            continue
        # ---- level, trend and season from normal points (Huber-clipped)
        xc = pred + rc
        safe_s = np.where(np.abs(s) > TINY, s, 1.0)
        # a quiet slot says little about the level: 3 orders at 3 am where 1 is usual is noise, but
        # read as "level ×3" it would lift the whole day. Multiplicative updates are weighted by what
        # the slot can tell (inverse relative variance: ∝ s for a count, s^(2−2·noise_power) else)
        if weigh.any():
            a = p.alpha * np.minimum(np.abs(s), 1.0) ** weigh
            new_l = np.where(mult, a * xc / safe_s + (1 - a) * lvl, p.alpha * (xc - s) + (1 - p.alpha) * lvl)
        else:
            new_l = np.where(mult, p.alpha * xc / safe_s, p.alpha * (xc - s)) + (1 - p.alpha) * lvl
        new_l = np.where(mult, np.maximum(new_l, TINY), new_l)
        if use_trend:
            B = np.where(normal, p.beta * (new_l - L) + (1 - p.beta) * p.phi * B, B)
        new_s = np.where(mult, p.gamma * xc / np.where(new_l > TINY, new_l, 1.0), p.gamma * (xc - new_l))
        new_s = new_s + (1 - p.gamma) * s
        L = np.where(normal, new_l, L)
        S[rows, ph] = np.where(normal, new_s, s)

    def back(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.T)

    ceiling = np.where(fam == FAM_RATIO, np.where(np.isnan(ratio_sc), 1.0, ratio_sc), np.inf)
    return EngineOut(back(expected), back(scale), fam, back(learning), back(excluded), [candidates[i] for i in prof],
                     back(offday_sup), ceiling, back(lump_t) if lump_t is not None else None,
                     back(cal_days) if cal_days is not None else None,
                     back(released) if released is not None else None)


def _expect(level: np.ndarray, s: np.ndarray, mult: np.ndarray, fam: np.ndarray) -> np.ndarray:
    """The expectation from a level and a slot's seasonal factor; a count or a rate is never below 0."""
    pred = np.where(mult, level * s, level + s)
    return np.where(fam == FAM_GAUSS, pred, np.maximum(pred, 0.0))


RELEASE_VISITS = 3  # visits of a slot in the re-check's window before its fit can re-set it
LEARN_DAYS = 2  # past days off (or make-up workdays) that must have looked like one before the calendar is used
RECALL_FOR = 8  # a level from before a new normal is remembered for this many adapt_after spans
LIFT_PRIOR_SD = 0.3  # how far event lifts usually are from 1 (a +30 % promotion day is ordinary)


def resolution(win: np.ndarray) -> np.ndarray:
    """Per series (row), the resolution its values are recorded in (0 = none found). A series stored
    in whole percent or 0.1 s cannot move by less, so its noise is never smaller than one step: on a
    flat stretch a robust scale collapses towards 0 and one step of the recording would read as a huge
    deviation. The smallest non-zero step between two consecutive values is that resolution where the
    steps are whole multiples of it (`QUANTUM_SHARE` of those up to `QUANTUM_SPAN` of it), where the
    series mostly stands still (`STILL_SHARE` of its steps are 0: an idle disk moves by a write at
    least), or where there are too few steps to tell (`QUANTUM_MIN_STEPS`). Otherwise there is none: a
    day's sales that move by thousands have no resolution in the thousands, their smallest step in a
    warm-up is chance (a floor of 3,464 on a 30,000 a day series made its band 2.5 times too wide)."""
    with np.errstate(invalid="ignore"):
        step = np.diff(win, axis=1)
        d = np.abs(step)
        d = np.where(np.isfinite(d) & (d > 0), d, np.inf)
    q = d.min(axis=1) if d.shape[1] else np.full(win.shape[0], np.inf)
    q = np.where(np.isfinite(q), q, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = d / np.where(q > 0, q, np.nan)[:, None]
        near = np.isfinite(r) & (r <= QUANTUM_SPAN)
        whole = near & (np.abs(r - np.round(r)) <= QUANTUM_TOL)
        share = whole.sum(axis=1) / np.maximum(near.sum(axis=1), 1)
        steps = np.isfinite(d).sum(axis=1)
        moves = np.isfinite(step).sum(axis=1)
        still = 1 - steps / np.maximum(moves, 1)
    # a series that mostly stands still (a disk idle but for its writes) moves by its smallest step at
    # least: kept; so are too few steps to tell
    return np.where((share >= QUANTUM_SHARE) | (still >= STILL_SHARE) | (steps < QUANTUM_MIN_STEPS), q, 0.0)


QUANTUM_SPAN = 50.0  # steps up to this many resolutions are checked for being whole multiples of it
QUANTUM_TOL = 0.02  # … within this fraction of one
QUANTUM_SHARE = 0.9  # … and this share of them must be
QUANTUM_MIN_STEPS = 20  # non-zero steps needed to tell
STILL_SHARE = 0.5  # a series whose value stays the same in this share of its steps keeps its smallest step


def _event_reference(yT: np.ndarray, baseline: np.ndarray, scale: np.ndarray, fam: np.ndarray, ref: np.ndarray,
                     half: int, day_span: tuple[np.ndarray, np.ndarray] | None = None):
    """Last time's value and baseline around each series' reference bucket (-1 = none), summed over
    ±`half` buckets, or over the reference's calendar day when `day_span` (first, end index of each
    bucket's day) is given, so that an hourly lift is a day's lift, not one noisy night hour's. The lift is
    shrunk towards 1 by its own noise: 35 orders on a day that expected 13 is a lift of 2.7 only
    if 13 orders are not noisy."""
    m = len(ref)
    val = np.full(m, np.nan)
    base = np.full(m, np.nan)
    for r in np.unique(ref[ref >= 0]):
        cols = np.flatnonzero(ref == r)
        if day_span is not None:
            lo, hi = int(day_span[0][r]), int(day_span[1][r])
        else:
            lo, hi = max(0, r - half), min(len(yT), r + half + 1)
        y, b = yT[lo:hi, cols], baseline[lo:hi, cols]
        both = np.isfinite(y) & np.isfinite(b)
        ys, bs = np.where(both, y, 0.0).sum(axis=0), np.where(both, b, 0.0).sum(axis=0)
        n = both.sum(axis=0)
        centre = np.isfinite(yT[r, cols]) & np.isfinite(baseline[r, cols])
        ok = (n > 0) & centre
        sd2 = scale[lo:hi, cols]
        sd2 = np.where((fam[cols] == FAM_COUNT)[None, :], sd2, sd2 * sd2)
        noise = np.where(both, sd2, 0.0).sum(axis=0)
        # keep the centre bucket's own baseline level: only the ratio (or difference) is averaged
        with np.errstate(invalid="ignore", divide="ignore"):
            lift = ys / bs
            rel2 = noise / (bs * bs)
            w = LIFT_PRIOR_SD**2 / (LIFT_PRIOR_SD**2 + rel2)
            lift = 1 + w * (lift - 1)
            if day_span is not None:
                # an event can change the shape of the day too (couriers pause before the Spring
                # Festival: the online night empties while shops stay busy). Last time's own hour
                # moves the day's lift as far as its noise allows: fully for a big total, hardly
                # for a quiet hour of a small series
                yr, br = yT[r, cols], baseline[r, cols]
                hour_rel2 = np.where(fam[cols] == FAM_COUNT, scale[r, cols], scale[r, cols] ** 2) / (br * br)
                wh = LIFT_PRIOR_SD**2 / (LIFT_PRIOR_SD**2 + hour_rel2)
                hour_lift = np.where(br > 0, yr / br, lift)
                lift = np.where(np.isfinite(hour_lift) & np.isfinite(wh), lift + wh * (hour_lift - lift), lift)
            val[cols] = np.where(ok, baseline[r, cols] * lift, np.nan)
        base[cols] = np.where(ok, baseline[r, cols], np.nan)
    return val, base


def lump_size(win: np.ndarray, ph_win: dict[str, np.ndarray], candidates: list[str], choice: np.ndarray,
              min_seen: int = 3) -> np.ndarray:
    """Per series, the variance per unit of mean of a sum of lumps (GMV: a sum of baskets), or 0.

    A sum of a random number of lumps has variance lump·mean (plus extra·mean² from day-to-day
    swings). Across the slots of an hourly profile the mean varies 20-fold, so the two parts can be
    told apart: var_slot ≈ lump·mean_slot + extra·mean_slot², fitted by least squares on relative
    errors. The series counts as a sum of lumps only where the lump part is the larger at the
    typical slot, or where some bucket was empty; a smooth series with proportional noise gets 0
    (and keeps its Gaussian band).
    Without it one scale for all hours is too wide at night and too narrow at noon."""
    out = np.zeros(win.shape[0])
    for j, name in enumerate(candidates):
        rows = np.flatnonzero(choice == j)
        period = PROFILES[name]
        if not len(rows) or period < 24:
            continue
        w = win[rows]
        ph = ph_win[name]
        fin = np.isfinite(w)
        n = slot_counts(fin, ph, period)
        s1, s2 = slot_sums(w, ph, period), slot_sums(w * w, ph, period)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / n
            var = (s2 - n * mean * mean) / (n - 1)
            use = (n >= min_seen) & (mean > 0) & np.isfinite(var)
            # var/mean² = lump/mean + extra: a line in 1/mean, one point per slot
            x = np.where(use, 1.0 / mean, 0.0)
            y = np.where(use, var / (mean * mean), 0.0)
            k = use.sum(axis=1)
            mx, my = x.sum(axis=1) / k, y.sum(axis=1) / k
            sxx = (np.where(use, (x - mx[:, None]) ** 2, 0.0)).sum(axis=1)
            sxy = (np.where(use, (x - mx[:, None]) * (y - my[:, None]), 0.0)).sum(axis=1)
            lump = sxy / sxx
            extra = my - lump * mx
            typical = _nanmedian(np.where(use, mean, np.nan))
            # an empty bucket in a slot that is usually busy is itself the mark of a sum of lumps
            # (smooth noise never lands on 0); a shop's shut hours, always 0, say nothing
            zeros = slot_counts(fin & (w == 0), ph, period)
            empty = ((zeros > 0) & (zeros < n)).any(axis=1)
            ok = (k >= 6) & (lump > 0) & ((lump > np.maximum(extra, 0.0) * typical) | empty)
        out[rows] = np.where(ok & np.isfinite(lump), lump, 0.0)
    return out


def _noise_var(fam: np.ndarray, mean: np.ndarray, ratio_sc: np.ndarray, den: np.ndarray | None,
               lump: np.ndarray | None = None) -> np.ndarray:
    """Variance the data must have whatever the model: Poisson for counts, binomial for ratios, and
    lump × mean for a sum of lumps (see `lump_size`)."""
    ratio_sc = np.where(np.isnan(ratio_sc), 1.0, ratio_sc)
    noise = np.where(fam == FAM_COUNT, np.maximum(mean, 0.1), 0.0)
    if lump is not None:
        noise = np.where(fam == FAM_GAUSS, lump * np.maximum(mean, 0.0), noise)
    if den is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            pr = np.clip(mean / ratio_sc, 0.0, 1.0)
            # shrink towards 1/2 by one success and one failure: a rate of 100 % on 30 orders still
            # has room for one late parcel
            pr = (pr * den + 1) / (den + 2)
            binom = ratio_sc**2 * pr * (1 - pr) / den
        noise = np.where((fam == FAM_RATIO) & np.isfinite(binom), binom, noise)
    return noise
