"""The outbox: notifications and action calls written as rows in the caller's transaction.

A row is written together with the change that causes it (an incident opening, an escalation), so
a crash leaves both or neither. The dispatcher delivers rows later. Each row has a unique
idempotency key: queueing the same key twice gives one row, and every delivery carries the key so
that a receiver can drop the duplicates that at-least-once delivery can produce.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from metricloop.db.times import as_utc, aware, utcnow
from metricloop.errors import MetricloopError, NotFound
from metricloop.incidents.models import IncidentEvent
from metricloop.notify.models import OUTBOX_STATES, Notification

SYSTEM = "metricloop"
KINDS = ("notify", "action")


def _insert_ignoring_duplicate(db_session: Session, values: dict[str, Any]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING where the database has it; a savepoint elsewhere.

    Neither way aborts the caller's transaction when the key already exists (PostgreSQL would, on a
    plain failed INSERT).
    """
    dialect = db_session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = (
            insert(Notification)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(Notification.id)
        )
        return db_session.execute(stmt).scalar_one_or_none()
    try:
        with db_session.begin_nested():
            row = Notification(**values)
            db_session.add(row)
            db_session.flush()
            return row.id
    except IntegrityError:
        return None


def enqueue(
    db_session: Session,
    *,
    key: str,
    channel: str,
    event: str,
    recipient: str,
    incident_id: int | None = None,
    seq: int = 0,
    subject: str = "",
    body: str = "",
    payload: dict | None = None,
    language: str = "zh",
    kind: str = "notify",
    status: str = "pending",
    max_attempts: int = 8,
) -> Notification | None:
    """Queue one message in the caller's transaction (no commit). None if the key is already queued."""
    if not key:
        raise MetricloopError("a notification needs an idempotency key")
    if len(key) > 200:
        raise MetricloopError(f"idempotency key is longer than 200 characters: {key[:60]}…")
    if kind not in KINDS:
        raise MetricloopError(f"unknown outbox kind '{kind}' (known: {', '.join(KINDS)})")
    if status not in ("pending", "awaiting_approval"):
        raise MetricloopError(f"a new outbox row is pending or awaiting_approval, not '{status}'")
    db_session.flush()  # the caller's pending rows (e.g. the incident) first
    if db_session.scalar(select(Notification.id).where(Notification.idempotency_key == key)) is not None:
        return None
    now = utcnow()
    new_id = _insert_ignoring_duplicate(
        db_session,
        {
            "idempotency_key": key,
            "kind": kind,
            "incident_id": incident_id,
            "event": event,
            "seq": seq,
            "channel": channel,
            "recipient": recipient,
            "language": language,
            "subject": subject,
            "body": body,
            "payload": payload or {},
            "status": status,
            "attempts": 0,
            "max_attempts": max_attempts,
            "next_attempt_at": now,
            "locked_by": "",
            "locked_until": None,
            "lease_token": "",
            "last_error": "",
            "approved_by": "",
            "created_at": now,
            "sent_at": None,
        },
    )
    return None if new_id is None else db_session.get(Notification, new_id)


def get(db_session: Session, notification_id: int) -> Notification:
    row = db_session.get(Notification, notification_id)
    if row is None:
        raise NotFound(f"no outbox row #{notification_id}")
    return row


def list_notifications(
    db_session: Session,
    *,
    status: str | None = None,
    incident_id: int | None = None,
    kind: str | None = None,
    channel: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Notification]:
    """Newest first."""
    if status is not None and status not in OUTBOX_STATES:
        raise MetricloopError(f"unknown outbox status '{status}' (known: {', '.join(OUTBOX_STATES)})")
    q = select(Notification)
    if status is not None:
        q = q.where(Notification.status == status)
    if incident_id is not None:
        q = q.where(Notification.incident_id == incident_id)
    if kind is not None:
        q = q.where(Notification.kind == kind)
    if channel is not None:
        q = q.where(Notification.channel == channel)
    q = q.order_by(Notification.id.desc()).limit(limit).offset(offset)
    return list(db_session.scalars(q))


def counts(db_session: Session) -> dict[str, int]:
    """Rows per status, every status present (0 when none)."""
    rows = db_session.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
    return {s: 0 for s in OUTBOX_STATES} | {s: n for s, n in rows}


def timeline(
    db_session: Session, row: Notification, kind: str, message: str, *, actor: str = SYSTEM, at=None, **data
) -> None:
    """A line on the row's incident timeline (rows without an incident have none)."""
    if row.incident_id is None:
        return
    db_session.add(
        IncidentEvent(
            incident_id=row.incident_id,
            kind=kind,
            actor=actor,
            at=at or utcnow(),
            message=message,
            data={"outbox_id": row.id, "channel": row.channel, "event": row.event, **data},
        )
    )


def retry(db_session: Session, *, notification_id: int, actor: str, now: datetime | None = None) -> Notification:
    """Send a dead-lettered row again: dead → pending, with a fresh set of attempts."""
    now = as_utc(now)
    row = get(db_session, notification_id)
    result = db_session.execute(
        update(Notification)
        .where(Notification.id == row.id, Notification.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=now, locked_by="", locked_until=None, lease_token="")
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db_session.refresh(row)
        raise MetricloopError(f"outbox row #{row.id} is {row.status}; only a dead row can be retried")
    db_session.refresh(row)
    timeline(
        db_session,
        row,
        "notify_retried",
        f"{actor} asked to send to {row.recipient} via {row.channel} again",
        actor=actor,
        at=now,
    )
    return row


def cancel(
    db_session: Session, *, incident_id: int, events: tuple[str, ...] | None = None, kind: str = "notify"
) -> int:
    """Cancel an incident's rows that have not been sent (e.g. queued escalations after an ack)."""
    q = (
        update(Notification)
        .where(
            Notification.incident_id == incident_id,
            Notification.kind == kind,
            Notification.status.in_(("pending", "awaiting_approval")),
        )
        .values(status="cancelled", locked_by="", locked_until=None, lease_token="")
        .execution_options(synchronize_session=False)
    )
    if events:
        q = q.where(Notification.event.in_(events))
    return db_session.execute(q).rowcount


def to_dict(row: Notification, *, full: bool = False) -> dict:
    """What the API and CLI show. Secrets are never in a row (only ${ENV} references)."""
    out = {
        "id": row.id,
        "idempotency_key": row.idempotency_key,
        "kind": row.kind,
        "incident_id": row.incident_id,
        "event": row.event,
        "seq": row.seq,
        "channel": row.channel,
        "recipient": row.recipient,
        "language": row.language,
        "subject": row.subject,
        "status": row.status,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "next_attempt_at": _iso(row.next_attempt_at),
        "locked_by": row.locked_by,
        "locked_until": _iso(row.locked_until),
        "last_error": row.last_error,
        "approved_by": row.approved_by,
        "created_at": _iso(row.created_at),
        "sent_at": _iso(row.sent_at),
    }
    if full:
        from metricloop.notify.links import redact

        # rows hold placeholder tokens (signed only on delivery); rows queued by older versions are redacted
        out["body"] = redact(row.body)
        out["payload"] = redact(row.payload)
    return out


def _iso(t: datetime | None) -> str | None:
    t = aware(t)
    return t.isoformat() if t is not None else None
