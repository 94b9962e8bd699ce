"""Related metrics: what else moved on the same slice at the same time, ranked by how abnormal it was.

A metric's related metrics are those its definition names (`related:`), the parts of a ratio (conversion_rate →
orders, visitors; and the ratios a metric is a part of), and the metrics over the same table. Each is read on
the incident's slice (the dimensions it has of it) over the same history, judged by the causal detector at the
bucket, and ranked by its score: the stock-out rate at 35 % where it is usually 2 % comes first, visitors
inside their band last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metricloop.definitions.schemas import MetricSpec
from metricloop.errors import MetricloopError
from metricloop.metrics.query import query_metric
from metricloop.rca.cube import DEFAULT_DETECTOR, RCA_HISTORY, bucket_end

MAX_RELATED = 8


def related_names(catalog, spec: MetricSpec) -> list[str]:
    """Declared first, then ratio parts, then the metrics over the same table (each once, never itself)."""
    metrics = catalog.metrics
    out: list[str] = list(spec.related)
    if spec.ratio is not None:
        out += [s.metric for s in (spec.ratio.numerator, spec.ratio.denominator) if getattr(s, "metric", None)]
    for other in metrics.values():
        if other.ratio is not None and spec.name in {getattr(s, "metric", None)
                                                     for s in (other.ratio.numerator, other.ratio.denominator)}:
            out.append(other.name)
    if spec.table or spec.sql:
        out += [m.name for m in metrics.values()
                if m.source == spec.source and (m.table, m.sql) == (spec.table, spec.sql)]
    return [n for n in dict.fromkeys(out) if n != spec.name and n in metrics]


def related_report(ws, catalog, spec: MetricSpec, *, at, grain: str, focus: dict[str, str], calendar=None,
                   limit: int = MAX_RELATED) -> list[dict]:
    """One row per related metric on `focus` (the dimensions it has), most abnormal first."""
    from metricloop.definitions.durations import parse_duration
    from metricloop.detect import detector_from_dict

    det = detector_from_dict(DEFAULT_DETECTOR)
    rows = []
    at_ts = pd.Timestamp(at)
    start = (at_ts - parse_duration(RCA_HISTORY[grain])).to_pydatetime()
    for name in related_names(catalog, spec)[:limit]:
        other = catalog.metric(name)
        where = {k: [v] for k, v in focus.items() if k in other.dimensions}
        row = {"metric": name, "title_zh": other.title.zh or name, "title_en": other.title.en or name,
               "unit": other.unit, "slice": ",".join(f"{k}={v[0]}" for k, v in sorted(where.items())) or "*",
               "good_direction": other.good_direction}
        try:
            mf = query_metric(ws, name, start=start, end=bucket_end(at_ts, grain),
                              grain=grain, where=where, catalog=catalog)
        except MetricloopError as exc:  # a related metric that cannot be read is said, and the rest go on
            rows.append({**row, "error": exc.message, "score": -1.0})
            continue
        df = mf.df
        if df.empty or pd.Timestamp(df["time"].iloc[-1]) != at_ts:
            rows.append({**row, "error": "no data at this time", "score": -1.0})
            continue
        values = df["value"].to_numpy(dtype=np.float64)[None, :]
        num = df["numerator"].to_numpy(dtype=np.float64)[None, :] if other.is_ratio else None
        den = df["denominator"].to_numpy(dtype=np.float64)[None, :] if other.is_ratio else None
        try:
            d = det.detect(values, pd.DatetimeIndex(df["time"]), calendar=calendar, numerator=num, denominator=den,
                           grain=grain, good_direction=other.good_direction,
                           ratio_scale=other.ratio.scale if other.ratio is not None else None)
        except MetricloopError as exc:
            rows.append({**row, "error": exc.message, "score": -1.0})
            continue
        actual, expected = float(values[0, -1]), float(d.expected[0, -1])
        score = float(d.scores.score[0, -1]) if np.isfinite(d.scores.score[0, -1]) else 0.0
        bands = float(d.deviation_bands()[0, -1])
        dev = None if not np.isfinite(expected) or expected == 0 else 100.0 * (actual - expected) / abs(expected)
        rows.append({
            **row,
            "actual": _r(actual),
            "expected": _r(expected),
            "lower": _r(float(d.lower[0, -1])),
            "upper": _r(float(d.upper[0, -1])),
            "deviation_pct": None if dev is None else round(dev, 2),
            "score": round(score, 4),
            "bands": round(bands, 2) if np.isfinite(bands) else None,  # how far out, in band half-widths
            "abnormal": bool(d.is_anomaly[0, -1] or (np.isfinite(d.upper[0, -1]) and actual > d.upper[0, -1])
                             or (np.isfinite(d.lower[0, -1]) and actual < d.lower[0, -1])),
            "direction": "up" if np.isfinite(expected) and actual > expected else "down",
        })
    rows.sort(key=lambda r: (-(r.get("abnormal") or False), -abs(r.get("bands") or 0.0), -r["score"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _r(x: float) -> float | None:
    return float(f"{x:.6g}") if np.isfinite(x) else None
