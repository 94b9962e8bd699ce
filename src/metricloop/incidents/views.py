"""Incident serialisation shared by the API and the CLI."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache

from sqlalchemy import Select, Text, cast, literal_column, select
from sqlalchemy.orm import Session

from metricloop.alerting.models import Alert
from metricloop.db.times import utc_iso
from metricloop.incidents.models import Incident, IncidentEvent

SEVERITY_COLOURS = {"P1": "red", "P2": "orange", "P3": "yellow"}


def _iso(t: datetime | None) -> str | None:
    """A metric-local time (bucket times): naive, as stored."""
    return t.isoformat() if t is not None else None


JSON_FIELDS = ("slices", "labels", "summary", "channels")
"""The incident's JSON columns: the list reads them as the stored JSON text and splices it in (`incidents_json`)."""
_encode = json.JSONEncoder(ensure_ascii=False).encode  # built once: json.dumps with options builds one per call
_TIMES = ("created_at", "acknowledged_at", "resolved_at", "reviewed_at", "ack_due_at", "resolve_due_at")
_LIST_COLUMNS = (
    "id", "title", "state", "severity", "kind", "monitor", "metric", "assignee", "team", "route", "escalation_policy",
    "escalation_level", "root_cause", "resolution", *_TIMES, "ack_breached", "resolve_breached",
)  # fmt: skip


def _scalar_fields(inc) -> dict:
    """Every field of the incident's dict but the JSON columns. `inc` is an Incident or a row with its columns."""
    return {
        "id": inc.id,
        "title": inc.title,
        "state": inc.state,
        "severity": inc.severity,
        "colour": SEVERITY_COLOURS.get(inc.severity, ""),
        "kind": inc.kind,
        "monitor": inc.monitor,
        "metric": inc.metric,
        "assignee": inc.assignee,
        "team": inc.team,
        "route": inc.route,
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
        "ack_breached": bool(inc.ack_breached),
        "resolve_breached": bool(inc.resolve_breached),
    }


def incident_dict(inc: Incident) -> dict:
    out = _scalar_fields(inc)
    for name in JSON_FIELDS:
        out[name] = getattr(inc, name)
    return out


def incidents_json(db_session: Session, query: Select) -> bytes:
    """The JSON array of `incident_dict` for the incidents `query` (a `select(Incident)`, e.g. from
    `incident_query`) selects, built without loading ORM objects or decoding the JSON columns only to encode them
    again. On SQLite the database writes each object (`json_object`, in C); elsewhere the stored JSON text is
    spliced into each encoded row. A list page of 100 costs a fifth of the CPU it did (bench/api_load.py
    --incidents 200); tests/test_incident_list_json.py holds both to `incident_dict`."""
    bind = db_session.get_bind()
    if bind.dialect.name == "sqlite":
        rows = db_session.execute(
            query.with_only_columns(literal_column(_sqlite_object_sql(bind.dialect))).select_from(Incident.__table__)
        )
        return ("[" + ", ".join(text for (text,) in rows) + "]").encode()
    table = Incident.__table__.c
    columns = [table[name] for name in _LIST_COLUMNS] + [cast(table[name], Text).label(name) for name in JSON_FIELDS]
    times = [i for i, name in enumerate(_LIST_COLUMNS) if name in _TIMES]
    parts = []
    for row in db_session.execute(query.with_only_columns(*columns)):
        values = list(row)
        for i in times:
            values[i] = utc_iso(values[i])
        head = dict(zip(_LIST_COLUMNS, values[: len(_LIST_COLUMNS)], strict=True))
        head["colour"] = SEVERITY_COLOURS.get(head["severity"], "")
        raw = values[len(_LIST_COLUMNS):]
        parts.append(_encode(head)[:-1]
                     + "".join(f', "{name}": {text or "null"}' for name, text in zip(JSON_FIELDS, raw, strict=True))
                     + "}")
    return ("[" + ", ".join(parts) + "]").encode()


@cache
def _sqlite_object_sql(dialect) -> str:
    """`_sqlite_object` compiled once: as an expression, SQLAlchemy would walk its ~150 parts for a cache key on
    every execution, which cost more than the query."""
    return str(_sqlite_object().compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _sqlite_object():
    """`incident_dict` as one SQLite `json_object(…)` expression. SQLite keeps a moment as the text
    'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), which becomes `utc_iso`'s form: the fraction only when it is not zero."""
    from sqlalchemy import case, func, literal

    c = Incident.__table__.c

    def moment(col):
        whole = func.substr(col, 1, 10) + "T" + func.substr(col, 12, 8)
        fraction = case((func.substr(col, 21, 6) == "000000", ""), else_=func.substr(col, 20, 7))
        return case((col.is_(None), None), else_=whole + fraction + "+00:00")

    def flag(col):
        return func.json(case((col == literal(True), "true"), else_="false"))

    pairs = []
    for name in _LIST_COLUMNS:
        value = moment(c[name]) if name in _TIMES else flag(c[name]) if name.endswith("_breached") else c[name]
        pairs += [literal(name), value]
    pairs += [literal("colour"), case(*((c.severity == k, v) for k, v in SEVERITY_COLOURS.items()), else_="")]
    for name in JSON_FIELDS:
        pairs += [literal(name), func.json(c[name])]
    return func.json_object(*pairs)


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


def incident_query(
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
) -> Select:
    """The select of incidents, newest first. `within`: only incidents of these metrics (a user's domains);
    None: all. `since` / `until`: opened in [since, until) (aware times)."""
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
    return q.limit(limit).offset(offset)


def list_incidents(db_session: Session, **filters) -> list[Incident]:
    """The incidents `incident_query(**filters)` selects, newest first."""
    return list(db_session.scalars(incident_query(**filters)))
