"""`change`: absolute or % change against an offset (环比 / 同比)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from metricloop.detect.base import FIXED, Detector, DetectorConfig, Scores, register
from metricloop.detect.calendar import CalendarMasks
from metricloop.detect.prepare import GRAIN_SECONDS, Batch

Offset = Literal["previous", "last_week", "last_year", "same_weekday_mean"]


class ChangeConfig(DetectorConfig):
    offset: Offset = Field("previous", description="what to compare with")
    weeks: int = Field(4, ge=1, le=52, description="same_weekday_mean: how many past same weekdays")
    year_align: Literal["weekday", "date"] = Field(
        "weekday", description="last_year: 364 days back (same weekday) or the same calendar date"
    )
    max_pct: float | None = Field(None, gt=0, description="alert when the change exceeds this fraction")
    max_abs: float | None = Field(None, gt=0, description="alert when the change exceeds this amount")


def pct_from_sensitivity(sensitivity: float) -> float:
    """Default allowed change when none is given: 20 % at sensitivity 5, 80 % at 0, 5 % at 10."""
    return 0.2 * 2 ** ((5.0 - sensitivity) / 2.5)


@register
class ChangeDetector(Detector):
    """Expected = the reference value; the band is reference ± the allowed change. Score is 0.5 at
    the edge of the band and grows towards 1 with the change (u/(1+u), u = change / allowed)."""

    name: ClassVar[str] = "change"
    config_class: ClassVar[type[DetectorConfig]] = ChangeConfig
    config: ChangeConfig

    def _lag_index(self, times: pd.DatetimeIndex | None, T: int, grain: str | None, delta: pd.DateOffset | None,
                   buckets: int) -> np.ndarray:
        """Index of the reference bucket for each t (-1 when there is none)."""
        if times is None or delta is None:
            idx = np.arange(T) - buckets
            return np.where(idx >= 0, idx, -1)
        tv = times.as_unit("ns").asi8
        target = (times - delta).as_unit("ns").asi8
        pos = np.searchsorted(tv, target)
        ok = (pos < T) & (pos >= 0)
        ok[ok] &= tv[np.minimum(pos[ok], T - 1)] == target[ok]
        return np.where(ok, pos, -1)

    def reference(self, batch: Batch) -> np.ndarray:
        x = batch.values
        T = x.shape[1]
        step = batch.step or GRAIN_SECONDS.get(batch.grain or "day", 86400)
        per_day = max(1, round(86400 / step))
        cfg = self.config

        def lagged(delta: pd.DateOffset | None, buckets: int) -> np.ndarray:
            idx = self._lag_index(batch.times, T, batch.grain, delta, buckets)
            ref = np.full_like(x, np.nan)
            ok = idx >= 0
            ref[:, ok] = x[:, idx[ok]]
            return ref

        if cfg.offset == "previous":
            step_delta = pd.Timedelta(seconds=step) if batch.grain in ("minute", "hour", "day", "week") else None
            if batch.grain == "month":
                step_delta = pd.DateOffset(months=1)
            return lagged(step_delta, 1)
        if cfg.offset == "last_week":
            return lagged(pd.Timedelta(days=7), 7 * per_day)
        if cfg.offset == "last_year":
            if cfg.year_align == "date":
                return lagged(pd.DateOffset(years=1), 365 * per_day)
            return lagged(pd.Timedelta(days=364), 364 * per_day)
        refs = [lagged(pd.Timedelta(days=7 * k), 7 * k * per_day) for k in range(1, cfg.weeks + 1)]
        stack = np.stack(refs)
        enough = np.isfinite(stack).sum(axis=0) >= max(1, (cfg.weeks + 1) // 2)
        with np.errstate(invalid="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(stack, axis=0)
        return np.where(enough, mean, np.nan)

    def _score_block(self, batch: Batch, masks: CalendarMasks | None) -> Scores:
        cfg = self.config
        x = batch.values
        n, T = x.shape
        ref = self.reference(batch)
        if cfg.max_pct is None and cfg.max_abs is None:
            width = pct_from_sensitivity(cfg.sensitivity) * np.abs(ref)
        else:
            width = np.zeros_like(ref)
            if cfg.max_pct is not None:
                width = np.fmax(width, cfg.max_pct * np.abs(ref))
            if cfg.max_abs is not None:
                width = np.fmax(width, np.full_like(ref, cfg.max_abs))
        with np.errstate(invalid="ignore", divide="ignore"):
            u = np.abs(x - ref) / width
            u = np.where(width > 0, u, np.where(x == ref, 0.0, np.inf))
            score = np.where(np.isfinite(u), u / (1 + u), 1.0)
        score = np.where(np.isfinite(x) & np.isfinite(ref), score, 0.0)
        suppressed = np.zeros((n, T), bool)
        excluded = np.zeros((n, T), bool)
        if masks is not None:
            suppressed[:] = masks.suppress
            excluded[:] = masks.exclude
        return Scores(
            values=x,
            expected=ref,
            scale=np.full((n, T), np.nan),
            score=score,
            family=np.full(n, FIXED, np.int8),
            learning=~np.isfinite(ref),
            suppressed=suppressed,
            excluded=excluded,
            detector=self.name,
            model=[f"change:{cfg.offset}"] * n,
            fixed_lower=ref - width,
            fixed_upper=ref + width,
            volume=batch.denominator,
        )
