"""Incident serialisation shared by the API and the CLI."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.alerting.models import Alert
from metricloop.db.times import utc_iso
from metricloop.incidents.models import Incident, IncidentEvent

SEVERITY_COLOURS = {"P1": "red", "P2": "orange", "P3": "yellow"}


def _iso(t: datetime | None) -> str | None:
    """A metric-local time (bucket times): naive, as stored."""
    return t.isoformat() if t is not None else None


def incident_dict(inc: Incident) -> dict:
    return {
        "id": inc.id,
        "title": inc.title,
        "state": inc.state,
        "severity": inc.severity,
        "colour": SEVERITY_COLOURS.get(inc.severity, ""),
        "kind": inc.kind,
        "monitor": inc.monitor,
        "metric": inc.metric,
        "slices": inc.slices,
        "labels": inc.labels,
        "summary": inc.summary,
        "assignee": inc.assignee,
        "team": inc.team,
        "route": inc.route,
        "channels": inc.channels,
        "escalation_policy": inc.escalation_policy,
        "escalation_level": inc.escalation_level,
        "root_cause": inc.root_cause,
        "resolution": inc.resolution,
        "created_at": utc_iso(inc.created_at),
        "acknowledged_at": utc_iso(inc.acknowledged_at),
        "resolved_at": utc_iso(inc.resolved_at),
        "reviewed_at": utc_iso(inc.reviewed_at),
        "ack_due_at": utc_iso(inc.ack_due_at),
        "resolve_due_at": utc_iso(inc.resolve_due_at),
        "ack_breached": inc.ack_breached,
        "resolve_breached": inc.resolve_breached,
    }


def event_dict(e: IncidentEvent) -> dict:
    return {"id": e.id, "kind": e.kind, "actor": e.actor, "at": utc_iso(e.at), "message": e.message, "data": e.data}


def alert_dict(a: Alert) -> dict:
    return {
        "id": a.id,
        "fingerprint": a.fingerprint,
        "kind": a.kind,
        "monitor": a.monitor,
        "metric": a.metric,
        "slice": a.slice,
        "status": a.status,
        "muted_by": a.muted_by,
        "severity": a.severity,
        "count": a.count,
        "first_seen": _iso(a.first_seen),
        "last_seen": _iso(a.last_seen),
        "summary_zh": a.summary_zh,
        "summary_en": a.summary_en,
        "incident_id": a.incident_id,
        "labels": a.labels,
    }


def incident_detail(db_session: Session, inc: Incident) -> dict:
    from metricloop.notify.models import Notification
    from metricloop.notify.outbox import to_dict

    out = incident_dict(inc)
    events = db_session.scalars(
        select(IncidentEvent).where(IncidentEvent.incident_id == inc.id).order_by(IncidentEvent.at, IncidentEvent.id)
    )
    out["timeline"] = [event_dict(e) for e in events]
    out["alerts"] = [alert_dict(a) for a in db_session.scalars(select(Alert).where(Alert.incident_id == inc.id))]
    rows = db_session.scalars(select(Notification).where(Notification.incident_id == inc.id).order_by(Notification.id))
    out["notifications"] = [to_dict(n) for n in rows]
    from metricloop.rca.service import findings

    out["rca"] = findings(db_session, inc.id)
    return out


def list_incidents(
    db_session: Session,
    *,
    state: str | None = None,
    severity: str | None = None,
    assignee: str | None = None,
    metric: str | None = None,
    monitor: str | None = None,
    limit: int = 100,
    offset: int = 0,
    within: set[str] | None = None,
    team: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Incident]:
    """Newest first. `within`: only incidents of these metrics (a user's domains); None: all. `since` / `until`:
    opened in [since, until) (aware times)."""
    from metricloop.db.times import as_utc

    q = select(Incident).order_by(Incident.created_at.desc(), Incident.id.desc())
    if within is not None:
        q = q.where(Incident.metric.in_(sorted(within)))
    if since is not None:
        q = q.where(Incident.created_at >= as_utc(since))
    if until is not None:
        q = q.where(Incident.created_at < as_utc(until))
    for column, value in (
        (Incident.state, state),
        (Incident.severity, severity),
        (Incident.assignee, assignee),
        (Incident.metric, metric),
        (Incident.monitor, monitor),
        (Incident.team, team),
    ):
        if value:
            values = [v.strip() for v in value.split(",") if v.strip()]
            q = q.where(column.in_(values))
    return list(db_session.scalars(q.limit(limit).offset(offset)))
