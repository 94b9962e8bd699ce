"""Backtest: run a detector walk-forward over a metric's history and list what it would have raised.

It never notifies. Every detector is causal, so one pass over the whole history gives, at every
bucket, exactly what a live run at that bucket would have said. Given labels it scores the result
at the event level (see `metricloop.detect.scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from metricloop.detect.base import get_detector
from metricloop.detect.calendar import Calendar
from metricloop.detect.conditions import Detection
from metricloop.detect.scoring import EventScore, alert_events, canonical_slice, related, score_events


@dataclass
class SeriesSet:
    """All slices of one metric as aligned arrays (series × time)."""

    metric: str
    grain: str
    names: list[str]  # canonical slice keys, '' = total
    times: pd.DatetimeIndex
    values: np.ndarray
    numerator: np.ndarray | None = None
    denominator: np.ndarray | None = None
    volume: np.ndarray | None = None
    ratio_scale: float | None = None


def series_set(long: pd.DataFrame, metric: str, grain: str, *, ratio: bool) -> SeriesSet:
    """Long form (time, slice, value[, numerator, denominator, volume]) → aligned arrays."""
    df = long.copy()
    df["slice"] = df["slice"].map(canonical_slice)
    times = pd.DatetimeIndex(sorted(pd.to_datetime(df["time"]).unique()))
    names = list(dict.fromkeys(sorted(df["slice"].unique(), key=lambda s: (s.count("="), s))))

    def wide(col: str) -> np.ndarray:
        # mean, not sum: the sum of nothing is 0, and a store that did not exist yet had no value, not 0
        w = df.pivot_table(index="slice", columns="time", values=col, aggfunc="mean", dropna=False)
        return w.reindex(index=names, columns=times).to_numpy(dtype=float)

    values = wide("value")
    num = wide("numerator") if ratio and "numerator" in df else None
    den = wide("denominator") if ratio and "denominator" in df else None
    vol = wide("volume") if "volume" in df else None
    return SeriesSet(metric, grain, names, times, values, num, den, vol)


@dataclass
class BacktestResult:
    metric: str
    grain: str
    series: list[str]
    detection: Detection
    anomalies: pd.DataFrame
    events: pd.DataFrame
    months: float
    held: pd.DataFrame = field(default_factory=pd.DataFrame)  # points held back by a data-quality check
    score: EventScore | None = None


def related_metrics(catalog: Any) -> dict[str, set[str]]:
    """Each derived ratio → the metrics it is computed from (conversion_rate → orders, visitors)."""
    out: dict[str, set[str]] = {}
    for spec in catalog.metrics.values():
        ratio = getattr(spec, "ratio", None)
        if ratio is None:
            continue
        sides = {getattr(side, "metric", None) for side in (ratio.numerator, ratio.denominator)}
        sides.discard(None)
        if sides:
            out[spec.name] = {str(s) for s in sides}
    return out


def months_between(times: pd.DatetimeIndex) -> float:
    if len(times) < 2:
        return 1e-9
    return (times[-1] - times[0]) / pd.Timedelta(days=30.4375)


def run_backtest(
    sset: SeriesSet,
    *,
    detector: str = "auto",
    config: dict[str, Any] | None = None,
    good_direction: str | None = None,
    calendar: Calendar | None = None,
    labels: pd.DataFrame | None = None,
    title_zh: str | None = None,
    title_en: str | None = None,
    unit: str = "",
    held: pd.DataFrame | None = None,
    related_to: dict[str, set[str]] | None = None,
) -> BacktestResult:
    """Detect over prepared series; optionally hold back data-quality points and score against labels."""
    det_obj = get_detector(detector, config or {})
    scores = det_obj.score(
        sset.values,
        sset.times,
        calendar=calendar,
        numerator=sset.numerator,
        denominator=sset.denominator,
        names=sset.names,
        grain=sset.grain,
        ratio_scale=sset.ratio_scale,
    )
    from metricloop.detect.conditions import apply_conditions

    det = apply_conditions(scores, det_obj.config, good_direction=good_direction, volume=sset.volume)
    held_rows = []
    if held is not None and len(held):
        # a bucket whose data is still arriving is a data-quality matter for the data owner, not a metric alert
        pos = {t: i for i, t in enumerate(sset.times)}
        for h in held.itertuples():
            j = pos.get(pd.Timestamp(h.time))
            if j is None:
                continue
            for i, name in enumerate(sset.names):
                if related(name, canonical_slice(h.slice)) and det.is_anomaly[i, j]:
                    det.is_anomaly[i, j] = False
                    held_rows.append({"slice": name, "time": sset.times[j], "reason": h.message})
    anomalies = det.anomalies(metric=sset.metric, title_zh=title_zh, title_en=title_en, unit=unit)
    anomalies["grain"] = sset.grain
    events = alert_events(anomalies, grain=sset.grain)
    months = months_between(sset.times)
    result = BacktestResult(sset.metric, sset.grain, sset.names, det, anomalies, events, months,
                            pd.DataFrame(held_rows))
    if labels is not None:
        explaining = {sset.metric} | set((related_to or {}).get(sset.metric, ()))
        lab = labels[labels["metric"].isin(explaining) & (labels["grain"] == sset.grain)]
        result.score = score_events(events, lab, series=[(sset.metric, s, sset.grain) for s in sset.names],
                                    months=months, related_metrics=related_to)
    return result


def backtest(
    ws: Any,
    metric: str,
    *,
    by: list[str] | None = None,
    combos: str = "all",
    start: Any = None,
    end: Any = None,
    grain: str | None = None,
    detector: str = "auto",
    config: dict[str, Any] | None = None,
    calendar: Calendar | None = None,
    labels: pd.DataFrame | None = None,
    top_n: int | None = None,
    min_volume: float | None = None,
    quality_gate: bool = True,
) -> BacktestResult:
    """Walk-forward detection over a workspace metric, all slices of `by` at once."""
    from metricloop.metrics.slices import explode

    catalog = ws.catalog()
    spec = catalog.metric(metric)
    g = grain or spec.grain
    long = explode(ws, metric, dims=list(by or []), combos=combos, total=True, top_n=top_n, min_volume=min_volume,
                   start=start, end=end, grain=g, catalog=catalog)
    sset = series_set(long, metric, g, ratio=spec.ratio is not None)
    sset.ratio_scale = spec.ratio.scale if spec.ratio is not None else None
    held = _quality_holds(ws, metric, sset, catalog) if quality_gate and len(sset.times) else None
    return run_backtest(
        sset,
        detector=detector,
        config=config,
        good_direction=spec.good_direction,
        calendar=calendar if calendar is not None else Calendar(),
        labels=labels,
        title_zh=spec.title.zh,
        title_en=spec.title.en,
        unit=spec.unit,
        held=held,
        related_to=related_metrics(catalog),
    )


def _quality_holds(ws: Any, metric: str, sset: SeriesSet, catalog: Any) -> pd.DataFrame | None:
    """Completeness failures of the newest buckets, as a live run right after the data end would see them."""
    from metricloop.metrics.quality import check_metric

    step = {"hour": pd.Timedelta(hours=1), "minute": pd.Timedelta(minutes=1)}.get(sset.grain, pd.Timedelta(days=1))
    at = (sset.times[-1] + step).to_pydatetime()
    try:
        checks = check_metric(ws, metric, at=at, catalog=catalog)
    except Exception:  # noqa: BLE001 - a failing quality check must never break a backtest
        return None
    rows = [{"slice": c.slice, "time": c.time, "message": c.message} for c in checks
            if c.check == "completeness" and c.status == "fail" and c.time is not None]
    return pd.DataFrame(rows)
