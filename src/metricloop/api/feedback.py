"""/api/feedback, /api/incidents/{id}/feedback and /api/quality: labels people give, and what they say about
the alerts. Labels need an operator (or admin) token, to give and to list; viewers get 403. Metric domains hold
as on the incident routes: what is outside the caller's domains does not exist for them (404)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from sqlalchemy import select

from metricloop.alerting.models import Alert
from metricloop.api.contract import errors
from metricloop.api.deps import Actor, check_metric, db_session, metric_scope, operator, viewer, workspace
from metricloop.api.incidents import visible
from metricloop.api.params import Body, IdFilter, IncidentId, Limit, Moment, Offset
from metricloop.errors import NotFound
from metricloop.feedback import flows
from metricloop.feedback.models import CAUSES, LABELS, Feedback
from metricloop.feedback.quality import BY, quality
from metricloop.feedback.service import label_of
from metricloop.limits import MAX_TEXT

router = APIRouter(tags=["feedback"])

Label = Literal["confirmed", "false_alarm", "expected", "new_normal", "missed"]


class _Give(Body):
    label: str = Field(description=f"one of: {', '.join(LABELS)}")
    cause: str | None = Field(None, description=f"expected only: {', '.join(CAUSES)} (default other)")
    note: str = Field("", max_length=MAX_TEXT)
    since: Moment | None = Field(None, description="new_normal: the first bucket of the new level (metric-local)")
    add_to_calendar: bool = Field(False, description="expected + promotion/known_event: add the calendar event")
    event_name: str | None = Field(None, max_length=200, description="the calendar event's name")


class IncidentFeedback(_Give):
    pass


class FeedbackBody(_Give):
    alert_id: int | None = Field(None, ge=1, le=2**31 - 1)
    incident_id: int | None = Field(None, ge=1, le=2**31 - 1)
    monitor: str | None = Field(None, max_length=200)
    metric: str | None = Field(None, max_length=200)
    slice: str | None = Field(None, max_length=500, description="e.g. region=North,store=BJ-2; * = every series")
    start: Moment | None = Field(None, description="a range's first bucket (metric-local)")
    end: Moment | None = Field(None, description="a range's last bucket, inclusive (default: start)")


def _give(s, ws, actor: Actor, body: _Give, **target) -> dict:
    given = flows.give(
        s,
        ws,
        ws.catalog(),
        label=body.label,
        cause=body.cause,
        note=body.note,
        actor=actor.name,
        via="api",
        add_to_calendar=body.add_to_calendar,
        event_name=body.event_name,
        **target,
    )
    return given.to_dict()


@router.post("/api/incidents/{incident_id}/feedback", responses=errors(404, 422))
def incident_feedback(
    incident_id: IncidentId,
    body: IncidentFeedback,
    actor: Actor = Depends(operator),
    ws=Depends(workspace),
    s=Depends(db_session),
) -> dict:
    """Label every alert of the incident (confirmed, false_alarm, expected, new_normal); shown on its timeline."""
    visible(s, ws, actor, incident_id)
    return _give(s, ws, actor, body, incident_id=incident_id, start=body.since)


@router.post("/api/feedback", responses=errors(404, 422))
def give_feedback(
    body: FeedbackBody, actor: Actor = Depends(operator), ws=Depends(workspace), s=Depends(db_session)
) -> dict:
    """A label on an alert (alert_id), an incident (incident_id), or a range of a series (monitor or metric, slice,
    start, end): e.g. `missed` where an alert should have been."""
    if body.incident_id is not None:
        visible(s, ws, actor, body.incident_id)
    elif body.alert_id is not None:
        a = s.get(Alert, body.alert_id)
        allowed = metric_scope(ws, actor)
        if a is None or (allowed is not None and a.metric not in allowed):  # outside the domains: not there
            raise NotFound(f"no alert #{body.alert_id}", where="alert_id")
    else:
        metric = body.metric or (ws.catalog().get("monitor", body.monitor).metric if body.monitor else None)
        if metric:
            check_metric(ws, actor, ws.catalog().metric(metric).name)
    start = body.since if body.label == "new_normal" and body.start is None else body.start
    return _give(
        s,
        ws,
        actor,
        body,
        alert_id=body.alert_id,
        incident_id=body.incident_id,
        monitor=body.monitor,
        metric=body.metric,
        slice_=body.slice,
        start=start,
        end=body.end,
    )


@router.get("/api/feedback")
def list_feedback(
    actor: Actor = Depends(operator),
    ws=Depends(workspace),
    s=Depends(db_session),
    monitor: str | None = None,
    metric: str | None = None,
    label: Annotated[Label | None, Query(description="only this label")] = None,
    incident_id: IdFilter = None,
    alert_id: IdFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict]:
    """Every label stored, newest first, with `standing`: false where a later label on the same target replaced it
    (both are kept)."""
    from metricloop.feedback.service import effective_labels

    q = select(Feedback)
    for col, value in (
        ("monitor", monitor),
        ("metric", metric),
        ("label", label),
        ("incident_id", incident_id),
        ("alert_id", alert_id),
    ):
        if value is not None:
            q = q.where(getattr(Feedback, col) == value)
    allowed = metric_scope(ws, actor)
    if allowed is not None:
        q = q.where(Feedback.metric.in_(sorted(allowed)))
    rows = list(s.scalars(q.order_by(Feedback.created_at.desc(), Feedback.id.desc()).offset(offset).limit(limit)))
    labels = [label_of(r) for r in rows]
    # standing is judged against every label of the same targets, not only this page
    every = [label_of(r) for r in s.scalars(select(Feedback).where(Feedback.metric.in_({r.metric for r in rows})))]
    standing = {lab.id for lab in effective_labels(every)}
    return [
        {**flows.label_dict(lab), "note": r.note, "via": r.via, "effects": r.effects, "standing": lab.id in standing}
        for lab, r in zip(labels, rows, strict=True)
    ]


@router.get("/api/quality", responses=errors(422))
def quality_kpis(
    actor: Actor | None = Depends(viewer),
    ws=Depends(workspace),
    s=Depends(db_session),
    by: Annotated[Literal["monitor", "metric", "team", "owner"], Query(description=" | ".join(BY))] = "monitor",
    days: Annotated[int, Query(ge=1, le=3660, description="the window: the last N days")] = 90,
) -> dict:
    """Precision (confirmed ÷ labelled), false alarms, missed reports, alerts per series per month, labelled
    share, MTTA and MTTR against SLA — per monitor, metric, team or owner."""
    return quality(s, ws.catalog(), by=by, days=days, within=metric_scope(ws, actor))
