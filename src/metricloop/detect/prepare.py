"""Shape detector input into an aligned series × time batch, and derive seasonal phases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from metricloop.errors import MetricloopError

GRAIN_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400}

# seasonal profiles a series can follow, with their period in buckets
# hour_by_daytype: one hour-of-day shape for workdays and one for days off (weekends and public
# holidays; make-up workdays count as workdays): people shop later on a day off, a shop opens later
class _Profiles(dict):
    """Profile name → period in buckets; ``cycle:N`` is a cycle of N points found in the series' own
    past (`metricloop.detect.periods`), whatever the step."""

    def __missing__(self, key: str) -> int:
        if isinstance(key, str) and key.startswith("cycle:"):
            return int(key[6:])
        raise KeyError(key)


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

    def slice(self, lo: int, hi: int) -> Batch:
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[lo:hi]

        return Batch(self.values[lo:hi], self.times, self.grain, cut(self.numerator), cut(self.denominator),
                     ratio_scale=self.ratio_scale)


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
    if len(times) < 2:
        return None
    step = float(np.median(np.diff(times.as_unit("ns").asi8))) / 1e9
    if step <= 0:
        return None
    best = min(GRAIN_SECONDS, key=lambda g: abs(np.log(step / GRAIN_SECONDS[g])))
    return best if abs(np.log(step / GRAIN_SECONDS[best])) < 0.35 else None


def prepare_batch(
    values: Any,
    times: Any = None,
    *,
    numerator: Any = None,
    denominator: Any = None,
    grain: str | None = None,
    ratio_scale: float | None = None,
) -> Batch:
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
        grain = grain or infer_grain(tidx)
    num = den = None
    if numerator is not None and denominator is not None:
        num = _as_2d(numerator, "numerator")
        den = _as_2d(denominator, "denominator")
        if num.shape != vals.shape or den.shape != vals.shape:
            raise MetricloopError("numerator and denominator must have the same shape as values")
    return Batch(vals, tidx, grain, num, den, warnings, ratio_scale)


def phase_index(times: pd.DatetimeIndex | None, n_points: int, profile: str) -> np.ndarray:
    """Which slot of a seasonal profile each bucket falls in (int array of length T)."""
    period = PROFILES[profile]
    if period == 1:
        return np.zeros(n_points, dtype=np.int64)
    if times is None:
        return np.arange(n_points, dtype=np.int64) % period
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


def candidate_profiles(grain: str | None) -> list[str]:
    """Seasonal profiles worth trying for a grain (the order is the tie-break order)."""
    if grain == "day":
        # business days nearly always have a weekly rhythm (and days off use the weekend's slot);
        # the profile is shrunk towards flat where the data show none (`profiles._shrink`)
        return ["day_of_week"]
    if grain in ("hour", "minute"):
        return ["none", "hour_by_daytype", "hour_of_day", "hour_of_week"]
    if grain is None:
        return ["none"]  # unknown spacing: cycles are found in the series' own past (`periods`)
    return ["none"]


def default_warmup(grain: str | None) -> int:
    """History needed before alerting: four weeks of days, two weeks of hours."""
    return {"day": 28, "hour": 24 * 14, "minute": 24 * 60 * 2, "week": 12, "month": 12}.get(grain or "", 28)
