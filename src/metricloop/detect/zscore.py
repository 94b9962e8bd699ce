"""`zscore`: the naive baseline: rolling mean ± k·rolling standard deviation of the previous points.

Not robust (an anomaly inflates the next weeks' band), no seasonality, no calendar. Kept as the
reference the other detectors are measured against.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from metricloop.detect.base import GAUSS, Detector, DetectorConfig, Scores, register
from metricloop.detect.calendar import CalendarMasks
from metricloop.detect.prepare import Batch
from metricloop.detect.stats import score_points


class ZScoreConfig(DetectorConfig):
    window: int = Field(28, ge=2, description="previous points in the rolling window")


@register
class ZScoreDetector(Detector):
    name: ClassVar[str] = "zscore"
    config_class: ClassVar[type[DetectorConfig]] = ZScoreConfig
    config: ZScoreConfig

    def _score_block(self, batch: Batch, masks: CalendarMasks | None) -> Scores:
        x = batch.values
        n, T = x.shape
        w = self.config.window
        frame = pd.DataFrame(x.T)
        roll = frame.rolling(w, min_periods=max(2, w // 2))
        # shift by one: the band at t comes from the points before t (causal)
        mean = roll.mean().shift(1).to_numpy().T
        std = roll.std().shift(1).to_numpy().T
        std = np.where(std > 0, std, np.nan)
        family = np.full(n, GAUSS, np.int8)
        learning = ~np.isfinite(mean) | ~np.isfinite(std)
        score = score_points(x, mean, std, family)
        score[learning] = 0.0
        return Scores(
            values=x, expected=mean, scale=std, score=score, family=family, learning=learning,
            suppressed=np.zeros((n, T), bool), excluded=np.zeros((n, T), bool), detector=self.name,
            model=[self.name] * n, volume=batch.denominator,
        )
