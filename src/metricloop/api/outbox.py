"""/api/outbox: every notification and action call, its attempts and its fate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from metricloop.api.contract import errors
from metricloop.api.deps import Actor, db_session, operator, viewer
from metricloop.api.params import Body, IdFilter, Limit, NotificationId, Offset
from metricloop.limits import MAX_TEXT
from metricloop.notify import actions, outbox

router = APIRouter(prefix="/api/outbox", tags=["outbox"], dependencies=[Depends(viewer)])


@router.get("")
def list_outbox(
    s=Depends(db_session),
    status: Annotated[str | None, Query(description="awaiting_approval, pending, sending, sent, dead, …")] = None,
    incident: IdFilter = None,
    kind: Annotated[str | None, Query(description="notify or action")] = None,
    channel: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict]:
    rows = outbox.list_notifications(
        s, status=status, incident_id=incident, kind=kind, channel=channel, limit=limit, offset=offset
    )
    return [outbox.to_dict(r) for r in rows]


@router.get("/counts")
def outbox_counts(s=Depends(db_session)) -> dict[str, int]:
    return outbox.counts(s)


@router.get("/{notification_id}")
def get_outbox(notification_id: NotificationId, s=Depends(db_session)) -> dict:
    return outbox.to_dict(outbox.get(s, notification_id), full=True)


@router.post("/{notification_id}/retry")
def retry(notification_id: NotificationId, actor: Actor = Depends(operator), s=Depends(db_session)) -> dict:
    return outbox.to_dict(outbox.retry(s, notification_id=notification_id, actor=actor.name))


class RejectBody(Body):
    reason: str = Field("", max_length=MAX_TEXT)


@router.post("/{notification_id}/approve", responses=errors(409))
def approve(notification_id: NotificationId, actor: Actor = Depends(operator), s=Depends(db_session)) -> dict:
    """Let an action that waits for approval go out (the approver must be allowed by the action)."""
    return outbox.to_dict(actions.approve_action(s, notification_id=notification_id, actor=actor.name))


@router.post("/{notification_id}/reject", responses=errors(409))
def reject(
    notification_id: NotificationId,
    body: RejectBody | None = None,
    actor: Actor = Depends(operator),
    s=Depends(db_session),
) -> dict:
    row = actions.reject_action(
        s, notification_id=notification_id, actor=actor.name, reason=body.reason if body else ""
    )
    return outbox.to_dict(row)
