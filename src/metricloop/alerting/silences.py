"""Silences: created at run time with matchers, an expiry and a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.alerting.matchers import parse_matchers
from metricloop.alerting.models import Silence
from metricloop.db.times import as_utc
from metricloop.errors import InvalidInput, MetricloopError, NotFound
from metricloop.limits import check_text


def create(
    db_session: Session,
    *,
    matchers: list[str],
    reason: str,
    created_by: str,
    ends_at: datetime | None = None,
    duration: timedelta | None = None,
    starts_at: datetime | None = None,
) -> Silence:
    check_text(reason, "reason")
    try:
        parse_matchers(matchers)
    except ValueError as e:
        raise InvalidInput(str(e), where="matchers") from None
    if not matchers:
        raise MetricloopError("a silence needs at least one matcher (it would mute everything)", where="matchers")
    if not reason.strip():
        raise MetricloopError("say why (a reason is required)", where="reason")
    start = as_utc(starts_at) if starts_at is not None else datetime.now(UTC)
    if ends_at is None:
        if duration is None:
            raise MetricloopError("give ends_at or a duration", where="ends_at")
        ends_at = start + duration
    ends_at = as_utc(ends_at)  # SQLite keeps only the wall-clock time: store UTC
    if ends_at <= start:
        raise MetricloopError("the silence would end before it starts", where="ends_at")
    row = Silence(matchers=matchers, reason=reason, created_by=created_by, starts_at=start, ends_at=ends_at)
    db_session.add(row)
    db_session.flush()
    return row


def expire(db_session: Session, *, silence_id: int) -> Silence:
    row = db_session.get(Silence, silence_id)
    if row is None:
        raise NotFound(f"no silence #{silence_id}")
    row.expired_early_at = row.expired_early_at or datetime.now(UTC)
    return row


def list_silences(db_session: Session, *, active_only: bool = False) -> list[Silence]:
    q = select(Silence).order_by(Silence.id.desc())
    if active_only:
        now = datetime.now(UTC)
        q = q.where(Silence.ends_at > now, Silence.expired_early_at.is_(None))
    return list(db_session.scalars(q))


def silence_dict(s: Silence) -> dict:
    return {
        "id": s.id,
        "matchers": s.matchers,
        "reason": s.reason,
        "created_by": s.created_by,
        "starts_at": as_utc(s.starts_at).isoformat(),
        "ends_at": as_utc(s.ends_at).isoformat(),
        "expired_early_at": as_utc(s.expired_early_at).isoformat() if s.expired_early_at else None,
    }
