"""Knowledge entries (one per resolved incident), their earlier versions, and each incident's similar past ones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from metricloop.db.models import Base, utcnow


class KnowledgeEntry(Base):
    """What was learned from one resolved incident: its category, cause and the actions that worked. The incident's
    metric, slices and pattern are copied here so a search or a match reads one table."""

    __tablename__ = "knowledge_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), unique=True, nullable=True
    )
    metric: Mapped[str] = mapped_column(String(200), index=True)
    monitor: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16), default="metric")
    slices: Mapped[list] = mapped_column(JSON, default=list)
    pattern: Mapped[dict] = mapped_column(JSON, default=dict)  # direction, dimensions, grain … (service.pattern_of)
    title: Mapped[str] = mapped_column(String(500), default="")
    title_en: Mapped[str] = mapped_column(String(500), default="")
    category: Mapped[str] = mapped_column(String(64), default="other", index=True)
    category_source: Mapped[str] = mapped_column(String(16), default="given")  # given | inferred | default
    cause: Mapped[str] = mapped_column(Text, default="")
    actions: Mapped[str] = mapped_column(Text, default="")
    resolved_by: Mapped[str] = mapped_column(String(200), default="")
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KnowledgeVersion(Base):
    """An entry as it was before a change: its fields then, and who changed it when (and why)."""

    __tablename__ = "knowledge_versions"
    __table_args__ = (UniqueConstraint("entry_id", "version", name="uq_knowledge_versions"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("knowledge_entries.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # the version these fields were
    fields: Mapped[dict] = mapped_column(JSON, default=dict)
    written_by: Mapped[str] = mapped_column(String(200), default="")  # who wrote that version
    written_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replaced_by: Mapped[str] = mapped_column(String(200), default="")  # who replaced it, when, why
    replaced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")


class SimilarIncident(Base):
    """One of an incident's most similar past incidents, found when it opened: the page reads these rows."""

    __tablename__ = "knowledge_matches"
    __table_args__ = (UniqueConstraint("incident_id", "entry_id", name="uq_knowledge_matches"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("knowledge_entries.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
