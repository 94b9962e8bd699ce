"""Pausing a monitor from the console: its scheduled runs stop until someone resumes it.

A pause is not a definition change (the monitor's `enabled: false` is, and takes an apply): it is an operator's
act during an incident or a data migration, kept as a row per pause and per resume, with who, when and why. The
newest row of a monitor says whether it is paused now; the rows are its record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from metricloop.db.models import Base, utcnow
from metricloop.errors import MetricloopError

MAX_REASON = 2000


class AlreadyThere(MetricloopError):
    """Pausing a paused monitor, or resuming a running one."""

    status_code = 409


class MonitorPause(Base):
    __tablename__ = "monitor_pauses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    monitor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(8))  # pause | resume
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def latest(db_session: Session, monitor: str) -> MonitorPause | None:
    return db_session.scalar(
        select(MonitorPause).where(MonitorPause.monitor == monitor).order_by(MonitorPause.id.desc()).limit(1)
    )


def is_paused(db_session: Session, monitor: str) -> bool:
    row = latest(db_session, monitor)
    return row is not None and row.action == "pause"


def paused_monitors(db_session: Session) -> set[str]:
    """Every monitor whose newest row is a pause (one query, for the scheduler and the monitor list)."""
    newest: dict[str, str] = {}
    for name, action in db_session.execute(select(MonitorPause.monitor, MonitorPause.action).order_by(MonitorPause.id)):
        newest[name] = action
    return {name for name, action in newest.items() if action == "pause"}


def history(db_session: Session, monitor: str, limit: int = 50) -> list[MonitorPause]:
    return list(
        db_session.scalars(
            select(MonitorPause).where(MonitorPause.monitor == monitor).order_by(MonitorPause.id.desc()).limit(limit)
        )
    )


def set_paused(db_session: Session, *, monitor: str, paused: bool, actor: str, reason: str = "") -> MonitorPause:
    """Pause or resume; refused when it already is (a second click says so instead of writing a row)."""
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise MetricloopError(f"the reason is {len(reason)} characters long, at most {MAX_REASON}", where="reason")
    if is_paused(db_session, monitor) == paused:
        raise AlreadyThere(f"monitor '{monitor}' is already {'paused' if paused else 'running'}", where="monitor")
    row = MonitorPause(monitor=monitor, action="pause" if paused else "resume", actor=actor, reason=reason)
    db_session.add(row)
    db_session.flush()
    return row
