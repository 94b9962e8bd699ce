"""What a metric's console page shows beside its chart: its data quality now (the checks the monitors run, via
metrics/quality.py) and its version history with each version's diff (definitions/service.py)."""

from __future__ import annotations

from metricloop.errors import MetricloopError, NotFound
from metricloop.web.pages import clock

MAX_VERSIONS = 30


def quality_rows(ws, metric) -> list[dict]:
    from metricloop.metrics.quality import check_metric

    try:
        checks = check_metric(ws, metric.name)
    except MetricloopError as e:
        return [{"check": "source", "status": "error", "message": e.message, "slice": "*", "metric": metric.name}]
    return [
        {"check": c.check, "status": c.status, "message": c.message, "slice": c.slice, "metric": c.metric}
        for c in checks
    ]


def version_rows(ws, name: str, *, tz: str) -> list[dict]:
    from metricloop.definitions.service import history

    with ws.db.session() as s:
        try:
            rows = history(s, kind="metric", name=name)
        except NotFound:
            return []
        return [
            {
                "version": v.version,
                "change": v.change,
                "author": v.author,
                "comment": v.comment,
                "at": clock(v.created_at, tz),
                "diff": v.diff,
            }
            for v in reversed(rows[-MAX_VERSIONS:])
        ]


def metric_extra(ws, metric, *, tz: str) -> dict:
    return {"quality": quality_rows(ws, metric), "versions": version_rows(ws, metric.name, tz=tz)}
