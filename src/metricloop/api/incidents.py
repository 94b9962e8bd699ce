"""/api/incidents: the work orders (工单) — list, detail with timeline, and their flows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from metricloop.api.deps import Actor, db_session, operator, viewer, workspace
from metricloop.incidents import service
from metricloop.incidents.views import incident_detail, incident_dict, list_incidents
from metricloop.limits import MAX_TEXT

router = APIRouter(prefix="/api/incidents", tags=["incidents"])
# Reads need a token per route (not for the whole router): the signed message links on the same paths
# (metricloop.web.links) carry their own permission.
READ = [Depends(viewer)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssignBody(_Body):
    assignee: str = Field(min_length=1, description="person (email) who owns the incident from now on")
    team: str | None = None


class CommentBody(_Body):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class ResolveBody(_Body):
    root_cause: str = Field(
        min_length=1, max_length=MAX_TEXT, description="what caused it, e.g. 'stock-out of Fresh at SH-003'"
    )
    note: str = Field("", max_length=MAX_TEXT, description="what was done")


class ReasonBody(_Body):
    reason: str = Field("", max_length=MAX_TEXT)


class ReviewBody(_Body):
    note: str = Field("", max_length=MAX_TEXT)


@router.get("", dependencies=READ)
def incidents(
    s=Depends(db_session),
    state: Annotated[
        str | None, Query(description="triggered, acknowledged, resolved, reviewed (comma-separated)")
    ] = None,
    severity: Annotated[str | None, Query(description="P1, P2, P3")] = None,
    assignee: str | None = None,
    metric: str | None = None,
    monitor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    rows = list_incidents(
        s, state=state, severity=severity, assignee=assignee, metric=metric, monitor=monitor, limit=limit, offset=offset
    )
    return [incident_dict(r) for r in rows]


@router.get("/kpis", dependencies=READ)
def kpis(s=Depends(db_session)) -> dict:
    """MTTA and MTTR in seconds, counts by state, SLA breaches."""
    return service.kpis(s)


@router.get("/{incident_id}", dependencies=READ)
def incident(incident_id: int, s=Depends(db_session)) -> dict:
    return incident_detail(s, service.get(s, incident_id))


@router.post("/{incident_id}/ack")
def ack(incident_id: int, actor: Actor = Depends(operator), ws=Depends(workspace), s=Depends(db_session)) -> dict:
    return incident_dict(service.acknowledge(s, ws, ws.catalog(), incident_id=incident_id, actor=actor.name))


@router.post("/{incident_id}/assign")
def assign(
    incident_id: int, body: AssignBody, actor: Actor = Depends(operator), ws=Depends(workspace), s=Depends(db_session)
) -> dict:
    inc = service.assign(
        s, ws, ws.catalog(), incident_id=incident_id, assignee=body.assignee, team=body.team, actor=actor.name
    )
    return incident_dict(inc)


@router.post("/{incident_id}/comment")
def comment(incident_id: int, body: CommentBody, actor: Actor = Depends(operator), s=Depends(db_session)) -> dict:
    return incident_dict(service.comment(s, incident_id=incident_id, actor=actor.name, text=body.text))


@router.post("/{incident_id}/resolve")
def resolve(
    incident_id: int, body: ResolveBody, actor: Actor = Depends(operator), ws=Depends(workspace), s=Depends(db_session)
) -> dict:
    inc = service.resolve(
        s, ws, ws.catalog(), incident_id=incident_id, actor=actor.name, root_cause=body.root_cause, note=body.note
    )
    return incident_dict(inc)


@router.post("/{incident_id}/reopen")
def reopen(
    incident_id: int, body: ReasonBody, actor: Actor = Depends(operator), ws=Depends(workspace), s=Depends(db_session)
) -> dict:
    return incident_dict(
        service.reopen(s, ws, ws.catalog(), incident_id=incident_id, actor=actor.name, reason=body.reason)
    )


@router.post("/{incident_id}/review")
def review(incident_id: int, body: ReviewBody, actor: Actor = Depends(operator), s=Depends(db_session)) -> dict:
    return incident_dict(service.review(s, incident_id=incident_id, actor=actor.name, note=body.note))
