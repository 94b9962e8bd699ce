"""Turn scores into yes/no with the knobs a business user sets.

Kept apart from scoring so that sensitivity, direction, minimum change, duration and volume can
be retuned (from feedback, in a backtest preview) without re-running a detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from metricloop.detect.base import DetectorConfig, Scores
from metricloop.detect.stats import band, sensitivity_to_k


def default_direction(good_direction: str | None) -> str:
    """Alert on the bad direction: a drop when up is good (GMV), a rise when down is good (complaints)."""
    return {"up": "down", "down": "up"}.get(good_direction or "", "both")


def default_min_duration(grain: str | None) -> int:
    """One day out of band is news; one hour usually is not (a blip): hours need two in a row."""
    return {"hour": 2, "minute": 5}.get(grain or "", 1)


def run_length(flags: np.ndarray) -> np.ndarray:
    """Length of the run of True ending at each point, along the last axis."""
    f = flags.astype(np.int64)
    c = np.cumsum(f, axis=-1)
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


def apply_conditions(
    scores: Scores,
    config: DetectorConfig,
    *,
    good_direction: str | None = None,
    volume: np.ndarray | None = None,
) -> Detection:
    k = sensitivity_to_k(config.sensitivity)
    lower, upper = band(scores, k)
    v, e = scores.values, scores.expected
    with np.errstate(invalid="ignore"):
        above = v > upper
        below = v < lower
    direction = np.where(above, 1, np.where(below, -1, 0)).astype(np.int8)
    want = config.direction or default_direction(good_direction)
    if want == "up":
        cand = above
    elif want == "down":
        cand = below
    else:
        cand = above | below
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.abs(v - e)
        if config.min_abs_change > 0:
            cand &= dev >= config.min_abs_change
        if config.min_rel_change > 0:
            cand &= dev >= config.min_rel_change * np.abs(e)
        if config.min_volume is not None:
            vol = volume if volume is not None else scores.volume
            if vol is None:
                vol = np.fmax(np.abs(v), np.abs(e))
            cand &= np.nan_to_num(np.asarray(vol, dtype=float), nan=0.0) >= config.min_volume
    cand &= ~scores.learning & ~scores.suppressed & np.isfinite(v)
    min_duration = config.min_duration or default_min_duration(scores.grain)
    if min_duration > 1:
        up_run = run_length(cand & (direction > 0))
        down_run = run_length(cand & (direction < 0))
        cand &= np.maximum(up_run, down_run) >= min_duration
    return Detection(scores, lower, upper, cand, direction, k, want, config)
