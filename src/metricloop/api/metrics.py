"""/api/metrics: definitions, series and data quality."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from metricloop.api.deps import viewer, workspace
from metricloop.metrics.quality import check_metric
from metricloop.metrics.query import query_metric

router = APIRouter(prefix="/api/metrics", tags=["metrics"], dependencies=[Depends(viewer)])


def _records(df) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


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
    grain: Annotated[str | None, Query(description="minute, hour, day, week, month, or 5min, 2h…")] = None,
    where: Annotated[list[str] | None, Query(description="DIM=VALUE, repeatable")] = None,
) -> dict:
    dims = [d.strip() for d in (by or "").split(",") if d.strip()]
    frame = await run_in_threadpool(query_metric, ws, name, by=dims, start=start, end=end, grain=grain, where=where)
    return {
        "metric": frame.metric.name,
        "by": frame.by,
        "grain": frame.grain,
        "from": frame.start.isoformat() if frame.start else None,
        "to": frame.end.isoformat() if frame.end else None,
        "rows": _records(frame.df),
    }


@router.get("/{name}/quality")
async def quality(name: str, ws=Depends(workspace), at: str | None = None) -> list[dict]:
    checks = await run_in_threadpool(check_metric, ws, name, at=at)
    return [c.to_dict() for c in checks]
