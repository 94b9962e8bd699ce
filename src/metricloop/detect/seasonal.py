"""`seasonal`: a Holt-Winters or STL forecast with a prediction interval (statsmodels).

Walk-forward: the history is cut into blocks of `refit_every` points counted from the first point;
at the start of each block the model is fitted on the `history` points before it and forecasts the
whole block. So the output at t uses only data before t, and appending data never changes the past.
Points flagged in earlier blocks are replaced by the forecast before refitting (kept out of the
baseline). One model per series: slower than `band`/`auto`, meant for a few important series.
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from metricloop.detect.base import GAUSS, Detector, DetectorConfig, Scores, register
from metricloop.detect.calendar import CalendarMasks
from metricloop.detect.prepare import PROFILES, Batch, default_warmup
from metricloop.detect.stats import score_points


class SeasonalConfig(DetectorConfig):
    method: Literal["holt_winters", "stl"] = "holt_winters"
    period: int | None = Field(None, ge=2, description="season length in points (default: a week of buckets)")
    refit_every: int | None = Field(None, ge=1, description="points per forecast block (default: one period)")
    history: int | None = Field(None, ge=4, description="points used to fit (default: eight periods)")
    exclude_z: float = Field(3.5, gt=0, description="points beyond this many sd are replaced before refitting")


def _period(grain: str | None, step: float | None = None) -> int:
    if step and grain == "hour":
        return max(int(round(86400 / step)), 2)  # a day in points of the step (48 at 30 minutes)
    if step and grain == "minute":
        return max(int(round(3600 / step)), 2)  # an hour in points (12 at 5 minutes)
    return {"hour": PROFILES["hour_of_day"], "minute": 60}.get(grain or "", PROFILES["day_of_week"])


def _forecast(train: np.ndarray, period: int, h: int, method: str) -> tuple[np.ndarray, float]:
    """Forecast h points after `train` and the robust sd of the in-sample one-step errors."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = "add" if len(train) >= 2 * period else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "stl" and seasonal:
            from statsmodels.tsa.forecasting.stl import STLForecast

            model = STLForecast(train, ExponentialSmoothing, model_kwargs={"trend": "add", "damped_trend": True},
                                period=period, robust=True).fit()
            fc = np.asarray(model.forecast(h), dtype=float)
            resid = np.asarray(model.result.resid, dtype=float) if hasattr(model, "result") else train - train.mean()
        else:
            fit = ExponentialSmoothing(train, trend="add", damped_trend=True, seasonal=seasonal,
                                       seasonal_periods=period if seasonal else None,
                                       initialization_method="estimated").fit()
            fc = np.asarray(fit.forecast(h), dtype=float)
            resid = np.asarray(fit.resid, dtype=float)
    resid = resid[np.isfinite(resid)]
    sd = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) if len(resid) else np.nan
    return fc, sd


@register
class SeasonalDetector(Detector):
    name: ClassVar[str] = "seasonal"
    config_class: ClassVar[type[DetectorConfig]] = SeasonalConfig
    config: SeasonalConfig

    def warmup_points(self, grain: str | None, step: float | None = None) -> int:
        return self.config.warmup or max(default_warmup(grain, step), 2 * (self.config.period or _period(grain, step)))

    def _score_block(self, batch: Batch, masks: CalendarMasks | None) -> Scores:
        cfg = self.config
        x = batch.values
        n, T = x.shape
        period = cfg.period or _period(batch.grain, batch.step)
        block = cfg.refit_every or period
        hist = cfg.history or 8 * period
        warm = self.warmup_points(batch.grain, batch.step)
        expected = np.full((n, T), np.nan)
        scale = np.full((n, T), np.nan)
        excluded = np.zeros((n, T), bool)
        if masks is not None:
            excluded[:] = masks.exclude
        for i in range(n):
            clean = x[i].copy()
            clean[excluded[i]] = np.nan
            for b in range(0, T, block):
                past = clean[max(0, b - hist):b]
                if np.isfinite(past).sum() < warm:
                    continue
                # fill holes (missing, excluded) by carrying the last value: statsmodels needs a full series
                filled = _ffill(past)
                if not np.isfinite(filled).all():
                    continue
                h = min(block, T - b)
                fc, sd = _forecast(filled, period, h, cfg.method)
                sd = max(sd, 1e-3 * abs(float(np.nanmedian(filled))), 1e-9)
                expected[i, b:b + h], scale[i, b:b + h] = fc, sd
                z = np.abs(x[i, b:b + h] - fc) / sd
                with np.errstate(invalid="ignore"):
                    out = z > cfg.exclude_z
                clean[b:b + h] = np.where(out, fc, clean[b:b + h])
                excluded[i, b:b + h] |= out
        family = np.full(n, GAUSS, np.int8)
        learning = ~np.isfinite(expected)
        score = score_points(x, expected, scale, family)
        score[learning] = 0.0
        suppressed = np.zeros((n, T), bool)
        if masks is not None:
            suppressed[:] = masks.suppress
        return Scores(values=x, expected=expected, scale=scale, score=score, family=family, learning=learning,
                      suppressed=suppressed, excluded=excluded, detector=self.name,
                      model=[f"seasonal:{cfg.method}:{period}"] * n, volume=batch.denominator)


def _ffill(a: np.ndarray) -> np.ndarray:
    idx = np.where(np.isfinite(a), np.arange(len(a)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = a[idx]
    first = np.flatnonzero(np.isfinite(a))
    if len(first):
        out[: first[0]] = a[first[0]]
    return out
