"""A monitor's backtest preview: what it would have raised over its recent past, drawn on one series.

It is the backtest of detect/backtest.py with the monitor's own slicing, detector and calendar over its own
history window, ending where the data ends (not at the wall clock: a feed that stopped would read as a collapse).
Nothing is written and nothing is sent: no run row, no anomaly, alert, incident or notification.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from metricloop.metrics.timeutil import floor, now_local
from metricloop.web.console.charts import _num, _t

# how much of the past the preview shows (the detector still learns from the monitor's whole history window)
SHOWN = {"minute": timedelta(hours=12), "hour": timedelta(days=7), "day": timedelta(days=90)}
STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def _data_end(ws, catalog, metric, grain: str) -> datetime:
    """The end (exclusive) of the newest bucket with data, and never past the bucket under way."""
    from metricloop.metrics.quality import base_metrics, freshness

    now = floor(pd.Timestamp(now_local(metric.timezone)), grain).to_pydatetime()
    ends = []
    for base in base_metrics(catalog, metric):
        check = freshness(ws, catalog, base, now_local(metric.timezone))
        if check.time is not None:
            ends.append(floor(pd.Timestamp(check.time), grain).to_pydatetime() + STEP.get(grain, timedelta(days=1)))
    return min([now, *ends])


def monitor_preview(ws, name: str, *, slice_key: str | None = None) -> dict:
    """{"times", "actual", "expected", "lower", "upper", "anomalies", "slice", "series": [slice keys with their
    flagged points], "events": [{"slice", "start", "end", "points"}], "from", "until", "grain"}."""
    from metricloop.definitions.durations import parse_duration
    from metricloop.detect.backtest import _quality_holds, related_metrics, run_backtest, series_set
    from metricloop.detect.scoring import canonical_slice
    from metricloop.monitors.service import DEFAULT_HISTORY, build_calendar, monitor_series

    catalog = ws.catalog()
    monitor = catalog.get("monitor", name)
    metric = catalog.metric(monitor.metric)
    grain = monitor.grain or metric.grain
    until = _data_end(ws, catalog, metric, grain)
    start = until - parse_duration(monitor.history or DEFAULT_HISTORY[grain])
    shown_from = until - SHOWN.get(grain, timedelta(days=90))
    out: dict = {
        "grain": grain,
        "from": _t(shown_from),
        "until": _t(until),
        "slice": "",
        "series": [],
        "events": [],
        "times": [],
        "actual": [],
        "expected": [],
        "lower": [],
        "upper": [],
        "anomalies": [],
        "unit": metric.unit,
    }
    long = monitor_series(ws, catalog, monitor, metric, start=start, end=until, grain=grain)
    if long.empty:
        return out
    sset = series_set(long, metric.name, grain, ratio=metric.ratio is not None)
    sset.ratio_scale = metric.ratio.scale if metric.ratio is not None else None
    det_def = dict(monitor.detector)
    res = run_backtest(
        sset,
        detector=str(det_def.pop("detector", "auto")),
        config=det_def,
        good_direction=metric.good_direction,
        calendar=build_calendar(ws, monitor),
        title_zh=metric.title.zh,
        title_en=metric.title.en,
        unit=metric.unit,
        held=_quality_holds(ws, metric.name, sset, catalog),
        related_to=related_metrics(catalog),
    )
    events = res.events
    if not events.empty:
        events = events[pd.to_datetime(events["end"]) > pd.Timestamp(shown_from)]
    counts = events.groupby("slice")["points"].sum().sort_values(ascending=False) if not events.empty else None
    names = list(sset.names)
    wanted = canonical_slice(slice_key) if slice_key else None
    if wanted is None or wanted not in names:
        wanted = str(counts.index[0]) if counts is not None and len(counts) else names[0]
    out["slice"] = wanted
    out["series"] = [{"slice": s, "points": int(n)} for s, n in (counts.items() if counts is not None else [])]
    out["events"] = [
        {"slice": r.slice, "start": _t(r.start), "end": _t(r.end), "points": int(r.points)}
        for r in events.sort_values("start", ascending=False).head(50).itertuples()
    ]
    i = names.index(wanted)
    d = res.detection
    times = sset.times
    keep = times >= pd.Timestamp(shown_from)
    values = d.values[i][keep]
    lower = d.lower[i][keep]
    if (values[~pd.isna(values)] >= 0).all():  # a quantity never below 0: no band below 0
        lower = lower.clip(min=0)
    out["times"] = [_t(t) for t in times[keep]]
    out["actual"] = [_num(v) for v in values]
    out["expected"] = [_num(v) for v in d.expected[i][keep]]
    out["lower"] = [_num(v) for v in lower]
    out["upper"] = [_num(v) for v in d.upper[i][keep]]
    flagged = d.is_anomaly[i][keep]
    out["anomalies"] = [[_t(t), _num(v)] for t, v, f in zip(times[keep], values, flagged, strict=True) if f]
    return out
