"""/api/incidents: the work orders (工单) — list, detail with timeline, and their flows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from metricloop.api.contract import errors
from metricloop.api.deps import Actor, db_session, metric_scope, operator, viewer, workspace
from metricloop.api.params import Body, IncidentId, Limit, Offset
from metricloop.incidents import service
from metricloop.incidents.views import incident_detail, incident_dict, incident_query, incidents_json
from metricloop.limits import MAX_TEXT

router = APIRouter(prefix="/api/incidents", tags=["incidents"])
# Reads need a token per route (not for the whole router): the signed message links on the same paths
# (metricloop.web.links) carry their own permission.
READ = [Depends(viewer)]


def visible(s, ws, actor: Actor | None, incident_id: int):
    """The incident, if it is inside the actor's domains; else it does not exist for them (404)."""
    from metricloop.errors import NotFound

    inc = service.get(s, incident_id)
    allowed = metric_scope(ws, actor)
    if allowed is not None and inc.metric not in allowed:
        raise NotFound(f"no incident #{incident_id}")
    return inc


class _Body(Body):
    pass


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
    category: str | None = Field(
        None, max_length=200, description="root-cause category (GET /api/knowledge/categories); left out: the one "
        "the root cause's words point at, else 'other'",
    )
    actions: str = Field("", max_length=MAX_TEXT, description="the actions that worked (default: the note)")


class ReasonBody(_Body):
    reason: str = Field("", max_length=MAX_TEXT)


class ReviewBody(_Body):
    note: str = Field("", max_length=MAX_TEXT)


@router.get("", response_model=list[dict])
async def incidents(
    ws=Depends(workspace),
    actor: Actor | None = Depends(viewer),
    state: Annotated[
        str | None, Query(description="triggered, acknowledged, resolved, reviewed (comma-separated)")
    ] = None,
    severity: Annotated[str | None, Query(description="P1, P2, P3")] = None,
    assignee: str | None = None,
    metric: str | None = None,
    monitor: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    def read() -> bytes:  # one trip to the thread pool for the whole read (see api/deps.py)
        with ws.db.session() as s:
            query = incident_query(
                state=state, severity=severity, assignee=assignee, metric=metric, monitor=monitor, limit=limit,
                offset=offset, within=metric_scope(ws, actor),
            )
            return incidents_json(s, query)

    # Already JSON (the schema above is still what OpenAPI shows): no second validation and encoding of the page.
    return Response(await run_in_threadpool(read), media_type="application/json")


@router.get("/kpis", dependencies=READ)
def kpis(s=Depends(db_session)) -> dict:
    """MTTA and MTTR in seconds, counts by state, SLA breaches."""
    return service.kpis(s)


@router.get("/{incident_id}")
def incident(
    incident_id: IncidentId, s=Depends(db_session), ws=Depends(workspace), actor: Actor | None = Depends(viewer)
) -> dict:
    from metricloop.knowledge.views import knowledge_detail

    inc = visible(s, ws, actor, incident_id)
    return incident_detail(s, inc) | knowledge_detail(s, ws, inc, within=metric_scope(ws, actor))


@router.get("/{incident_id}/rca")
def incident_rca(
    incident_id: IncidentId, s=Depends(db_session), ws=Depends(workspace), actor: Actor | None = Depends(viewer)
) -> dict:
    """The incident's root causes and related metrics (its latest analysis: when it opened or last grew worse)."""
    from metricloop.rca.service import findings

    inc = visible(s, ws, actor, incident_id)
    return {"incident_id": inc.id, **findings(s, inc.id)}


@router.post("/{incident_id}/ack", responses=errors(409))
def ack(
    incident_id: IncidentId, actor: Actor = Depends(operator), ws=Depends(workspace), s=Depends(db_session)
) -> dict:
    visible(s, ws, actor, incident_id)
    return incident_dict(service.acknowledge(s, ws, ws.catalog(), incident_id=incident_id, actor=actor.name))


@router.post("/{incident_id}/assign", responses=errors(409))
def assign(
    incident_id: IncidentId,
    body: AssignBody,
    actor: Actor = Depends(operator),
    ws=Depends(workspace),
    s=Depends(db_session),
) -> dict:
    visible(s, ws, actor, incident_id)
    inc = service.assign(
        s, ws, ws.catalog(), incident_id=incident_id, assignee=body.assignee, team=body.team, actor=actor.name
    )
    return incident_dict(inc)


@router.post("/{incident_id}/comment")
def comment(
    incident_id: IncidentId, body: CommentBody, actor: Actor = Depends(operator), ws=Depends(workspace),
    s=Depends(db_session),
) -> dict:
    visible(s, ws, actor, incident_id)
    return incident_dict(service.comment(s, incident_id=incident_id, actor=actor.name, text=body.text))


@router.post("/{incident_id}/resolve", responses=errors(409))
def resolve(
    incident_id: IncidentId,
    body: ResolveBody,
    actor: Actor = Depends(operator),
    ws=Depends(workspace),
    s=Depends(db_session),
) -> dict:
    visible(s, ws, actor, incident_id)
    inc = service.resolve(
        s, ws, ws.catalog(), incident_id=incident_id, actor=actor.name, root_cause=body.root_cause, note=body.note,
        category=body.category, actions=body.actions,
    )
    return incident_dict(inc)


@router.post("/{incident_id}/reopen", responses=errors(409))
def reopen(
    incident_id: IncidentId,
    body: ReasonBody,
    actor: Actor = Depends(operator),
    ws=Depends(workspace),
    s=Depends(db_session),
) -> dict:
    visible(s, ws, actor, incident_id)
    return incident_dict(
        service.reopen(s, ws, ws.catalog(), incident_id=incident_id, actor=actor.name, reason=body.reason)
    )


@router.post("/{incident_id}/review", responses=errors(409))
def review(
    incident_id: IncidentId, body: ReviewBody, actor: Actor = Depends(operator), ws=Depends(workspace),
    s=Depends(db_session),
) -> dict:
    visible(s, ws, actor, incident_id)
    return incident_dict(service.review(s, incident_id=incident_id, actor=actor.name, note=body.note))
