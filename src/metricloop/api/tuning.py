"""/api/monitors/{name}/tuning: the monitor's tuning suggestion, and computing, applying, approving or rejecting one."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from metricloop.api.contract import errors
from metricloop.api.deps import Actor, check_metric, db_session, operator, viewer, workspace
from metricloop.api.params import Body
from metricloop.auth.service import require
from metricloop.tuning import service

router = APIRouter(tags=["monitors"], dependencies=[Depends(viewer)])


class TuningBody(Body):
    action: Literal["compute", "apply", "approve", "reject"] = Field(
        "compute",
        description="compute: backtest and store a new suggestion (it waits for approval); apply: compute and "
        "apply at once, or apply `suggestion` (admin); approve: apply the open suggestion, or `suggestion` (admin); "
        "reject: reject it",
    )
    budget: float | str | None = Field(None, description="alerts per series per month, e.g. 2 or '2/series/month'")
    suggestion: int | None = Field(None, ge=1, le=2**31 - 1, description="the suggestion to act on (default: the "
                                   "open one)")
    note: str = Field("", max_length=2000, description="why (reject)")


@router.get("/api/monitors/{name}/tuning")
def tuning(name: str, ws=Depends(workspace), s=Depends(db_session), actor: Actor | None = Depends(viewer)) -> dict:
    """The monitor's open suggestion (else its latest) with its before/after; 404 when none was computed."""
    check_metric(ws, actor, ws.catalog().get("monitor", name).metric, "monitor", name)
    return service.suggestion_dict(service.get_suggestion(s, name))


@router.post("/api/monitors/{name}/tuning", responses=errors(409, 502))
async def tune(name: str, body: TuningBody | None = None, actor: Actor = Depends(operator), ws=Depends(workspace)):
    """Compute a suggestion (operator), apply or approve one (admin: a new monitor version, undone by rollback;
    refused with 409 and the diff when the monitor changed since it was computed), or reject one (operator)."""
    body = body or TuningBody()
    check_metric(ws, actor, ws.catalog().get("monitor", name).metric, "monitor", name)
    if body.action in ("apply", "approve"):
        require(actor.token, actor.role, "admin")
    budget = service.parse_budget(body.budget, where="budget")
    if body.action in ("approve", "reject") or (body.action == "apply" and body.suggestion is not None):
        if body.action == "reject":
            row = await run_in_threadpool(service.reject_suggestion, ws, name, actor=actor.name,
                                          suggestion_id=body.suggestion, note=body.note)
        else:
            row = await run_in_threadpool(service.apply_suggestion, ws, name, actor=actor.name,
                                          suggestion_id=body.suggestion)
        return service.suggestion_dict(row)
    row, _ = await run_in_threadpool(lambda: service.suggest(ws, name, budget=budget, actor=actor.name))
    if body.action == "apply" and row.status == "open":
        row = await run_in_threadpool(service.apply_suggestion, ws, name, actor=actor.name, suggestion_id=row.id)
    return service.suggestion_dict(row)
