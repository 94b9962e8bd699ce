"""Giving feedback: validate the target, store one row per labelled thing, apply the label's immediate effect, and
write it on the incident's timeline. The CLI, the API, the console and the signed message links all call `give`.

What a label is about:
- an alert (`alert_id`): one row on that alert;
- an incident (`incident_id`): one row per alert of the incident (or one on the incident when it has none);
- a range of one series (`metric` or `monitor`, `slice`, `start`..`end`): the alerts of that monitor and series
  the range overlaps get one row each; a range with no alert in it is kept as a range — as `missed` or
  `confirmed` (an anomaly nobody was told about), `expected` (a known cause) or `new_normal` (a new level);
  `false_alarm` on a range with no alert is refused, there being nothing to call false.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.alerting.models import Alert
from metricloop.db.times import as_utc
from metricloop.definitions.kinds import Catalog
from metricloop.errors import InvalidInput, NotFound
from metricloop.feedback.models import CAUSES, LABELS, Feedback
from metricloop.feedback.service import FeedbackLabel, effective_labels, label_of, target_key
from metricloop.incidents import service as incidents
from metricloop.incidents.models import Incident
from metricloop.metrics.slices import TOTAL, parse_slice

LABEL_WORDS = {
    "confirmed": ("确认异常", "confirmed"),
    "false_alarm": ("误报", "false alarm"),
    "expected": ("符合预期", "expected"),
    "new_normal": ("新常态", "new normal"),
    "missed": ("漏报", "missed"),
}
CAUSE_WORDS = {
    "holiday": ("节假日", "holiday"),
    "promotion": ("促销", "promotion"),
    "data_issue": ("数据问题", "data issue"),
    "known_event": ("已知事件", "known event"),
    "other": ("其他", "other"),
}
CALENDAR_CAUSES = ("promotion", "known_event")
VIAS = ("cli", "api", "console", "link")


class FeedbackError(InvalidInput):
    """A label that cannot be taken: says what and where; nothing was stored."""


@dataclass
class Given:
    """What one act of feedback stored and changed, as shown to the person."""

    labels: list[FeedbackLabel]
    effects: list[dict] = field(default_factory=list)
    replaced: list[FeedbackLabel] = field(default_factory=list)  # earlier labels on the same targets (still kept)

    def to_dict(self) -> dict:
        return {
            "labels": [label_dict(lab) for lab in self.labels],
            "effects": self.effects,
            "replaced": [label_dict(lab) for lab in self.replaced],
        }


def label_dict(lab: FeedbackLabel) -> dict:
    return {
        "id": lab.id,
        "label": lab.label,
        "monitor": lab.monitor,
        "metric": lab.metric,
        "slice": lab.slice,
        "start": lab.start.isoformat(),
        "end": lab.end.isoformat(),
        "cause": lab.cause,
        "alert_id": lab.alert_id,
        "incident_id": lab.incident_id,
        "created_by": lab.created_by,
        "created_at": lab.created_at.isoformat(),
    }


def effect(kind: str, zh: str, en: str, **data) -> dict:
    return {"kind": kind, "message_zh": zh, "message_en": en, **data}


# ------------------------------------------------------------------ validation


def check_label(label: str, cause: str | None) -> str | None:
    if label not in LABELS:
        raise FeedbackError(f"unknown label {label!r}; choose one of: {', '.join(LABELS)}", where="label")
    if cause is not None and cause not in CAUSES:
        raise FeedbackError(f"unknown cause {cause!r}; choose one of: {', '.join(CAUSES)}", where="cause")
    if label == "expected":
        return cause or "other"
    if cause is not None:
        raise FeedbackError(f"a cause goes with the label expected only, not {label}", where="cause")
    return None


def normal_slice(catalog: Catalog, metric: str, slice_: str | None) -> str:
    """The alert slice key ('region=North,store=BJ-2', keys sorted; '*' = every series) of what a person typed."""
    text = (slice_ or "").strip()
    if text in ("", TOTAL):
        return TOTAL
    try:
        dims = parse_slice(text.replace(" ", ""))
    except ValueError:
        raise FeedbackError(
            f"bad slice {text!r}: write dimension=value pairs joined by commas", where="slice"
        ) from None
    allowed = set(catalog.metric(metric).dimensions)
    unknown = sorted(set(dims) - allowed)
    if unknown:
        raise FeedbackError(
            f"metric {metric} has no dimension {', '.join(unknown)} (it has: {', '.join(sorted(allowed)) or 'none'})",
            where="slice",
        )
    return ",".join(f"{k}={dims[k]}" for k in sorted(dims))


def local_now(catalog: Catalog, metric: str, now: datetime) -> datetime:
    tz = ZoneInfo(catalog.metric(metric).timezone)
    return as_utc(now).astimezone(tz).replace(tzinfo=None)


def to_local(catalog: Catalog, metric: str, t: datetime | None) -> datetime | None:
    """A time with an offset as the metric-local bucket time; a naive one is metric-local already."""
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(ZoneInfo(catalog.metric(metric).timezone)).replace(tzinfo=None)


def check_since(catalog: Catalog, metric: str, since: datetime, now: datetime) -> None:
    today = local_now(catalog, metric, now)
    if since > today:
        raise FeedbackError(
            f"new_normal from {since:%Y-%m-%d %H:%M} is in the future (now {today:%Y-%m-%d %H:%M} in "
            f"{catalog.metric(metric).timezone}); feedback takes effect from what has happened: give today or an "
            "earlier date, and label again once the new level has arrived",
            where="since",
        )


# ------------------------------------------------------------------ giving


def give(
    db_session: Session,
    ws,
    catalog: Catalog,
    *,
    label: str,
    actor: str,
    via: str = "api",
    alert_id: int | None = None,
    incident_id: int | None = None,
    monitor: str | None = None,
    metric: str | None = None,
    slice_: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cause: str | None = None,
    note: str = "",
    add_to_calendar: bool = False,
    event_name: str | None = None,
    now: datetime | None = None,
) -> Given:
    """Store one label (one row per labelled alert) and apply its immediate effect; commits nothing (the caller
    does). `start` for new_normal is the date the new level begins (default: the alert's first bucket)."""
    now = as_utc(now)
    cause = check_label(label, cause)
    given_targets = [n for n, v in (("alert", alert_id), ("incident", incident_id)) if v is not None]
    if monitor or metric or slice_:
        given_targets.append("range")
    if len(given_targets) > 1:
        raise FeedbackError(
            "a label is about one thing: an alert, an incident or a range of a series, "
            f"not {' and '.join(given_targets)}",
            where="target",
        )
    targets = _targets(
        db_session,
        catalog,
        label=label,
        alert_id=alert_id,
        incident_id=incident_id,
        monitor=monitor,
        metric=metric,
        slice_=slice_,
        start=start,
        end=end,
    )
    if label == "new_normal":
        for t in targets:
            if start is not None:  # the date the person gave, whatever the alert's span
                t["start"] = to_local(catalog, t["metric"], start)
            check_since(catalog, t["metric"], t["start"], now)
            t["end"] = max(t["end"], t["start"])
    if add_to_calendar and not (label == "expected" and cause in CALENDAR_CAUSES):
        raise FeedbackError(
            "only an expected label with cause promotion or known_event can add a calendar event",
            where="add_to_calendar",
        )
    rows = [
        Feedback(
            label=label,
            cause=cause,
            note=note,
            via=via if via in VIAS else "api",
            created_by=actor,
            created_at=now,
            effects=[],
            **t,
        )
        for t in targets
    ]
    replaced = _standing_before(db_session, rows)
    db_session.add_all(rows)
    db_session.flush()
    effects = _effects(
        db_session,
        ws,
        catalog,
        rows,
        label=label,
        cause=cause,
        add_to_calendar=add_to_calendar,
        event_name=event_name,
        actor=actor,
        now=now,
    )
    for row in rows:
        row.effects = effects
    given = Given(labels=[label_of(r) for r in rows], effects=effects, replaced=replaced)
    _on_timelines(db_session, given, actor=actor, via=via, note=note, now=now)
    return given


def _targets(s: Session, catalog: Catalog, *, label, alert_id, incident_id, monitor, metric, slice_, start, end):
    def of_alert(a: Alert) -> dict:
        return dict(
            monitor=a.monitor,
            metric=a.metric,
            slice=a.slice,
            start=a.first_seen,
            end=a.last_seen,
            alert_id=a.id,
            incident_id=a.incident_id,
        )

    if alert_id is not None:
        a = s.get(Alert, alert_id)
        if a is None:
            raise NotFound(f"no alert #{alert_id}", where="alert_id")
        return [of_alert(a)]
    if incident_id is not None:
        inc = s.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"no incident #{incident_id}", where="incident_id")
        alerts = s.scalars(select(Alert).where(Alert.incident_id == inc.id).order_by(Alert.id)).all()
        if alerts:
            return [of_alert(a) for a in alerts]
        at = as_utc(inc.created_at).replace(tzinfo=None)
        return [
            dict(
                monitor=inc.monitor,
                metric=inc.metric,
                slice=(inc.slices or [TOTAL])[0],
                start=at,
                end=at,
                alert_id=None,
                incident_id=inc.id,
            )
        ]
    # a range of one series
    if monitor is not None:
        spec = catalog.get("monitor", monitor)
        if metric is not None and catalog.metric(metric).name != spec.metric:
            raise FeedbackError(f"monitor {monitor} watches metric {spec.metric}, not {metric}", where="metric")
        metric = spec.metric
    if metric is None:
        raise FeedbackError(
            "say what the label is about: an alert, an incident, or a metric (or monitor) with a start date",
            where="target",
        )
    metric = catalog.metric(metric).name
    start, end = to_local(catalog, metric, start), to_local(catalog, metric, end)
    if start is None:
        raise FeedbackError("a label on a range of a series needs its start", where="start")
    end = end or start
    if end < start:
        raise FeedbackError(f"the range ends ({end:%Y-%m-%d}) before it starts ({start:%Y-%m-%d})", where="end")
    key = normal_slice(catalog, metric, slice_)
    overlapping = []
    if label not in ("missed", "new_normal"):
        q = select(Alert).where(
            Alert.metric == metric, Alert.kind == "metric", Alert.first_seen <= end, Alert.last_seen >= start
        )
        if monitor is not None:
            q = q.where(Alert.monitor == monitor)
        if key != TOTAL:
            q = q.where(Alert.slice == key)
        overlapping = s.scalars(q.order_by(Alert.id)).all()
    if overlapping:
        return [of_alert(a) for a in overlapping]
    if label == "false_alarm":
        raise FeedbackError(
            f"no alert on {metric} [{key}] between {start:%Y-%m-%d} and {end:%Y-%m-%d}: there is nothing to call a "
            "false alarm; a range with no alert can be labelled missed or confirmed",
            where="start",
        )
    return [dict(monitor=monitor, metric=metric, slice=key, start=start, end=end, alert_id=None, incident_id=None)]


def _standing_before(s: Session, rows: list[Feedback]) -> list[FeedbackLabel]:
    """The labels these rows supersede: the standing label on each same target (kept, shown as replaced)."""
    keys = {target_key(label_of(r)) for r in rows}  # not flushed yet: id None
    q = select(Feedback).where(Feedback.metric.in_({r.metric for r in rows}))
    same = [
        lab for lab in map(label_of, s.scalars(q.order_by(Feedback.created_at, Feedback.id))) if target_key(lab) in keys
    ]
    return effective_labels(same)


def _effects(s, ws, catalog, rows, *, label, cause, add_to_calendar, event_name, actor, now) -> list[dict]:
    out = []
    if label == "new_normal":
        for r in rows:
            out.append(
                effect(
                    "rebaseline",
                    f"{r.metric} [{r.slice}] 自 {r.start:%Y-%m-%d} 起以新水平为基线：下次运行起不再按旧水平告警",
                    f"{r.metric} [{r.slice}] re-baselined from {r.start:%Y-%m-%d}: from the next run on it is judged "
                    "against its new level, not the old one",
                    series=r.slice,
                    metric=r.metric,
                    monitor=r.monitor,
                    since=r.start.isoformat(),
                )
            )
    elif label in ("false_alarm", "missed"):
        word_zh, word_en = LABEL_WORDS[label]
        out.append(
            effect(
                "tuning",
                f"已记为{word_zh}，供调优（metricloop tune）使用",
                f"stored as {word_en} for tuning (metricloop tune)",
            )
        )
    elif label == "expected":
        czh, cen = CAUSE_WORDS[cause]
        if add_to_calendar:
            from metricloop.feedback.calendar_events import add_event

            out.extend(add_event(s, ws, catalog, rows, cause=cause, name=event_name, actor=actor, now=now))
        elif cause in CALENDAR_CAUSES:
            out.append(
                effect(
                    "calendar_offer",
                    f"原因：{czh}。可加入日历，今后同类事件不再告警（加 --calendar）",
                    f"cause: {cen}. It can go into the calendar so the next one does not alert (add --calendar)",
                )
            )
        else:
            out.append(effect("recorded", f"原因：{czh}，已记录", f"cause: {cen}, recorded"))
    else:
        out.append(effect("recorded", "已确认为真实异常", "confirmed as a real anomaly"))
    return out


def _on_timelines(s: Session, given: Given, *, actor: str, via: str, note: str, now: datetime) -> None:
    by_incident: dict[int, list[FeedbackLabel]] = {}
    for lab in given.labels:
        if lab.incident_id is not None:
            by_incident.setdefault(lab.incident_id, []).append(lab)
    for inc_id, labs in by_incident.items():
        inc = s.get(Incident, inc_id)
        if inc is None:
            continue
        lab = labs[0]
        zh, en = LABEL_WORDS[lab.label]
        text = f"{zh} / {en}"
        if lab.cause:
            text += f" ({CAUSE_WORDS[lab.cause][0]} / {CAUSE_WORDS[lab.cause][1]})"
        before = [
            r for r in given.replaced if r.incident_id == inc_id and (r.created_by, r.label) != (actor, lab.label)
        ]
        if before:
            b = before[0]
            text += (
                f"; 取代 {b.created_by} 的 {LABEL_WORDS[b.label][0]} / replaces {b.created_by}'s "
                f"{LABEL_WORDS[b.label][1]} (both kept)"
            )
        if note:
            text += f" — {note}"
        incidents.event(
            s,
            inc,
            "feedback",
            actor,
            text,
            at=now,
            label=lab.label,
            cause=lab.cause,
            via=via,
            feedback_ids=[x.id for x in labs],
            alert_ids=[x.alert_id for x in labs if x.alert_id],
            effects=given.effects,
        )
