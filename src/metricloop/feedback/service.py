"""Reading feedback labels: the contract other domains (tuning, the weekly review) code against.

A label targets one thing: an alert (alert_id), an incident without alerts (incident_id), or a range of one series
(monitor or metric, slice, start..end). Rows are never changed. Where two labels target the same thing, the later
one stands when read with effective=True; the earlier one stays stored (and shown on the timeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from metricloop.db.models import Definition
from metricloop.db.times import aware
from metricloop.feedback.models import Feedback

__all__ = ["FeedbackLabel", "effective_labels", "label_of", "labels_for_monitor", "target_key"]


@dataclass(frozen=True)
class FeedbackLabel:
    id: int
    label: str  # confirmed | false_alarm | expected | new_normal | missed
    monitor: str | None
    metric: str
    slice: str  # the alert slice key, as in alerts.slice; "*" = every series
    start: datetime  # metric-local bucket time, inclusive (same convention as alerts.first_seen)
    end: datetime  # inclusive: the last bucket
    cause: str | None  # holiday | promotion | data_issue | known_event | other  (expected only)
    alert_id: int | None
    incident_id: int | None
    created_by: str
    created_at: datetime  # UTC, aware


def label_of(row: Feedback) -> FeedbackLabel:
    return FeedbackLabel(
        id=row.id,
        label=row.label,
        monitor=row.monitor,
        metric=row.metric,
        slice=row.slice,
        start=row.start,
        end=row.end,
        cause=row.cause,
        alert_id=row.alert_id,
        incident_id=row.incident_id,
        created_by=row.created_by,
        created_at=aware(row.created_at),
    )


def target_key(label: FeedbackLabel) -> tuple:
    """What a label is about: two labels with the same key conflict, and the later one stands."""
    if label.alert_id is not None:
        return ("alert", label.alert_id)
    if label.incident_id is not None:
        return ("incident", label.incident_id)
    return ("range", label.monitor, label.metric, label.slice, label.start, label.end)


JUDGED = ("confirmed", "false_alarm", "expected")
"""The labels that say whether an alert was worth it: precision is confirmed ÷ these, everywhere (quality KPIs,
tuning, the weekly review). `new_normal` says the level moved, not whether the alert helped; `missed` is no alert."""


def effective_labels(labels: list[FeedbackLabel]) -> list[FeedbackLabel]:
    """The later label of each target (by created_at, then id), in the order given."""
    latest: dict[tuple, FeedbackLabel] = {}
    for lab in labels:
        key = target_key(lab)
        had = latest.get(key)
        if had is None or (lab.created_at, lab.id) > (had.created_at, had.id):
            latest[key] = lab
    keep = {lab.id for lab in latest.values()}
    return [lab for lab in labels if lab.id in keep]


def monitor_metric(session: Session, monitor: str) -> str | None:
    spec = session.scalar(select(Definition.spec).where(Definition.kind == "monitor", Definition.name == monitor))
    return (spec or {}).get("metric")


def labels_for_monitor(session: Session, monitor: str, *, effective: bool = True) -> list[FeedbackLabel]:
    """Labels on this monitor's alerts, incidents and series ranges. effective=True: where two
    labels target the same thing, only the later stands (both stay stored).

    Range labels given on a metric with no monitor named count for every monitor of that metric."""
    metric = monitor_metric(session, monitor)
    cond = Feedback.monitor == monitor
    if metric:
        cond = or_(cond, (Feedback.monitor.is_(None)) & (Feedback.metric == metric))
    rows = session.scalars(select(Feedback).where(cond).order_by(Feedback.created_at, Feedback.id)).all()
    labels = [label_of(r) for r in rows]
    return effective_labels(labels) if effective else labels
