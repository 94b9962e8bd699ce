"""Root-cause findings of an incident, as rows: one per cause and per related metric, plus one report row per run
(its explanation, totals, or why it failed). A run is the analysis when the incident opened (1) and each time it
grew worse (2, 3, …); every run stays stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from metricloop.db.models import Base, utcnow

KINDS = ("report", "cause", "related")


class RcaFinding(Base):
    __tablename__ = "rca_findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    run: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(16))  # report | cause | related
    rank: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str] = mapped_column(String(500), default="")  # region=South & carrier=ZTO; stockout_rate
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
