"""/api/metrics: definitions, series and data quality."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from metricloop.api import deps
from metricloop.api.contract import errors
from metricloop.api.deps import Actor, metric_scope, viewer, workspace
from metricloop.api.params import TimeText
from metricloop.metrics.quality import check_metric
from metricloop.metrics.query import NARROW, SeriesTooLarge, query_metric

router = APIRouter(prefix="/api/metrics", tags=["metrics"], dependencies=[Depends(viewer)])


@router.get("")
def list_metrics(ws=Depends(workspace), domain: str | None = None, actor: Actor | None = Depends(viewer)) -> list[dict]:
    allowed = metric_scope(ws, actor)
    return [
        m.normalized()
        for m in ws.catalog().metrics.values()
        if (not domain or m.domain == domain) and (allowed is None or m.name in allowed)
    ]


def _visible(ws, actor: Actor | None, name: str):
    metric = ws.catalog().metric(name)  # an unknown name: the catalogue's own 404
    deps.check_metric(ws, actor, metric.name)
    return metric


@router.get("/{name}")
def get_metric(name: str, ws=Depends(workspace), actor: Actor | None = Depends(viewer)) -> dict:
    return _visible(ws, actor, name).normalized()


@router.get("/{name}/series", responses=errors(502))
async def series(
    name: str,
    ws=Depends(workspace),
    by: Annotated[str | None, Query(description="Dimensions, comma-separated")] = None,
    start: Annotated[TimeText, Query(alias="from", description="Inclusive start, ISO date/time")] = None,
    end: Annotated[TimeText, Query(alias="to", description="Exclusive end, ISO date/time")] = None,
    grain: Annotated[str | None, Query(description="minute, hour, day, week, month, or 5min, 2h…")] = None,
    where: Annotated[list[str] | None, Query(description="DIM=VALUE, repeatable")] = None,
    actor: Actor | None = Depends(viewer),
) -> dict:
    """The metric's series, at most METRICLOOP_SERIES_MAX_ROWS rows and METRICLOOP_SERIES_MAX_BYTES bytes of rows
    (defaults 100,000 and 20 MB): a larger query is refused with 422 saying how to narrow it."""
    _visible(ws, actor, name)
    dims = [d.strip() for d in (by or "").split(",") if d.strip()]
    limit = ws.settings.series_max_rows

    def read() -> bytes:
        frame = query_metric(ws, name, by=dims, start=start, end=end, grain=grain, where=where, max_rows=limit)
        # the rows as pandas writes them, in the pool thread: parsing them back into dicts for FastAPI to
        # serialise again cost more than the rest of the answer
        rows = frame.df.to_json(orient="records", date_format="iso")
        if len(rows) > ws.settings.series_max_bytes:
            raise SeriesTooLarge(
                f"the series' rows would be {len(rows):,} bytes, more than {ws.settings.series_max_bytes:,}; {NARROW}",
                where="series",
            )
        head = {
            "metric": frame.metric.name,
            "by": frame.by,
            "grain": frame.grain,
            "from": frame.start.isoformat() if frame.start else None,
            "to": frame.end.isoformat() if frame.end else None,
        }
        return (json.dumps(head, ensure_ascii=False)[:-1] + ', "rows": ' + rows + "}").encode()

    return Response(await run_in_threadpool(read), media_type="application/json")


@router.get("/{name}/quality", responses=errors(502))
async def quality(
    name: str, ws=Depends(workspace), at: Annotated[TimeText, Query()] = None, actor: Actor | None = Depends(viewer)
) -> list[dict]:
    _visible(ws, actor, name)
    checks = await run_in_threadpool(check_metric, ws, name, at=at)
    return [c.to_dict() for c in checks]
