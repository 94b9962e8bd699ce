"""/api/metrics: definitions, series and data quality."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from metricloop.api.deps import viewer, workspace
from metricloop.metrics.quality import check_metric
from metricloop.metrics.query import NARROW, SeriesTooLarge, query_metric

router = APIRouter(prefix="/api/metrics", tags=["metrics"], dependencies=[Depends(viewer)])


@router.get("")
def list_metrics(ws=Depends(workspace), domain: str | None = None) -> list[dict]:
    return [m.normalized() for m in ws.catalog().metrics.values() if not domain or m.domain == domain]


@router.get("/{name}")
def get_metric(name: str, ws=Depends(workspace)) -> dict:
    return ws.catalog().metric(name).normalized()


@router.get("/{name}/series")
async def series(
    name: str,
    ws=Depends(workspace),
    by: Annotated[str | None, Query(description="Dimensions, comma-separated")] = None,
    start: Annotated[str | None, Query(alias="from", description="Inclusive start, ISO date/time")] = None,
    end: Annotated[str | None, Query(alias="to", description="Exclusive end, ISO date/time")] = None,
    grain: Annotated[str | None, Query(description="minute, hour, day, week or month")] = None,
    where: Annotated[list[str] | None, Query(description="DIM=VALUE, repeatable")] = None,
) -> dict:
    """The metric's series, at most METRICLOOP_SERIES_MAX_ROWS rows and METRICLOOP_SERIES_MAX_BYTES bytes of rows
    (defaults 100,000 and 20 MB): a larger query is refused with 422 saying how to narrow it."""
    dims = [d.strip() for d in (by or "").split(",") if d.strip()]
    limit = ws.settings.series_max_rows
    frame = await run_in_threadpool(
        query_metric, ws, name, by=dims, start=start, end=end, grain=grain, where=where, max_rows=limit
    )
    rows = frame.df.to_json(orient="records", date_format="iso")
    if len(rows) > ws.settings.series_max_bytes:
        raise SeriesTooLarge(
            f"the series' rows would be {len(rows):,} bytes, more than {ws.settings.series_max_bytes:,}; {NARROW}",
            where="series",
        )
    return {
        "metric": frame.metric.name,
        "by": frame.by,
        "grain": frame.grain,
        "from": frame.start.isoformat() if frame.start else None,
        "to": frame.end.isoformat() if frame.end else None,
        "rows": json.loads(rows),
    }


@router.get("/{name}/quality")
async def quality(name: str, ws=Depends(workspace), at: str | None = None) -> list[dict]:
    checks = await run_in_threadpool(check_metric, ws, name, at=at)
    return [c.to_dict() for c in checks]
