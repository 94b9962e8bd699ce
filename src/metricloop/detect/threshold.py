"""`threshold`: static bounds, e.g. "fulfilment rate under 98 %"."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from metricloop.detect.base import FIXED, Detector, DetectorConfig, Scores, register
from metricloop.detect.calendar import CalendarMasks
from metricloop.detect.prepare import Batch


class ThresholdConfig(DetectorConfig):
    lower: float | None = Field(None, description="alert below this value")
    upper: float | None = Field(None, description="alert above this value")

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdConfig:
        if self.lower is None and self.upper is None:
            raise ValueError("threshold needs a lower and/or an upper bound")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError("threshold lower bound is above the upper bound")
        return self


@register
class ThresholdDetector(Detector):
    """Inside the bounds the score is 0; outside it is 0.5 at the bound and grows towards 1 with
    the excess relative to the bound. Sensitivity does not move static bounds."""

    name: ClassVar[str] = "threshold"
    config_class: ClassVar[type[DetectorConfig]] = ThresholdConfig
    config: ThresholdConfig

    def _score_block(self, batch: Batch, masks: CalendarMasks | None) -> Scores:
        x = batch.values
        lo = -np.inf if self.config.lower is None else self.config.lower
        hi = np.inf if self.config.upper is None else self.config.upper
        ref = max(abs(v) for v in (self.config.lower, self.config.upper) if v is not None) or 1.0
        if self.config.lower is not None and self.config.upper is not None and hi > lo:
            ref = hi - lo
        with np.errstate(invalid="ignore"):
            excess = np.maximum(lo - x, 0) + np.maximum(x - hi, 0)
            u = excess / ref
            score = np.where(excess > 0, 0.5 + 0.5 * u / (1 + u), 0.0)
        score = np.nan_to_num(score)
        n, T = x.shape
        suppressed = np.zeros((n, T), bool)
        if masks is not None:
            suppressed[:] = masks.suppress
        return Scores(
            values=x,
            expected=np.clip(x, lo, hi),
            scale=np.full((n, T), np.nan),
            score=score,
            family=np.full(n, FIXED, np.int8),
            learning=np.zeros((n, T), bool),
            suppressed=suppressed,
            excluded=np.zeros((n, T), bool),
            detector=self.name,
            model=[self.name] * n,
            fixed_lower=np.full((n, T), lo, dtype=float),
            fixed_upper=np.full((n, T), hi, dtype=float),
            volume=batch.denominator,
        )
