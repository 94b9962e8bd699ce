"""/api/silences, /api/routes, /api/channels, /api/alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field
from sqlalchemy import select

from metricloop.alerting import silences
from metricloop.alerting.models import Alert
from metricloop.api.contract import errors
from metricloop.api.deps import Actor, db_session, operator, viewer, workspace
from metricloop.api.params import MAX_SILENCE_MINUTES, Body, Limit, Moment, SilenceId
from metricloop.incidents.views import alert_dict
from metricloop.limits import MAX_MATCHER_LENGTH, MAX_MATCHERS, MAX_TEXT

router = APIRouter(tags=["alerting"], dependencies=[Depends(viewer)])


class SilenceBody(Body):
    matchers: list[Annotated[str, Field(max_length=MAX_MATCHER_LENGTH)]] = Field(
        min_length=1, max_length=MAX_MATCHERS, description='e.g. ["region=East", "monitor=store_sales"]'
    )
    reason: str = Field(min_length=1, max_length=MAX_TEXT)
    ends_at: Moment | None = None
    duration_minutes: float | None = Field(None, gt=0, le=MAX_SILENCE_MINUTES, description="at most 3660 days")


@router.get("/api/silences")
def list_silences(s=Depends(db_session), active: bool = False) -> list[dict]:
    return [silences.silence_dict(x) for x in silences.list_silences(s, active_only=active)]


@router.post("/api/silences", status_code=201)
def create_silence(body: SilenceBody, actor: Actor = Depends(operator), s=Depends(db_session)) -> dict:
    from datetime import timedelta

    duration = timedelta(minutes=body.duration_minutes) if body.duration_minutes else None
    row = silences.create(
        s, matchers=body.matchers, reason=body.reason, created_by=actor.name, ends_at=body.ends_at, duration=duration
    )
    return silences.silence_dict(row)


@router.delete("/api/silences/{silence_id}")
def expire_silence(silence_id: SilenceId, actor: Actor = Depends(operator), s=Depends(db_session)) -> dict:
    return silences.silence_dict(silences.expire(s, silence_id=silence_id))


@router.get("/api/alerts")
def list_alerts(
    s=Depends(db_session), status: str | None = None, monitor: str | None = None, limit: Limit = 200
) -> list[dict]:
    q = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if status:
        q = q.where(Alert.status == status)
    if monitor:
        q = q.where(Alert.monitor == monitor)
    return [alert_dict(a) for a in s.scalars(q)]


@router.get("/api/routes")
def routes(ws=Depends(workspace)) -> list[dict]:
    return [r.normalized() for r in sorted(ws.catalog().all("route").values(), key=lambda r: (r.order, r.name))]


class RouteTestBody(Body):
    labels: dict[str, str] = Field(description='e.g. {"monitor": "store_sales", "store": "SH-003", "severity": "P1"}')


@router.post("/api/routes/test", responses=errors(502))
def test_route(body: RouteTestBody, ws=Depends(workspace)) -> dict:
    """Who would get an alert with these labels, on which channels, with which escalation."""
    from metricloop.routing.service import resolve_route

    d = resolve_route(ws, ws.catalog(), body.labels, at=datetime.now(UTC))
    return {
        "routes": d.routes,
        "assignee": d.assignee,
        "team": d.team,
        "channels": d.channels,
        "escalation": d.escalation,
        "reasons": d.reasons,
    }


@router.get("/api/channels")
def channels(ws=Depends(workspace)) -> list[dict]:
    return [c.normalized() for c in ws.catalog().all("channel").values()]
