"""`auto`, the default: picks the model per series and adapts to a new normal.

Per series, from its warm-up history only (so the choice is causal):

- the noise model: low-volume counts → negative binomial; proportions with a denominator →
  binomial-aware band; anything else → Gaussian band;
- the seasonal profile (none, hour of day, day of week, hour of week), by fitting each on the first
  half of the warm-up and keeping the one that predicts the second half clearly best;
- multiplicative seasonality for positive series, additive otherwise.

It combines a robust level, a damped trend, the chosen profile and the calendar's
same-event-last-time comparison; after a week of consecutive out-of-band points in one direction
it accepts the new level instead of alerting forever.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from metricloop.detect.band import BandConfig, EngineDetector, Seasonality
from metricloop.detect.base import DetectorConfig, register


class AutoConfig(BandConfig):
    seasonality: Seasonality = Field("auto", description="seasonal profile; auto = chosen per series")
    trend: bool = True
    multiplicative: Literal["auto", "yes", "no"] = "auto"


@register
class AutoDetector(EngineDetector):
    name: ClassVar[str] = "auto"
    config_class: ClassVar[type[DetectorConfig]] = AutoConfig
