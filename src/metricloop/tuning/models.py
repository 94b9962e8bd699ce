"""Tuning suggestions: one row per computed suggestion, with what it saw and who decided."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from metricloop.db.models import Base, utcnow

# open: waiting for a person; applied: made a new monitor version; rejected; superseded: a newer one replaced it;
# unchanged: the search found nothing better (kept so the weekly job does not recompute it all week)
STATUSES = ("open", "applied", "rejected", "superseded", "unchanged")


class TuningSuggestion(Base):
    __tablename__ = "tuning_suggestions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    monitor: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | weekly
    base_version: Mapped[int] = mapped_column(Integer)  # the monitor version it was computed from
    base_spec: Mapped[dict] = mapped_column(JSON)
    proposed_spec: Mapped[dict] = mapped_column(JSON)
    budget: Mapped[float] = mapped_column(Float)
    summary: Mapped[dict] = mapped_column(JSON, default=dict)  # before/after, changes, alerts that move, trade-off
    tradeoff: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    applied_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
