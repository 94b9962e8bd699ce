"""The data behind the console's charts, from the code the loop itself uses: the metric's series
(metrics/query.py) and, for an incident, its monitor's detector over that series (the band and the expected
value) with the anomalous points its runs recorded (monitors' Anomaly rows)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import select

from metricloop.incidents.models import Incident
from metricloop.metrics.query import query_metric
from metricloop.metrics.slices import parse_slice
from metricloop.metrics.timeutil import floor, now_local

HISTORY = {"minute": timedelta(hours=12), "hour": timedelta(days=14), "day": timedelta(days=70)}
AFTER = {"minute": timedelta(hours=1), "hour": timedelta(days=1), "day": timedelta(days=7)}


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def _t(t) -> str:
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M").removesuffix(" 00:00")


def incident_chart(ws, inc: Incident) -> dict | None:
    """{"times", "actual", "expected", "lower", "upper", "anomalies": [[time, value]], "slice"} for the incident's
    first slice, around the time of its anomalies; None when there is nothing to draw (e.g. a data-quality
    incident, or a metric that no longer exists)."""
    from metricloop.alerting.models import Alert
    from metricloop.detect import detector_from_dict
    from metricloop.monitors.models import Anomaly
    from metricloop.monitors.service import build_calendar

    catalog = ws.catalog()
    if inc.kind != "metric" or inc.metric not in catalog.metrics:
        return None
    monitor = catalog.all("monitor").get(inc.monitor)
    metric = catalog.metric(inc.metric)
    slice_key = (inc.slices or ["*"])[0]
    with ws.db.session() as s:
        fingerprints = [a.fingerprint for a in s.scalars(select(Alert).where(Alert.incident_id == inc.id))]
        rows = list(
            s.scalars(
                select(Anomaly)
                .where(Anomaly.fingerprint.in_(fingerprints or [""]), Anomaly.slice == slice_key)
                .order_by(Anomaly.time)
            )
        )
    grain = metric.grain
    last = max((r.time for r in rows), default=None) or datetime.now().replace(microsecond=0, tzinfo=None)
    start, end = last - HISTORY.get(grain, timedelta(days=70)), last + AFTER.get(grain, timedelta(days=7))
    # the bucket under way is not over: drawn, its part-day total reads as a collapse
    end = min(end, floor(pd.Timestamp(now_local(metric.timezone)), grain).to_pydatetime())
    where = [f"{k}={v}" for k, v in parse_slice(slice_key).items()]
    frame = query_metric(ws, metric.name, start=start, end=end, grain=grain, where=where, catalog=catalog)
    df = frame.df.sort_values("time")
    if df.empty:
        return None
    times = pd.DatetimeIndex(pd.to_datetime(df["time"]))
    values = df["value"].to_numpy(float)
    out = {
        "times": [_t(t) for t in times],
        "actual": [_num(v) for v in values],
        "slice": slice_key,
        "unit": metric.unit,
        "expected": [],
        "lower": [],
        "upper": [],
    }
    if monitor is not None and len(values) > 2:
        num = den = None
        if metric.is_ratio and "numerator" in df:
            num, den = df["numerator"].to_numpy(float)[None, :], df["denominator"].to_numpy(float)[None, :]
        det = detector_from_dict(monitor.detector).detect(
            values[None, :],
            times,
            calendar=build_calendar(ws, monitor),
            numerator=num,
            denominator=den,
            grain=grain,
            good_direction=metric.good_direction,
            ratio_scale=metric.ratio.scale if metric.ratio is not None else None,
        )
        out["expected"] = [_num(v) for v in det.expected[0]]
        lower = det.lower[0]
        if (values[~pd.isna(values)] >= 0).all():  # a quantity that is never negative: no band below 0
            lower = lower.clip(min=0)
        out["lower"] = [_num(v) for v in lower]
        out["upper"] = [_num(v) for v in det.upper[0]]
    out["anomalies"] = [[_t(r.time), _num(r.actual)] for r in rows]
    return out


def metric_chart(ws, name: str, *, by: str | None, days: int = 60, lang: str = "en") -> dict:
    """{"times", "series": [{"name", "values"}], "sql"}: the metric over the last `days` days of its data, the total
    or broken down by dimension `by` (its 8 largest values)."""
    catalog = ws.catalog()
    metric = catalog.metric(name)
    dims = [by] if by else []
    probe = query_metric(ws, name, grain="day", start=None, end=None, catalog=catalog)
    last = pd.to_datetime(probe.df["time"]).max() if not probe.df.empty else pd.Timestamp.now().normalize()
    start = (last - pd.Timedelta(days=days)).to_pydatetime()
    end = (last + pd.Timedelta(days=1)).to_pydatetime()
    frame = query_metric(ws, name, by=dims, start=start, end=end, grain="day", catalog=catalog)
    df = frame.df
    times = sorted(pd.to_datetime(df["time"]).unique()) if not df.empty else []
    labels = [_t(t) for t in times]
    series = []
    index = pd.DatetimeIndex(times)
    if not by:
        values = df.set_index(pd.to_datetime(df["time"]))["value"] if not df.empty else pd.Series(dtype=float)
        title = (metric.title.zh if lang == "zh" else metric.title.en) or name
        aligned = values.groupby(level=0).sum(min_count=1).reindex(index).to_numpy(float, na_value=float("nan"))
        series.append({"name": title, "values": [_num(v) for v in aligned]})
    else:
        wide = df.pivot_table(index="time", columns=by, values="value", aggfunc="sum") if not df.empty else None
        if wide is not None:
            wide.index = pd.to_datetime(wide.index)
            wide = wide.reindex(index)  # one column per value of `by`, one row per day: read whole, not per point
            for col in wide.sum().sort_values(ascending=False).index[:8]:
                series.append(
                    {"name": str(col), "values": [_num(v) for v in wide[col].to_numpy(float, na_value=float("nan"))]}
                )
    return {"times": labels, "series": series, "by": by or "", "unit": metric.unit, "sql": frame.sql}
