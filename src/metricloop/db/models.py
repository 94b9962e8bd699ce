"""State tables. Definitions are rows; every change to one is a version row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from metricloop.db.times import utcnow

__all__ = ["Base", "Definition", "DefinitionVersion", "utcnow"]


class Base(DeclarativeBase):
    pass


class Definition(Base):
    """The current version of one definition (source, metric, monitor, …)."""

    __tablename__ = "definitions"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_definitions_kind_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DefinitionVersion(Base):
    """An immutable record of one change: who, when, what (spec) and the diff from the previous one."""

    __tablename__ = "definition_versions"
    __table_args__ = (UniqueConstraint("kind", "name", "version", name="uq_definition_versions"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(16))  # create | update | rollback | delete
    spec: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    diff: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
