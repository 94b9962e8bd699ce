"""Detector configuration, results and the template every detector follows.

A detector turns many aligned series (series × time, all slices of a metric at once) into
`Scores`: an expected value, a scale and a score in [0, 1] at every point. Scoring never looks at
sensitivity or alert conditions; `metricloop.detect.conditions.apply_conditions` turns scores
into yes/no with the knobs a business user sets, so feedback can retune those alone.

Every detector is causal: the output at time t uses only data up to t.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metricloop.errors import MetricloopError

Direction = Literal["up", "down", "both"]
Kind = Literal["auto", "gauss", "count", "ratio"]

# family codes: how the band around `expected` is shaped
GAUSS = 0  # expected ± k·scale
COUNT = 1  # Poisson / negative-binomial quantiles around the expected count
FIXED = 2  # the detector sets the band itself (threshold, change)
FAMILY_NAMES = {GAUSS: "gauss", COUNT: "count", FIXED: "fixed"}


class DetectorConfig(BaseModel):
    """Knobs shared by every detector. Scoring uses none of the alert knobs below."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    sensitivity: float = Field(5.0, ge=0, le=10, description="0 = only the most extreme points, 10 = many")
    direction: Direction | None = Field(
        None, description="up, down or both; None = from the metric's good direction (both if unknown)"
    )
    min_abs_change: float = Field(0.0, ge=0, description="ignore deviations smaller than this, in value units")
    min_rel_change: float = Field(0.0, ge=0, description="ignore deviations smaller than this fraction")
    min_duration: int | None = Field(
        None, ge=1, description="alert only after N consecutive out-of-band points (default: 1; 2 for hours)"
    )
    sustained: int | None = Field(
        None, ge=1, le=24, description="also alert when the last 2..N points, each ≥1 sd off on the same side, "
        "are together beyond the band (a stock-out); default 3 for days and hours; 1 = off"
    )
    min_volume: float | None = Field(
        None, ge=0, description="skip points whose volume (denominator, or the value itself) is below this"
    )
    warmup: int | None = Field(None, ge=1, description="points of history needed before alerting")
    kind: Kind = Field("auto", description="noise model: gauss, count, ratio, or auto from the data")

    def to_dict(self) -> dict[str, Any]:
        return {"detector": getattr(self, "_detector_name", None), **self.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        data = {k: v for k, v in data.items() if k != "detector"}
        return cls.model_validate(data)


ALERT_KNOBS = ("sensitivity", "direction", "min_abs_change", "min_rel_change", "min_duration", "min_volume")


@dataclass
class Scores:
    """What a detector says about every point of a batch (arrays are series × time)."""

    values: np.ndarray
    expected: np.ndarray
    scale: np.ndarray  # standard deviation in value units (GAUSS), or the NB variance (COUNT)
    score: np.ndarray  # in [0, 1]; grows with how anomalous the point is
    family: np.ndarray  # per series: GAUSS / COUNT / FIXED
    learning: np.ndarray  # True while the series is still warming up (never alerts)
    suppressed: np.ndarray  # True where the calendar suppresses alerts
    excluded: np.ndarray  # True where the point was kept out of the baseline (calendar or anomaly)
    detector: str
    model: list[str] = field(default_factory=list)  # per series: what actually scored it (auto)
    fixed_lower: np.ndarray | None = None  # FIXED family bands
    fixed_upper: np.ndarray | None = None
    volume: np.ndarray | None = None  # denominator for ratios, else None
    times: pd.DatetimeIndex | None = None
    names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    grain: str | None = None  # the step's class: minute, hour, day, week, month (None = a plain sequence)
    step: float | None = None  # the sampling step in seconds (300 = every 5 minutes)
    floor: np.ndarray | None = None  # per series: bands never go below / above these (0 for counts and
    ceiling: np.ndarray | None = None  # rates, 100 % for a proportion in %)
    unit: np.ndarray | None = None  # series × time: a COUNT series counts lumps of this size (a sum like GMV), else 1
    calendar: np.ndarray | None = None  # series × time: past days off a learned holiday pattern came from, 0 = unused
    history: np.ndarray | None = None  # series × time: judged against the series' own past weeks (the long view)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]


# ---------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[Detector]] = {}

THREADS = min(2, os.cpu_count() or 1)  # blocks of series run side by side on this many cores


def map_blocks(fn: Callable[[tuple[int, int]], Any], n: int, size: int, threads: int = THREADS) -> list[Any]:
    """`fn((lo, hi))` over blocks of `size` of `n` rows (one empty block when there are none), in
    order. Rows are independent and numpy releases the GIL inside its loops: blocks run side by side
    on the cores, and each keeps its temporaries small."""
    bounds = [(lo, min(n, lo + size)) for lo in range(0, max(n, 1), size)]
    if len(bounds) > 1 and threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(fn, bounds))
    return [fn(b) for b in bounds]


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: built-in detectors register exactly as an extension would."""
    if not getattr(cls, "name", None):
        raise TypeError("a detector class needs a `name`")
    _REGISTRY[cls.name] = cls
    return cls


def detector_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_detector(name: str, config: DetectorConfig | dict[str, Any] | None = None, **overrides: Any) -> Detector:
    """Build a registered detector by name from a config object, a dict, or keyword overrides."""
    _load_builtins()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise MetricloopError(
            f"unknown detector {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}", where="--detector"
        ) from None
    return cls(config, **overrides)


def detector_from_dict(data: dict[str, Any]) -> Detector:
    if "detector" not in data:
        raise MetricloopError("a detector definition needs a 'detector' key")
    return get_detector(str(data["detector"]), {k: v for k, v in data.items() if k != "detector"})


def _load_builtins() -> None:
    # importing the modules runs their @register decorators, exactly as an extension's would
    from metricloop.detect import auto, band, change, seasonal, threshold, zscore  # noqa: F401


# ---------------------------------------------------------------------------- template


class Detector:
    """Template: `score()` validates and shapes the input, then calls the `_score_block` hook."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    default_warmup: ClassVar[int] = 1
    chunk_size: ClassVar[int] = 10_000  # series per block, bounds memory
    threads: ClassVar[int] = THREADS

    def __init__(self, config: DetectorConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.config_class(**overrides)
        elif isinstance(config, dict):
            config = self.config_class.from_dict({**config, **overrides})
        elif overrides:
            config = config.model_copy(update=overrides)
        if not isinstance(config, self.config_class):
            config = self.config_class.from_dict(config.model_dump())
        self.config = config

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.name, **self.config.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detector:
        return cls(cls.config_class.from_dict(data))

    def warmup_points(self, grain: str | None, step: float | None = None) -> int:
        return self.config.warmup or self.default_warmup

    # -- public template ---------------------------------------------------------------
    def score(
        self,
        values: Any,
        times: Any = None,
        *,
        calendar: Any = None,
        numerator: Any = None,
        denominator: Any = None,
        names: list[str] | None = None,
        grain: str | None = None,
        ratio_scale: float | None = None,
        step: float | None = None,
        history_from: dict[str, Any] | None = None,
    ) -> Scores:
        """Score every point of one series (1-D) or of many aligned series (2-D, series × time).

        `times` is the shared time axis (regular buckets; gaps are NaN values). `numerator` and
        `denominator` make ratio series binomial-aware; `ratio_scale` is the metric's unit factor
        (value = numerator / denominator × scale), inferred from the data when not given. `calendar`
        is a `Calendar`. `grain` names a class (hour) or a step (5min); `step` is the step in seconds;
        with neither, the step is inferred from `times`. `history_from` (series name → time) leaves each named
        series' points before its time out (a re-baseline, `metricloop.detect.history`).
        """
        from metricloop.detect.prepare import prepare_batch

        batch = prepare_batch(values, times, numerator=numerator, denominator=denominator, grain=grain,
                              ratio_scale=ratio_scale, step=step)
        n = batch.values.shape[0]
        if names is not None and len(names) != n:
            raise MetricloopError(f"{len(names)} names for {n} series", where="names")
        if history_from:
            from metricloop.detect.history import cut_history

            cut_history(batch, names, history_from)
        masks = None
        if calendar is not None and batch.times is not None:
            masks = calendar.masks(batch.times, batch.grain, slices=names)
            batch.warnings.extend(masks.warnings)
        parts = map_blocks(lambda b: self._score_block(batch.slice(*b), masks.rows(*b) if masks else None),
                           n, self.chunk_size, self.threads)
        out = _concat(parts) if len(parts) > 1 else parts[0]
        out.times = batch.times
        out.grain = batch.grain
        out.step = batch.step
        out.names = list(names) if names is not None else [str(i) for i in range(n)]
        out.warnings = batch.warnings + out.warnings
        return out

    def detect(self, values: Any, times: Any = None, **kwargs: Any) -> Any:
        """Score, then apply this detector's own alert knobs. Returns a `Detection`."""
        from metricloop.detect.conditions import apply_conditions

        good_direction = kwargs.pop("good_direction", None)
        volume = kwargs.pop("volume", None)
        scores = self.score(values, times, **kwargs)
        return apply_conditions(scores, self.config, good_direction=good_direction, volume=volume)

    # -- hook --------------------------------------------------------------------------
    def _score_block(self, batch: Any, masks: Any) -> Scores:  # pragma: no cover - abstract
        raise NotImplementedError


def _concat(parts: list[Scores]) -> Scores:
    def cat(attr: str) -> np.ndarray | None:
        arrays = [getattr(p, attr) for p in parts]
        if any(a is None for a in arrays):
            return None
        return np.concatenate(arrays, axis=0)

    first = parts[0]
    return Scores(
        values=cat("values"),
        expected=cat("expected"),
        scale=cat("scale"),
        score=cat("score"),
        family=cat("family"),
        learning=cat("learning"),
        suppressed=cat("suppressed"),
        excluded=cat("excluded"),
        detector=first.detector,
        model=[m for p in parts for m in p.model],
        fixed_lower=cat("fixed_lower"),
        fixed_upper=cat("fixed_upper"),
        volume=cat("volume"),
        floor=cat("floor"),
        ceiling=cat("ceiling"),
        unit=cat("unit"),
        calendar=cat("calendar"),
        history=cat("history"),
        warnings=[w for p in parts for w in p.warnings],
    )
