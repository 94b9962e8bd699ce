"""Shape detector input into an aligned series × time batch, and derive seasonal phases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from metricloop.errors import MetricloopError
from metricloop.grains import (  # noqa: E402,F401 - part of this module's interface
    DAY,
    GRAIN_SECONDS,
    STANDARD_STEPS,
    grain_kind,
    parse_grain,
    step_name,
)


# seasonal profiles a series can follow, with their period in buckets
# hour_by_daytype: one hour-of-day shape for workdays and one for days off (weekends and public
# holidays; make-up workdays count as workdays): people shop later on a day off, a shop opens later
class _Profiles(dict):
    """Profile name → period in buckets; ``cycle:N`` is a cycle of N points found in the series' own
    past (`metricloop.detect.periods`), whatever the step."""

    def __missing__(self, key: str) -> int:
        if isinstance(key, str) and key.startswith("cycle:"):
            return int(key[6:])
        if isinstance(key, str) and key.startswith(SLOT_PROFILES):
            # `slot_of_day:288` / `slot_by_daytype:288`: the time of day at the series' own step
            # (288 slots a day at 5 minutes), one day or two day types
            base, n = key.split(":")
            return int(n) * (2 if base == "slot_by_daytype" else 1)
        raise KeyError(key)


# sub-hourly profiles keyed on the time-of-day slot at the series' own step, refining the hour
# profile of the same name (`profiles._refine_slots`): the hour they stand for and the hour profile
SLOT_PROFILES = ("slot_of_day:", "slot_by_daytype:")
SLOT_MIN_STEP = 300  # seconds: the shortest step keyed on its own time-of-day slots
SLOT_BASE = {"slot_of_day": "hour_of_day", "slot_by_daytype": "hour_by_daytype"}


def slot_hours(name: str) -> tuple[str, int, np.ndarray]:
    """For a slot profile: its hour profile, its slots per day, and the hour-profile slot of each of
    its slots (slot 42 of 288, 03:30, is hour 3)."""
    base, n = name.split(":")
    per_day = int(n)
    hours = np.arange(per_day) * 24 // per_day
    if base == "slot_by_daytype":
        hours = np.concatenate([hours, hours + 24])
    return SLOT_BASE[base], per_day, hours.astype(np.int64)


PROFILES = _Profiles({"none": 1, "hour_of_day": 24, "hour_by_daytype": 48, "day_of_week": 7, "hour_of_week": 168})


@dataclass
class Batch:
    values: np.ndarray  # (n, T) float64, NaN = missing
    times: pd.DatetimeIndex | None
    grain: str | None
    numerator: np.ndarray | None = None
    denominator: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    ratio_scale: float | None = None  # value = numerator / denominator × ratio_scale (100 for %, 1000 for ‰)
    # the sampling interval in seconds (300 for every 5 minutes; a month counts as 30 days), None =
    # unknown (a plain sequence). `grain` is the class of that step the detectors' defaults are keyed
    # on: minute (under 10 minutes), hour (under a day), day, week, month
    step: float | None = None

    @property
    def points_per_day(self) -> float | None:
        """Points in a day at this step (288 at 5 minutes, 24 hourly, 1 daily); None when unknown."""
        return points_per(self.step, DAY)

    @property
    def points_per_week(self) -> float | None:
        return points_per(self.step, 7 * DAY)

    def slice(self, lo: int, hi: int) -> Batch:
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[lo:hi]

        return Batch(self.values[lo:hi], self.times, self.grain, cut(self.numerator), cut(self.denominator),
                     ratio_scale=self.ratio_scale, step=self.step)


def points_per(step: float | None, span: float) -> float | None:
    return span / step if step else None





def is_standard_step(step: float) -> bool:
    """A step a SQL bucket can be floored to: whole minutes or hours that divide a day, a day, a week, a month."""
    return int(step) in STANDARD_STEPS


@dataclass
class StepInfo:
    """What `infer_step` found in a set of timestamps."""

    step: float | None  # seconds; None = no usable spacing (fewer than 2 distinct times)
    regular: bool  # the times sit on that step's grid (gaps and daylight-saving days allowed)
    share: float  # fraction of consecutive spacings equal to the step (after snapping jitter)
    change: tuple[pd.Timestamp, float, float] | None = None  # (where, step before, step after) when it changes

    @property
    def name(self) -> str | None:
        return step_name(self.step)


def _mode(d: np.ndarray) -> tuple[float, float]:
    vals, counts = np.unique(d, return_counts=True)
    i = int(counts.argmax())
    return float(vals[i]), float(counts[i] / len(d))


def _snap(d: np.ndarray, tol: float = 0.12) -> np.ndarray:
    """Each spacing snapped to the nearest standard step when within `tol` (log), else kept."""
    std = np.asarray(STANDARD_STEPS, float)
    near = np.abs(np.log(d[:, None] / std[None, :]))
    j = near.argmin(axis=1)
    return np.where(near[np.arange(len(d)), j] < tol, std[j], d)


def _spacing(d: np.ndarray) -> tuple[float, float]:
    """The most common spacing of positive spacings `d` (seconds) and its share. Jitter is snapped to
    the nearest standard step when that explains clearly more spacings than any exact value; months
    (28-31 days) count as one month."""
    months = (d >= 28 * DAY) & (d <= 31 * DAY)
    if months.mean() >= 0.5:
        return float(GRAIN_SECONDS["month"]), float(months.mean())
    step, share = _mode(np.round(d))
    snapped, s_share = _mode(_snap(d))
    if s_share > share + 0.05:  # snapping jitter explains clearly more spacings than any exact one
        step, share = snapped, s_share
    if share < 0.2:
        # no spacing is common: the median spacing, snapped to the nearest standard step
        med = float(np.median(d))
        std = np.asarray(STANDARD_STEPS, float)
        step = float(std[np.abs(np.log(med / std)).argmin()])
        share = float(np.isclose(d, step, rtol=0.12).mean())
    return step, share


def infer_step(times: pd.DatetimeIndex) -> StepInfo:
    """The sampling step of a series from its timestamps: the most common spacing between distinct
    times. Gaps (spacings of several steps), duplicates, a few late or early points (jitter of ±12 %
    is snapped to the nearest standard step) and daylight-saving days (a 23- or 25-hour day in local
    time) do not move it. `regular` is False when the points do not sit on the step's grid (they
    must then be bucketed), `change` says where the spacing changes when the first and last thirds
    of the series have clearly different steps (hourly, then every 5 minutes)."""
    t = pd.DatetimeIndex(times)
    if t.tz is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    u = np.unique(t.as_unit("ns").asi8)
    if len(u) < 2:
        return StepInfo(None, False, 0.0)
    d = np.diff(u) / 1e9
    step, share = _spacing(d)
    if step >= GRAIN_SECONDS["month"]:
        return StepInfo(step, share >= 0.5, share)
    ns = int(round(step * 1e9))
    # on the grid: spacings are whole multiples of the step; local time on a daylight-saving day
    # shifts a daily or weekly series by an hour, which still counts as regular
    off = np.abs(np.diff(u) - np.round(np.diff(u) / ns) * ns)
    tol = 3600e9 if step >= DAY else 0.0
    regular = bool((off <= tol).mean() >= 0.9)
    change = None
    if len(d) >= 30:
        k = len(d) // 3
        first, f_share = _spacing(d[:k])
        last, l_share = _spacing(d[-k:])
        if first != last and min(f_share, l_share) >= 0.5 and max(first, last) >= 1.5 * min(first, last):
            # where: the first spacing of the later step after the last of the earlier one
            now = np.flatnonzero(np.isclose(d, last, rtol=0.12))
            before = np.flatnonzero(np.isclose(d, first, rtol=0.12))
            at = now[now > before[-1]][0] if before.size and (now > before[-1]).any() else now[0]
            change = (pd.Timestamp(u[at]), first, last)
    return StepInfo(step, regular, share, change)


def _as_2d(a: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricloopError(f"{what} must be numeric ({exc})", where=what) from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise MetricloopError(f"{what} must be 1-D (one series) or 2-D (series × time)", where=what)
    return arr


def infer_grain(times: pd.DatetimeIndex) -> str | None:
    """The grain class (minute/hour/day/week/month) of the step `infer_step` finds."""
    return grain_kind(infer_step(times).step)


def prepare_batch(
    values: Any,
    times: Any = None,
    *,
    numerator: Any = None,
    denominator: Any = None,
    grain: str | None = None,
    ratio_scale: float | None = None,
    step: float | None = None,
) -> Batch:
    """Shape the input. `grain` may name a class (hour) or a step (5min); `step` (seconds) overrides
    it; with neither, the step is inferred from `times` (see `infer_step`)."""
    vals = _as_2d(values, "values")
    warnings: list[str] = []
    # inf is treated as missing: it can never be a business value and would poison the baseline
    bad = ~np.isfinite(vals) & ~np.isnan(vals)
    if bad.any():
        warnings.append(f"{int(bad.sum())} infinite value(s) treated as missing")
        vals = np.where(bad, np.nan, vals)
    tidx = None
    if times is not None:
        tidx = pd.DatetimeIndex(pd.to_datetime(times)).as_unit("ns")
        if len(tidx) != vals.shape[1]:
            raise MetricloopError(
                f"times has {len(tidx)} entries but the series have {vals.shape[1]} points", where="times"
            )
        if len(tidx) > 1 and not (np.diff(tidx.asi8) > 0).all():
            raise MetricloopError("times must be strictly increasing (sort and de-duplicate first)", where="times")
    if step is None and grain is not None:
        step = parse_grain(grain)
    if step is None and tidx is not None and len(tidx) > 1:
        step = infer_step(tidx).step
    grain = grain_kind(step) if step else (grain if grain in GRAIN_SECONDS else None)
    num = den = None
    if numerator is not None and denominator is not None:
        num = _as_2d(numerator, "numerator")
        den = _as_2d(denominator, "denominator")
        if num.shape != vals.shape or den.shape != vals.shape:
            raise MetricloopError("numerator and denominator must have the same shape as values")
    return Batch(vals, tidx, grain, num, den, warnings, ratio_scale, step=step)


def phase_index(times: pd.DatetimeIndex | None, n_points: int, profile: str) -> np.ndarray:
    """Which slot of a seasonal profile each bucket falls in (int array of length T)."""
    period = PROFILES[profile]
    if period == 1:
        return np.zeros(n_points, dtype=np.int64)
    if times is None:
        return np.arange(n_points, dtype=np.int64) % period
    if profile.startswith(SLOT_PROFILES):
        per_day = int(profile.split(":")[1])
        tv = times.as_unit("ns").asi8
        slot = ((tv - times.normalize().as_unit("ns").asi8) * per_day // 86_400_000_000_000).astype(np.int64)
        if profile.startswith("slot_by_daytype"):
            slot = slot + per_day * (np.asarray(times.day_of_week) >= 5)
        return slot
    if profile.startswith("cycle:"):
        # counted in steps from the epoch: the same point keeps its slot whatever the batch's start
        tv = times.as_unit("ns").asi8
        step = int(np.median(np.diff(tv))) if len(tv) > 1 else 1
        return (np.round(tv / max(step, 1)).astype(np.int64)) % period
    if profile == "day_of_week":
        return np.asarray(times.day_of_week, dtype=np.int64)
    if profile == "hour_of_day":
        return np.asarray(times.hour, dtype=np.int64)
    if profile == "hour_by_daytype":
        return np.asarray((times.day_of_week >= 5) * 24 + times.hour, dtype=np.int64)
    return np.asarray(times.day_of_week * 24 + times.hour, dtype=np.int64)


def candidate_profiles(grain: str | None, step: float | None = None) -> list[str]:
    """Seasonal profiles worth trying for a grain (the order is the tie-break order). A step under
    an hour that divides a day keys its daily profiles on the time-of-day slot at that step (288 at
    5 minutes), refined from the hour profile only where the series' own past shows it. At steps
    under `SLOT_MIN_STEP` the hour profile stays: 1,440 slots a day, each seen once a day, adapt
    60 times slower than an hour and need four weeks of 40,000 points to refine."""
    if step and SLOT_MIN_STEP <= step < 3600 and 86400 % step == 0 and grain in ("hour", "minute"):
        n = int(86400 // step)
        return ["none", f"slot_by_daytype:{n}", f"slot_of_day:{n}", "hour_of_week"]
    if grain == "day":
        # business days nearly always have a weekly rhythm (and days off use the weekend's slot);
        # the profile is shrunk towards flat where the data show none (`profiles._shrink`)
        return ["day_of_week"]
    if grain in ("hour", "minute"):
        return ["none", "hour_by_daytype", "hour_of_day", "hour_of_week"]
    if grain is None:
        return ["none"]  # unknown spacing: cycles are found in the series' own past (`periods`)
    return ["none"]


def default_warmup(grain: str | None, step: float | None = None) -> int:
    """History needed before alerting: four weeks of days, two weeks of hours (any step from an
    hour to 12 hours: 56 points at 6 hours), two days of minutes (any step under an hour: 576 points
    at 5 minutes, 96 at 30 minutes)."""
    kind = grain_kind(step) if step else grain
    if step and kind in ("hour", "minute"):
        return max(int(round((14 if step >= 3600 else 2) * DAY / step)), 8)
    return {"day": 28, "hour": 24 * 14, "minute": 24 * 60 * 2, "week": 12, "month": 12}.get(kind or "", 28)
