"""The outbox: every notification and action call is a row written with the change that causes it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from metricloop.db.models import Base, utcnow

# pending → sending → sent; failures go back to pending with a later next_attempt_at, then dead.
# Rows of one incident on one channel and recipient (a "chain") go out in id order: a row waits while an
# earlier row of its chain is pending or sending (UNSETTLED); sent, dead, cancelled … rows no longer hold it.
# Actions needing approval start as awaiting_approval; rejected ones end as rejected.
OUTBOX_STATES = ("awaiting_approval", "pending", "sending", "sent", "dead", "rejected", "cancelled")
UNSETTLED = ("pending", "sending")


class Notification(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_chain", "incident_id", "channel", "recipient", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="notify")  # notify | action
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    event: Mapped[str] = mapped_column(String(32), default="")  # created | escalated | repeat | resolved | action
    seq: Mapped[int] = mapped_column(Integer, default=0)  # the incident's event number this message is about
    channel: Mapped[str] = mapped_column(String(200), index=True)
    recipient: Mapped[str] = mapped_column(String(500), default="")
    language: Mapped[str] = mapped_column(String(8), default="zh")
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    locked_by: Mapped[str] = mapped_column(String(100), default="")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_token: Mapped[str] = mapped_column(String(40), default="")  # one claim: a reclaim gets another token
    last_error: Mapped[str] = mapped_column(Text, default="")
    approved_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
