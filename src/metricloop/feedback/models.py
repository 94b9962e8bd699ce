"""The feedback table: one row per label a person gave. Rows are never updated or deleted; a later label on the
same target supersedes an earlier one when read (see service.labels_for_monitor), and both stay stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from metricloop.db.models import Base, utcnow

LABELS = ("confirmed", "false_alarm", "expected", "new_normal", "missed")
CAUSES = ("holiday", "promotion", "data_issue", "known_event", "other")


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(16), index=True)
    monitor: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    metric: Mapped[str] = mapped_column(String(200), index=True)
    slice: Mapped[str] = mapped_column(String(500), default="*")
    # metric-local bucket times, both inclusive: the same convention as alerts.first_seen / last_seen
    start: Mapped[datetime] = mapped_column(DateTime)
    end: Mapped[datetime] = mapped_column(DateTime)
    cause: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    alert_id: Mapped[int | None] = mapped_column(
        ForeignKey("alerts.id", ondelete="SET NULL"), nullable=True, index=True
    )
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    via: Mapped[str] = mapped_column(String(16), default="api")  # cli | api | console | link
    # what the label changed at once (a re-baseline, a calendar event), as shown to the person
    effects: Mapped[list] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
