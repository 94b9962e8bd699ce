"""Turn scores into yes/no with the knobs a business user sets.

Kept apart from scoring so that sensitivity, direction, minimum change, duration and volume can
be retuned (from feedback, in a backtest preview) without re-running a detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from metricloop.detect.base import FIXED, DetectorConfig, Scores, map_blocks
from metricloop.detect.families import count_runs, merge_runs
from metricloop.detect.stats import band, score_log_tail, sensitivity_to_k, threshold_score


def default_direction(good_direction: str | None) -> str:
    """Alert on the bad direction: a drop when up is good (GMV), a rise when down is good (complaints)."""
    return {"up": "down", "down": "up"}.get(good_direction or "", "both")


def default_min_duration(grain: str | None) -> int:
    """One day out of band is news; one hour or one minute usually is not (a blip): hours and minutes
    need two in a row."""
    return {"hour": 2, "minute": 2}.get(grain or "", 1)


def lone_point_alerts(grain: str | None, step: float | None = None) -> bool:
    """Whether, under the default duration, one point far beyond the band alerts alone (`BLIP_MARGIN`).
    A point that sums or averages five minutes or more (an hour's orders, a 5-minute CPU average) is
    news at once when it is far out: half the usual orders at noon. A point sampled every minute or
    two is one reading of a latency or a few requests: one odd reading (a pause, a scrape that caught
    a burst) is the commonest noise such series have, and an outage shows in its next minute anyway."""
    if step:
        return step >= LONE_POINT_STEP
    return grain != "minute"


LONE_POINT_STEP = 300.0  # seconds: the shortest step whose points alert alone


def default_sustained(grain: str | None) -> int:
    """Longest run the sustained test looks at: three days, four hours (an hourly GMV outage scores
    about 3 sd an hour as a count of baskets: three such hours fall just short of k·√3, four do not;
    six raised a false alert on the demo for no further find)."""
    return {"hour": 4, "minute": 10, "day": 3}.get(grain or "", 2)


BLIP_MARGIN = 1.5  # sd beyond the band at which one point of a grain that asks for a run alerts alone
Z_CAP = 8.0  # beyond this a point is simply "certain" (erfinv of a score within 1e-16 of 1 is unstable)


def standardised(scores: Scores) -> np.ndarray | None:
    """Signed score-equivalent z for every point (None for fixed-band detectors): the normal
    deviate with the same two-sided tail as the point's own model (Gaussian, negative binomial,
    binomial), so 0 orders in an hour that expects 8 counts as what it is for a count, not as
    "8 / √8 sd"."""
    fam = np.asarray(scores.family)
    if (fam == FIXED).all():
        return None
    with np.errstate(invalid="ignore"):
        ell = np.minimum(score_log_tail(scores.score), 700.0)
        z = -special.ndtri_exp(-ell - np.log(2.0))  # the deviate with that two-sided tail
        z = np.minimum(np.maximum(z, 0.0), Z_CAP) * np.sign(scores.values - scores.expected)
    z[~np.isfinite(scores.values) | ~np.isfinite(scores.expected)] = np.nan
    z[(fam == FIXED)] = np.nan
    return z


def sustained_runs(scores: Scores, k: float, longest: int, z: np.ndarray | None = None) -> np.ndarray | None:
    """Signed length of the shortest run of 2..`longest` points ending here whose summed z is beyond
    k·√n, each point ≥ 1 sd off on that side (0 where none). A stock-out that takes 40 % off a noisy
    store is 3 sd a day, never 5, but three such days in a row are not noise (Stouffer's test)."""
    if longest < 2:
        return None
    z = standardised(scores) if z is None else z
    if z is None:
        return None
    usable = np.isfinite(z) & ~scores.learning & ~scores.suppressed
    span = RHO_SPAN.get(scores.grain or "", 60)
    parts = map_blocks(lambda b: _sustained_block(z[b[0]:b[1]], usable[b[0]:b[1]], k, longest, span),
                       z.shape[0], RUN_BLOCK)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


RUN_BLOCK = 2_000  # series per block of the run test


def _sustained_block(z: np.ndarray, usable: np.ndarray, k: float, longest: int, span: int) -> np.ndarray:
    rho = lag_correlation(z, span).ravel()
    T = z.shape[-1]
    out = np.zeros(z.shape, np.int16)
    flat = out.reshape(-1)
    for side in (1, -1):
        zs = np.where(usable, side * z, 0.0)
        ok = usable & (zs >= 1.0)
        run = run_length(ok).ravel()
        # each point counts for at most k: a run must be several points' doing, not one spike
        # with a neighbour that happened to be 1 sd off
        csum = np.cumsum(np.where(ok, np.minimum(zs, k), 0.0), axis=-1).ravel()
        del zs, ok
        # only the ends of runs of two or more can be a run's alert (a few % of the points)
        at = np.flatnonzero(run >= 2)
        length, col, r = run[at], at % T, rho[at]
        hit = np.zeros(at.size, np.int16)
        # errors that run together (a stock-out lasts days) are fewer independent points than they
        # look: the variance of a sum of w of them is w + 2·Σ_{j<w} (w−j)·ρ^j, not w. That sum grows
        # by Σ_{j<w} ρ^j from w − 1 to w, so each width costs a few operations, not w of them
        power = np.ones_like(r)
        geo = np.zeros_like(r)
        pair = np.zeros_like(r)
        for w in range(2, longest + 1):
            power *= r
            geo += power
            pair += geo
            open_ = np.flatnonzero((hit == 0) & (length >= w))
            if not open_.size:
                break
            i = at[open_]
            total = csum[i] - np.where(col[open_] >= w, csum[np.maximum(i - w, 0)], 0.0)
            beyond = total > k * np.sqrt(w + 2 * pair[open_])
            hit[open_[beyond]] = w  # the shortest run that is beyond
        got = hit > 0
        flat[at[got]] = side * hit[got]  # a point beyond on both sides cannot be: ≥ 1 sd off on one
    return out


# points the lag-1 correlation of a series' errors is averaged over (exponentially): two months of
# days, two weeks of hours
RHO_SPAN = {"day": 60, "hour": 24 * 14, "minute": 60 * 24 * 2}
RHO_MAX = 0.8
RHO_Z = 2.5


def lag_correlation(z: np.ndarray, span: int = 60) -> np.ndarray:
    """Per point, the lag-1 correlation of the series' standardised errors up to the point before
    (causal): an exponentially weighted mean of z[t]·z[t−1] over one of z², from ordinary points
    only (|z| < RHO_Z), so that an anomaly's own run does not make the noise look correlated.
    In [0, RHO_MAX]."""
    from scipy.signal import lfilter

    with np.errstate(invalid="ignore"):
        calm = np.abs(z) < RHO_Z  # NaN is not calm
    zc = np.where(calm, z, 0.0).astype(np.float32)  # single precision is plenty for a correlation
    prod = np.zeros_like(zc)
    np.multiply(zc[:, 1:], zc[:, :-1], out=prod[:, 1:])  # 0 unless both points are ordinary
    a = np.float32(2.0 / (span + 1))
    num = lfilter([a], [np.float32(1.0), a - np.float32(1.0)], prod, axis=-1)
    den = lfilter([a], [np.float32(1.0), a - np.float32(1.0)], zc * zc, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.clip(num / den, 0.0, RHO_MAX)
    rho = np.nan_to_num(rho, nan=0.0)
    out = np.zeros_like(rho)
    out[:, 1:] = rho[:, :-1]  # what was known before the point
    return out


def run_length(flags: np.ndarray) -> np.ndarray:
    """Length of the run of True ending at each point, along the last axis."""
    f = flags.astype(np.int32)
    c = np.cumsum(f, axis=-1, dtype=np.int32)
    reset = np.where(f == 0, c, 0)
    return c - np.maximum.accumulate(reset, axis=-1)


@dataclass
class Detection:
    scores: Scores
    lower: np.ndarray
    upper: np.ndarray
    is_anomaly: np.ndarray  # series × time, bool
    direction: np.ndarray  # +1 above the band, −1 below, 0 inside
    k: float
    alert_direction: str
    config: DetectorConfig
    sustained: np.ndarray | None = None  # >1: flagged as the end of a run of that many points together
    @property
    def values(self) -> np.ndarray:
        return self.scores.values

    @property
    def expected(self) -> np.ndarray:
        return self.scores.expected

    def deviation_bands(self) -> np.ndarray:
        """How far from expected, in band half-widths (±1 = on the edge of the normal range)."""
        v, e = self.values, self.expected
        with np.errstate(invalid="ignore", divide="ignore"):
            width = np.where(v >= e, self.upper - e, e - self.lower)
            return (v - e) / np.where(width > 0, width, np.nan)

    def deviation_pct(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.values - self.expected) / np.abs(self.expected)

    def state(self) -> np.ndarray:
        """Per series, now: 'learning' while warming up, else 'ok' or 'anomalous'."""
        last_learning = self.scores.learning[:, -1] if self.scores.learning.size else np.ones(0, bool)
        last_anom = self.is_anomaly[:, -1] if self.is_anomaly.size else np.zeros(0, bool)
        return np.where(last_learning, "learning", np.where(last_anom, "anomalous", "ok"))

    def anomalies(self, *, explain: bool = True, **labels: Any) -> pd.DataFrame:
        """One row per flagged point, with its explanation (see `metricloop.detect.explain`)."""
        from metricloop.detect.explain import anomalies_frame

        return anomalies_frame(self, explain=explain, **labels)


def _edge(limit: np.ndarray | None, like: np.ndarray, missing: float = np.inf) -> np.ndarray:
    if limit is None:
        return np.full(like.shape, missing)
    return np.broadcast_to(np.asarray(limit, dtype=float)[:, None], like.shape)


@dataclass
class Flags:
    """What a sensitivity alone decides: which points are out of band, before direction, minimum change,
    volume and duration (see `alert_mask`). Computed once per sensitivity, so tuning can sweep the other
    knobs over it."""

    k: float
    lower: np.ndarray
    upper: np.ndarray
    above: np.ndarray
    below: np.ndarray
    direction: np.ndarray  # +1 above the band, −1 below, 0 inside
    sustained: np.ndarray | None
    z: np.ndarray | None
    longest: int


def band_flags(scores: Scores, config: DetectorConfig, *, z: np.ndarray | None = None) -> Flags:
    """The out-of-band points at `config.sensitivity` (and its run test). `z` (from `standardised`) may be
    passed in when it is already known: it does not depend on the sensitivity."""
    k = sensitivity_to_k(config.sensitivity, scores.grain, scores.step)
    lower, upper = band(scores, k)
    v, e = scores.values, scores.expected
    with np.errstate(invalid="ignore"):
        # a value on the edge is not out of it, whatever rounding did (138/138 × 100 vs a 100 % ceiling)
        above = v > upper
        below = v < lower
        above[above] = ~np.isclose(v[above], upper[above], rtol=1e-9, atol=0.0)
        below[below] = ~np.isclose(v[below], lower[below], rtol=1e-9, atol=0.0)
        scored = np.asarray(scores.family) != FIXED
        if scored.any():
            # a scored model alerts where its (calibrated) score passes the threshold of k; the band is
            # the model's own ±k, and a value the metric cannot pass (a 100 % ceiling) never counts
            beyond = scores.score >= threshold_score(k)
            at_top = np.isclose(v, upper, rtol=1e-9, atol=0.0) & (upper >= _edge(scores.ceiling, v))
            at_bottom = np.isclose(v, lower, rtol=1e-9, atol=0.0) & (lower <= _edge(scores.floor, v, -np.inf))
            above = np.where(scored[:, None], beyond & (v > e) & ~at_top, above)
            below = np.where(scored[:, None], beyond & (v < e) & ~at_bottom, below)
    longest = config.sustained if config.sustained is not None else default_sustained(scores.grain)
    min_duration = config.min_duration or default_min_duration(scores.grain)
    # the score-equivalent z (an erfinv over every point) serves the run test and the lone-point rule
    if z is None and (longest >= 2 or (min_duration > 1 and config.min_duration is None)):
        z = standardised(scores)
    sustained = sustained_runs(scores, k, longest, z)
    if longest >= 2:  # and the run test of each series' own family (a count's run of zeros)
        sustained = merge_runs(sustained, count_runs(scores, k, z=z))
    if sustained is not None:
        above |= sustained > 0
        below |= sustained < 0
    direction = np.where(above, 1, np.where(below, -1, 0)).astype(np.int8)
    return Flags(k, lower, upper, above, below, direction, sustained, z, longest)


def usable_points(scores: Scores) -> np.ndarray:
    """Points that may alert at all: past the warm-up, not suppressed by the calendar, with a value."""
    return ~scores.learning & ~scores.suppressed & np.isfinite(scores.values)


def alert_mask(
    scores: Scores,
    flags: Flags,
    config: DetectorConfig,
    *,
    good_direction: str | None = None,
    volume: np.ndarray | None = None,
    relative: np.ndarray | None = None,
    usable: np.ndarray | None = None,
) -> np.ndarray:
    """The alerting points: `flags` narrowed by direction, minimum change, volume and duration.
    `relative` (|v − e| / |e|) and `usable` (`usable_points`), the same for every knob, may be passed in by a
    caller that sweeps."""
    v, e = scores.values, scores.expected
    want = config.direction or default_direction(good_direction)
    if want == "up":
        cand = flags.above.copy()
    elif want == "down":
        cand = flags.below.copy()
    else:
        cand = flags.above | flags.below
    with np.errstate(invalid="ignore", divide="ignore"):
        if config.min_abs_change > 0:
            cand &= np.abs(v - e) >= config.min_abs_change
        if config.min_rel_change > 0:
            if relative is not None:
                cand &= relative >= config.min_rel_change
            else:
                cand &= np.abs(v - e) >= config.min_rel_change * np.abs(e)
        if config.min_volume is not None:
            vol = volume if volume is not None else scores.volume
            if vol is None:
                vol = np.fmax(np.abs(v), np.abs(e))
            cand &= np.nan_to_num(np.asarray(vol, dtype=float), nan=0.0) >= config.min_volume
    cand &= usable_points(scores) if usable is None else usable
    min_duration = config.min_duration or default_min_duration(scores.grain)
    if min_duration > 1:
        direction, sustained, z = flags.direction, flags.sustained, flags.z
        up_run = run_length(cand & (direction > 0))
        down_run = run_length(cand & (direction < 0))
        long_enough = np.maximum(up_run, down_run) >= min_duration
        if sustained is not None:  # a run found by the sustained test is as long as the run itself
            long_enough |= np.abs(sustained) >= min_duration
        if config.min_duration is None and z is not None and lone_point_alerts(scores.grain, scores.step):
            # the default asks a blip to last; a point far beyond any blip (twice the usual hour at
            # noon) is news at once. An explicit min_duration is taken as written.
            with np.errstate(invalid="ignore"):
                long_enough |= np.abs(np.nan_to_num(z)) >= min(flags.k + BLIP_MARGIN, Z_CAP)
        cand &= long_enough
    return cand


def apply_conditions(
    scores: Scores,
    config: DetectorConfig,
    *,
    good_direction: str | None = None,
    volume: np.ndarray | None = None,
) -> Detection:
    flags = band_flags(scores, config)
    cand = alert_mask(scores, flags, config, good_direction=good_direction, volume=volume)
    want = config.direction or default_direction(good_direction)
    sustained = flags.sustained
    return Detection(scores, flags.lower, flags.upper, cand, flags.direction, flags.k, want, config,
                     np.abs(sustained) if sustained is not None else None)
