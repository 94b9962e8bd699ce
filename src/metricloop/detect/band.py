"""`band`: a robust rolling level ± k·scale, with optional seasonal profile and trend."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from metricloop.detect.base import COUNT, GAUSS, Detector, DetectorConfig, Scores, register
from metricloop.detect.calendar import CalendarMasks
from metricloop.detect.engine import FAM_COUNT, FAM_RATIO, TINY, EngineParams, resolution
from metricloop.detect.families import holiday_lift, lump_units, run_by_family
from metricloop.detect.prepare import Batch, default_warmup
from metricloop.detect.stats import (
    HISTORY_DAYS,
    calibrate_log_tail,
    history_log_tail,
    log_tail_points,
    routine_log_tail,
    tail_score,
)

HISTORY_SHOWN = float(np.log(1e4))  # the long view alone beyond this ℓ: the point is shown against it
LN2 = float(np.log(2.0))

Seasonality = Literal["auto", "none", "hour_of_day", "hour_by_daytype", "day_of_week", "hour_of_week"]


class BandConfig(DetectorConfig):
    seasonality: Seasonality = Field("none", description="seasonal profile; auto = chosen per series")
    trend: bool = Field(False, description="follow a damped linear trend")
    smoothing: float = Field(0.15, gt=0, le=1, description="level smoothing per point (higher = faster)")
    adapt_after: int | None = Field(
        None, ge=1, description="accept a new level after N consecutive out-of-band points (default: a week of days, a "
        "day of hours, an hour of minutes)"
    )
    exclude_z: float = Field(3.5, gt=0, description="points beyond this many sd stay out of the baseline")
    multiplicative: Literal["auto", "yes", "no"] = "auto"
    period: int | None = Field(
        None, ge=2, description="a cycle of this many points, declared by a person (default: each series' own "
        "cycles are found in its past)"
    )


def _huge_factor(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    first = values[np.arange(len(values)), finite.argmax(axis=1)] if values.size else np.zeros(len(values))
    mag = np.abs(np.nan_to_num(first))
    with np.errstate(divide="ignore"):
        return np.where(mag > 1e100, 2.0 ** np.floor(np.log2(np.maximum(mag, 1.0))), 1.0)


def step_seconds(batch: Batch) -> float | None:
    """The series' step in seconds: as prepared (`batch.step`, inferred from the data by prepare.infer_step), else
    the median spacing of its times; None for a plain sequence of points."""
    given = getattr(batch, "step", None) or getattr(batch, "step_seconds", None)
    if given:
        return float(given)
    if batch.times is not None and len(batch.times) > 1:
        return float(np.median(np.diff(batch.times.as_unit("ns").asi8))) / 1e9
    from metricloop.detect.prepare import GRAIN_SECONDS

    return float(GRAIN_SECONDS[batch.grain]) if batch.grain in GRAIN_SECONDS else None


def cycle_params(step: float | None, warmup: int) -> dict[str, Any]:
    """Where to look for a series' own cycles, in points of its step: periods up to a week (a day
    and a week are the hints detected periods snap to), in up to four weeks of history; a plain
    sequence of unknown step looks at its last 2,048 points."""
    if not step:
        return {"max_period": 1024, "period_window": 2048, "period_hints": ()}
    per_day = 86400.0 / step
    if per_day <= 1:
        # days (their day-of-week profile, shrunk to flat without a weekly rhythm), weeks, months: no search
        return {"max_period": 0}
    hints = tuple(int(round(h)) for h in (per_day, 7 * per_day) if abs(h - round(h)) < 1e-6 and h >= 2)
    window = max(2 * warmup, int(round(28 * per_day)))
    return {"max_period": max(2, min(int(round(7 * per_day)), window // 2)), "period_window": window,
            "period_hints": hints}


def adapt_span(grain: str | None, week: int, step: float | None) -> int:
    """Consecutive out-of-band points after which a new level is accepted: a week of days, a day of
    hours, an hour of minutes (at least 12 points). A 5-minute CPU that moved to a new level two
    hours ago is no longer news: every point of those two hours scoring high would mark the whole
    plateau instead of its onset, and teach the score's tail that such deviations are common."""
    if grain in ("day", None):
        return week
    if grain == "minute":
        return min(week, max(12, round(3600 / step) if step else 60))
    return min(week, 24)


def engine_params(cfg: BandConfig, grain: str | None, warmup: int, step: float | None = None) -> EngineParams:
    # spans in points of the step: a week at 5 minutes is 2016 points, at hours 168
    per_day = round(86400 / step) if step and grain in ("hour", "minute") else None
    week = 7 * per_day if per_day else {"hour": 24 * 7, "minute": 24 * 60 * 7}.get(grain or "", 7)
    # a day of hours moves less per point than a day: smooth hourly levels over more points
    alpha = cfg.smoothing if grain not in ("hour", "minute") else cfg.smoothing / 3
    return EngineParams(
        alpha=alpha,
        beta=0.03 if cfg.trend else 0.0,
        seasonality=cfg.seasonality,
        multiplicative=cfg.multiplicative,
        exclude_z=cfg.exclude_z,
        adapt_after=cfg.adapt_after or adapt_span(grain, week, step),
        warmup=warmup,
        reselect_every=8 * week if grain in ("day", None) else week,
        compare_halfwidth=max(per_day // 2, 1) if per_day else {"hour": 12, "minute": 12 * 60}.get(grain or "", 0),
        noise_power=0.75 if grain in ("hour", "minute") else 1.0,
        lumpy=grain in ("hour", "minute"),
        **cycle_params(step, warmup),
        period=cfg.period or 0,
    )


class EngineDetector(Detector):
    """Shared plumbing for detectors built on `engine.run_engine`."""

    config: BandConfig

    def warmup_points(self, grain: str | None, step: float | None = None) -> int:
        return self.config.warmup or default_warmup(grain, step)

    def _score_block(self, batch: Batch, masks: CalendarMasks | None) -> Scores:
        step = step_seconds(batch)
        params = engine_params(self.config, batch.grain, self.warmup_points(batch.grain, step), step)
        notes: list[str] = []
        if params.period and params.period > batch.values.shape[1]:
            notes.append(f"a period of {params.period} points is longer than the history "
                         f"({batch.values.shape[1]} points): no cycle used")
            params.period = 0
        # huge magnitudes would overflow variances: work in units of a power of two of the first
        # value (exact in floating point, and known at the first point, so still causal)
        factor = _huge_factor(batch.values)
        if (factor != 1.0).any():
            batch = Batch(batch.values / factor[:, None], batch.times, batch.grain, batch.numerator,
                          batch.denominator, ratio_scale=batch.ratio_scale, step=batch.step)
        out, sparse = run_by_family(batch, masks, params, self.config.kind)
        if (factor != 1.0).any():
            batch = Batch(batch.values * factor[:, None], batch.times, batch.grain, batch.numerator,
                          batch.denominator, step=batch.step)
            out.expected *= factor[:, None]
            with np.errstate(over="ignore"):
                out.scale *= np.where(out.family == FAM_COUNT, factor * factor, factor)[:, None]
            if out.lump is not None:
                out.lump = out.lump * factor[:, None]
        family = np.where(out.family == FAM_COUNT, COUNT, GAUSS).astype(np.int8)
        unit = None
        fam_names = {0: "gauss", 1: "count", 2: "ratio"}
        labels = [fam_names[int(f)] for f in out.family]
        if out.lump is not None and (out.lump > 0).any():
            # a sum of a few lumps an hour (GMV of a handful of baskets) is scored as a count of
            # lumps: skewed like one, and an empty hour is as telling as 0 orders, not "2 sd"
            # (with many lumps a bucket the count is as good as Gaussian, so no threshold is needed)
            lumpy = (out.lump > 0).any(axis=1) & (out.family != FAM_COUNT) & (out.family != FAM_RATIO)
            if lumpy.any():
                var = np.where(lumpy[:, None], out.scale**2, out.scale)
                # until its first estimate a series is scored as the Poisson-like count whose variance
                # is its Gaussian one (lump = variance / mean): the same band, as near as a count can
                with np.errstate(invalid="ignore", divide="ignore"):
                    matched = var / np.maximum(np.abs(out.expected), TINY)
                unit = np.where(out.lump > 0, out.lump, np.where(np.isfinite(matched) & (matched > 0), matched, 1.0))
                unit = np.where(lumpy[:, None], unit, 1.0)
                family = np.where(lumpy, COUNT, family).astype(np.int8)
                out.scale = var
                labels = [("lumps" if lp else lab) for lp, lab in zip(lumpy, labels, strict=True)]
        unit, labels = lump_units(unit, sparse, batch.values.shape, labels)
        out.expected, out.scale = holiday_lift(batch.values, out.expected, out.scale, family == COUNT, out.learning,
                                               masks, step, out.calendar)
        ell = log_tail_points(batch.values, out.expected, out.scale, family, unit)
        ell[out.learning] = 0.0
        n, T = batch.values.shape
        suppressed = np.zeros((n, T), bool)
        if masks is not None:
            suppressed[:] = masks.suppress
            if out.released is not None:
                suppressed &= ~out.released
        if out.suppressed is not None:
            suppressed |= out.suppressed
        usable = ~out.learning & ~suppressed & np.isfinite(batch.values)
        per_day = 86400 / step if step else 0.0
        # the long view learns from the warm-up too (it is history), and speaks where the forecast may
        long_view = self._long_view(batch, usable, np.isfinite(batch.values) & ~suppressed, step) \
            if step and step < 3600 else None
        if per_day > 1 and abs(per_day - round(per_day)) < 1e-9:
            # what the same time of day reached on recent days is routine (`routine_log_tail`), in either view
            routine = (int(round(per_day)), max(1, int(np.ceil(1800 / step))))
            ell = routine_log_tail(ell, usable, *routine)
            if long_view is not None:
                long_view = (routine_log_tail(long_view[0], usable, *routine), *long_view[1:])
        # the score is the tail probability recalibrated on the series' own past (`calibrate_log_tail`)
        ell = calibrate_log_tail(ell, usable)
        history = None
        if long_view is not None:
            # two views, each recalibrated on the series' own past, the point judged by the more surprised
            # one at twice its tail (the smaller of two p-values, Bonferroni): a series whose forecast
            # errors are heavy-tailed (a CPU's bursts) keeps its long view's own calibration, which a
            # shared recalibration would squeeze with the forecast's tail
            ell_h, mean_h, sd_h = long_view
            ell_h = calibrate_log_tail(ell_h, usable)
            history = usable & (ell_h > ell) & (ell_h > HISTORY_SHOWN)
            if history.any():
                # shown against that view: the past weeks' mean and sd, and marked so that the
                # explanation says so
                out.expected = np.where(history, mean_h, out.expected)
                var_like = (family == COUNT)[:, None]
                out.scale = np.where(history, np.where(var_like, sd_h * sd_h, sd_h), out.scale)
            ell = np.maximum(np.maximum(ell, ell_h) - LN2, 0.0)
        score = tail_score(ell)
        model = [f"{self.name}:{lab}:{p}" for lab, p in zip(labels, out.profile, strict=True)]
        return Scores(
            values=batch.values,
            expected=out.expected,
            scale=out.scale,
            score=score,
            family=family,
            learning=out.learning,
            suppressed=suppressed,
            excluded=out.excluded,
            detector=self.name,
            model=model,
            volume=batch.denominator,
            floor=np.where((family == COUNT) | (out.family == FAM_RATIO), 0.0, -np.inf),
            ceiling=out.ceiling,
            unit=unit,
            calendar=out.calendar,
            history=history,
            warnings=notes,
        )

    def _long_view(self, batch: Batch, usable: np.ndarray, seen: np.ndarray, step: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A sub-hourly series' points judged against its own past weeks (`stats.history_log_tail`): (ℓ,
        mean, sd). Its level forgets within hours (a smoothing of 0.05 a point is 100 minutes at 5
        minutes), so a slide over hours is followed step by step and no step alone is news; against the
        past weeks, a machine at 20 °C that ran at 85 ± 5 is."""
        span = max(int(round(HISTORY_DAYS * 86400 / step)), 2)
        # never finer than the value's own resolution (a CPU recorded in tenths of a percent), as for the
        # forecast's noise: read off the warm-up, which the long view waits for too
        warm = self.warmup_points(batch.grain, step)
        first = np.where(np.cumsum(seen, axis=1) <= warm, batch.values, np.nan)
        ell_h, mean_h, sd_h = history_log_tail(batch.values, seen, span, warm, min_sd=resolution(first))
        return np.where(usable, ell_h, 0.0), mean_h, sd_h


@register
class BandDetector(EngineDetector):
    """Robust level (Huber-type, anomalies kept out) ± k·scale; seasonal profile and trend optional."""

    name: ClassVar[str] = "band"
    config_class: ClassVar[type[DetectorConfig]] = BandConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
