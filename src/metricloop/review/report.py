"""The weekly review (周报 / 复盘): one team's or one domain's week of incidents, SLA, feedback and causes.

All figures come from rows: incidents (opened, acknowledged, resolved, SLA due moments), alerts, and where those
parts exist, feedback labels, knowledge entries and tuning suggestions (review/inputs.py). A figure that has no
rows behind it is None ("—"), never 0 % or a guess.

Counting rules (docs/feedback.md, Weekly review):
- opened: created in the week; resolved: resolved in the week (whenever opened); open at the end: opened before
  the week's end and not resolved by then.
- MTTA over the incidents acknowledged in the week, MTTR over those resolved in the week, so a finished week's
  figures do not move when older incidents are closed later.
- a breach belongs to the week its SLA moment fell in. An acknowledgement (or resolution) later than the SLA
  moment is a breach even if the SLA timer had not fired yet; an incident still waiting past it is one too.
- false-alarm rate = false alarms ÷ labelled (confirmed, false_alarm, expected), precision = confirmed ÷ labelled,
  over the standing labels on the alerts and incidents of the week (a range label: the week of its first bucket);
  `new_normal` and `missed` are counted apart (they are not verdicts on an alert).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from metricloop.alerting.models import Alert
from metricloop.db.times import as_utc, aware
from metricloop.feedback.service import JUDGED
from metricloop.incidents.models import Incident
from metricloop.review import inputs
from metricloop.review.weeks import ReportInputError, Week, parse_week

SEVERITIES = ("P1", "P2", "P3")
# the verdicts on an alert: the denominator of precision and of the false-alarm rate (as tuning's precision_of);
# new_normal (a series' level moved) and missed (no alert at all) are counted apart
VERDICTS = JUDGED  # one definition of precision (feedback.service.JUDGED)
OTHER_LABELS = ("new_normal", "missed")
TREND_WEEKS = 6
CAUSE_WINDOW = 4  # weeks over which a cause counts as recurring
TOP = 5


@dataclass
class SeverityRow:
    severity: str
    opened: int = 0
    resolved: int = 0
    acknowledged: int = 0
    mtta_seconds: float | None = None
    ack_sla_seconds: float | None = None  # the SLA target (median of the incidents', as policies may differ)
    acked_in_sla: int = 0
    mttr_seconds: float | None = None
    resolve_sla_seconds: float | None = None
    resolved_in_sla: int = 0
    ack_breaches: int = 0
    resolve_breaches: int = 0


@dataclass
class Breach:
    incident_id: int
    title: str
    severity: str
    sla: str  # ack | resolve
    due_at: str
    late_seconds: float | None  # None: still waiting
    assignee: str


@dataclass
class TrendPoint:
    week: str
    opened: int
    resolved: int
    alerts: int
    labelled: int | None
    false_alarms: int | None
    false_alarm_rate: float | None


@dataclass
class CauseRow:
    key: str
    zh: str
    en: str
    this_week: int
    recent: int  # over the last CAUSE_WINDOW weeks, this one included
    incidents: list[int] = field(default_factory=list)


@dataclass
class MonitorRow:
    monitor: str
    alerts: int
    incidents: int
    breaches: int
    labelled: int | None
    false_alarms: int | None
    precision: float | None


@dataclass
class WeeklyReport:
    week: str
    first_day: str
    last_day: str
    timezone: str
    in_progress: bool
    team: str | None
    domain: str | None
    generated_at: str
    opened: int
    resolved: int
    open_at_end: int
    mtta_seconds: float | None
    mttr_seconds: float | None
    acknowledged: int
    acked_in_sla: int
    resolved_in_sla: int
    ack_breaches: int
    resolve_breaches: int
    by_severity: list[SeverityRow]
    breaches: list[Breach]
    feedback_available: bool
    labels: dict[str, int] | None  # this week's labels by kind
    false_alarm_rate: float | None
    precision: float | None
    labelled_share: float | None  # labelled alerts ÷ alerts of the week
    trend: list[TrendPoint]
    causes_from: str  # knowledge (categories; text for resolutions without an entry) | root_cause_text
    causes: list[CauseRow]
    resolved_without_cause: int
    tuning_available: bool
    tuning: list[dict] | None
    monitors: list[MonitorRow]

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ scope


def known_teams(db_session: Session, catalog) -> list[str]:
    teams = {r.team for r in catalog.all("route").values() if r.team}
    teams |= {t for t in db_session.scalars(select(Incident.team).distinct()) if t}
    return sorted(teams)


def scope_metrics(db_session: Session, catalog, *, team: str | None, domain: str | None, within: set[str] | None):
    """The metric names the report covers (None: all), after checking that the team and domain exist."""
    metrics = None if within is None else set(within)
    if domain is not None:
        visible = {m.domain for n, m in catalog.metrics.items() if metrics is None or n in metrics}
        if domain not in visible:
            known = ", ".join(sorted(visible)) or "none"
            raise ReportInputError(
                f"unknown domain '{domain}' (known: {known})",
                f"没有业务域「{domain}」（可选：{known}）",
                where="domain",
                status=404,
            )
        metrics = {n for n, m in catalog.metrics.items() if m.domain == domain and (metrics is None or n in metrics)}
    if team is not None:
        teams = known_teams(db_session, catalog)
        if team not in teams:
            known = ", ".join(teams) or "none"
            raise ReportInputError(
                f"unknown team '{team}' (known: {known})",
                f"没有团队「{team}」（可选：{known}）",
                where="team",
                status=404,
            )
    return metrics


# ------------------------------------------------------------------ figures


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _in(t: datetime | None, week: Week) -> bool:
    return t is not None and week.start <= t < week.end


def _sla_breach(due: datetime | None, done: datetime | None, flagged: bool, now: datetime) -> float | None | bool:
    """Seconds late, None for "still waiting past it", False when kept."""
    if due is None:
        return False
    if done is not None:
        return (done - due).total_seconds() if done > due else (0.0 if flagged else False)
    return None if flagged or now > due else False


class _Inc:
    """An incident's stored moments, read once, aware."""

    def __init__(self, row: Incident) -> None:
        self.row = row
        self.created = aware(row.created_at)
        self.acked = aware(row.acknowledged_at)
        self.resolved = aware(row.resolved_at)
        self.ack_due = aware(row.ack_due_at)
        self.resolve_due = aware(row.resolve_due_at)


def _breaches(incs: list[_Inc], week: Week, now: datetime, lang: str) -> list[Breach]:
    from metricloop.notify.render import incident_title

    out = []
    for i in incs:
        checks = (
            ("ack", i.ack_due, i.acked or i.resolved, i.row.ack_breached),
            ("resolve", i.resolve_due, i.resolved, i.row.resolve_breached),
        )
        for sla, due, done, flagged in checks:
            if not _in(due, week):
                continue
            late = _sla_breach(due, done, flagged, now)
            if late is False:
                continue
            out.append(
                Breach(
                    incident_id=i.row.id,
                    title=incident_title(i.row, lang),
                    severity=i.row.severity,
                    sla=sla,
                    due_at=due.isoformat(),
                    late_seconds=late,
                    assignee=i.row.assignee,
                )
            )
    return sorted(out, key=lambda b: (b.due_at, b.incident_id, b.sla))


def _severity_rows(incs: list[_Inc], week: Week, breaches: list[Breach]) -> list[SeverityRow]:
    rows = []
    for sev in SEVERITIES:
        mine = [i for i in incs if i.row.severity == sev]
        acked = [i for i in mine if _in(i.acked, week)]
        fixed = [i for i in mine if _in(i.resolved, week)]
        rows.append(
            SeverityRow(
                severity=sev,
                opened=sum(_in(i.created, week) for i in mine),
                resolved=len(fixed),
                acknowledged=len(acked),
                mtta_seconds=_mean([(i.acked - i.created).total_seconds() for i in acked]),
                ack_sla_seconds=_median([(i.ack_due - i.created).total_seconds() for i in acked if i.ack_due]),
                acked_in_sla=sum(1 for i in acked if i.ack_due is None or i.acked <= i.ack_due),
                mttr_seconds=_mean([(i.resolved - i.created).total_seconds() for i in fixed]),
                resolve_sla_seconds=_median(
                    [(i.resolve_due - i.created).total_seconds() for i in fixed if i.resolve_due]
                ),
                resolved_in_sla=sum(1 for i in fixed if i.resolve_due is None or i.resolved <= i.resolve_due),
                ack_breaches=sum(b.severity == sev and b.sla == "ack" for b in breaches),
                resolve_breaches=sum(b.severity == sev and b.sla == "resolve" for b in breaches),
            )
        )
    return rows


_SPACE = re.compile(r"\s+")


def _text_cause(text: str) -> str:
    return _SPACE.sub(" ", (text or "").strip()).casefold()


def _causes(db_session, catalog, incs: list[_Inc], week: Week) -> tuple[str, list[CauseRow], int]:
    window_start = week.shift(-(CAUSE_WINDOW - 1)).start
    recent = [i for i in incs if i.resolved is not None and window_start <= i.resolved < week.end]
    categories = inputs.root_cause_categories(db_session, catalog, [i.row.id for i in recent])
    rows: dict[str, CauseRow] = {}
    without = 0
    for i in recent:
        this_week = _in(i.resolved, week)
        if categories is not None and i.row.id in categories:
            c = categories[i.row.id]
        elif _text_cause(i.row.root_cause):  # no knowledge base, or resolved before it had an entry
            key = _text_cause(i.row.root_cause)
            key = key if categories is None else f"text:{key}"  # never mistaken for a category's name
            c = inputs.Cause(key, i.row.root_cause.strip(), i.row.root_cause.strip())
        else:
            without += this_week
            continue
        row = rows.setdefault(c.key, CauseRow(c.key, c.zh, c.en, 0, 0))
        row.recent += 1
        if this_week:
            row.this_week += 1
            row.incidents.append(i.row.id)
    top = sorted((r for r in rows.values() if r.this_week), key=lambda r: (-r.this_week, -r.recent, r.key))[:TOP]
    return ("knowledge" if categories is not None else "root_cause_text"), top, without


def _label_moment(label, alerts_by_id: dict[int, Alert], incs_by_id: dict[int, _Inc], tz: str) -> datetime:
    """When the labelled thing happened: its incident's opening, its alert's, else the range's first bucket."""
    if label.incident_id is not None and label.incident_id in incs_by_id:
        return incs_by_id[label.incident_id].created
    if label.alert_id is not None and label.alert_id in alerts_by_id:
        return aware(alerts_by_id[label.alert_id].created_at)
    start = label.start
    if start.tzinfo is None:  # metric-local bucket time
        start = datetime.combine(start.date(), start.time() or time(0), tzinfo=ZoneInfo(tz))
    return start.astimezone(UTC)


def build(
    db_session: Session,
    catalog,
    *,
    tz: str,
    week: str | Week | None = None,
    team: str | None = None,
    domain: str | None = None,
    within: set[str] | None = None,
    lang: str = "en",
    now: datetime | None = None,
) -> WeeklyReport:
    """The report of one week for a team and/or a domain, as seen by someone who may see the metrics `within`."""
    now = as_utc(now)
    team = (team or "").strip() or None
    domain = (domain or "").strip() or None
    wk = week if isinstance(week, Week) else parse_week(week, tz, now=now)
    metrics = scope_metrics(db_session, catalog, team=team, domain=domain, within=within)
    first = wk.shift(-(TREND_WEEKS - 1))
    earliest = min(first.start, wk.shift(-(CAUSE_WINDOW - 1)).start)

    q = select(Incident).where(
        Incident.created_at < wk.end,
        or_(Incident.created_at >= earliest, Incident.resolved_at.is_(None), Incident.resolved_at >= earliest),
    )
    aq = select(Alert).where(Alert.created_at >= first.start, Alert.created_at < wk.end)
    if metrics is not None:
        q = q.where(Incident.metric.in_(sorted(metrics)))
        aq = aq.where(Alert.metric.in_(sorted(metrics)))
    if team is not None:
        q = q.where(Incident.team == team)
        aq = aq.join(Incident, Alert.incident_id == Incident.id).where(Incident.team == team)
    incs = [_Inc(r) for r in db_session.scalars(q.order_by(Incident.id))]
    alerts = list(db_session.scalars(aq.order_by(Alert.id)))

    breaches = _breaches(incs, wk, now, lang)
    by_sev = _severity_rows(incs, wk, breaches)
    acked = [i for i in incs if _in(i.acked, wk)]
    fixed = [i for i in incs if _in(i.resolved, wk)]

    monitors = {i.row.monitor for i in incs} | {a.monitor for a in alerts}
    if team is None:
        monitors |= {n for n, m in catalog.all("monitor").items() if metrics is None or m.metric in metrics}
    labels = _scoped_labels(db_session, sorted(monitors), incs, metrics, team)
    incs_by_id = {i.row.id: i for i in incs}
    alerts_by_id = {a.id: a for a in alerts}
    if labels:
        missing = [lb.alert_id for lb in labels if lb.alert_id is not None and lb.alert_id not in alerts_by_id]
        for a in db_session.scalars(select(Alert).where(Alert.id.in_(missing))) if missing else ():
            alerts_by_id[a.id] = a
    dated = [(lb, _label_moment(lb, alerts_by_id, incs_by_id, tz)) for lb in labels or []]

    def week_labels(w: Week) -> list:
        return [lb for lb, at in dated if _in(at, w)]

    trend = []
    for n in range(TREND_WEEKS):
        w = first.shift(n)
        these = week_labels(w)
        judged = [lb for lb in these if lb.label in VERDICTS]
        fa = sum(lb.label == "false_alarm" for lb in judged)
        trend.append(
            TrendPoint(
                week=w.label,
                opened=sum(_in(i.created, w) for i in incs),
                resolved=sum(_in(i.resolved, w) for i in incs),
                alerts=sum(_in(aware(a.created_at), w) for a in alerts),
                labelled=None if labels is None else len(judged),
                false_alarms=None if labels is None else fa,
                false_alarm_rate=fa / len(judged) if labels is not None and judged else None,
            )
        )

    this = week_labels(wk)
    counts = None if labels is None else {k: sum(lb.label == k for lb in this) for k in (*VERDICTS, *OTHER_LABELS)}
    judged_n = sum(counts[k] for k in VERDICTS) if counts else 0
    week_alerts = [a for a in alerts if _in(aware(a.created_at), wk)]
    labelled_alerts = {
        a.id
        for a in week_alerts
        for lb in this
        if lb.label in VERDICTS and (lb.alert_id == a.id or (lb.incident_id and lb.incident_id == a.incident_id))
    }
    causes_from, causes, without = _causes(db_session, catalog, incs, wk)
    tuning = inputs.open_tuning_suggestions(db_session, sorted(monitors))

    return WeeklyReport(
        week=wk.label,
        first_day=wk.monday.isoformat(),
        last_day=wk.sunday.isoformat(),
        timezone=tz,
        in_progress=wk.end > now,
        team=team,
        domain=domain,
        generated_at=now.isoformat(),
        opened=sum(_in(i.created, wk) for i in incs),
        resolved=len(fixed),
        open_at_end=sum(1 for i in incs if i.created < wk.end and (i.resolved is None or i.resolved >= wk.end)),
        mtta_seconds=_mean([(i.acked - i.created).total_seconds() for i in acked]),
        mttr_seconds=_mean([(i.resolved - i.created).total_seconds() for i in fixed]),
        acknowledged=len(acked),
        acked_in_sla=sum(r.acked_in_sla for r in by_sev),
        resolved_in_sla=sum(r.resolved_in_sla for r in by_sev),
        ack_breaches=sum(b.sla == "ack" for b in breaches),
        resolve_breaches=sum(b.sla == "resolve" for b in breaches),
        by_severity=by_sev,
        breaches=breaches,
        feedback_available=labels is not None,
        labels=counts,
        false_alarm_rate=counts["false_alarm"] / judged_n if counts and judged_n else None,
        precision=counts["confirmed"] / judged_n if counts and judged_n else None,
        labelled_share=len(labelled_alerts) / len(week_alerts) if labels is not None and week_alerts else None,
        trend=trend,
        causes_from=causes_from,
        causes=causes,
        resolved_without_cause=without,
        tuning_available=tuning is not None,
        tuning=None if tuning is None else [asdict(t) if hasattr(t, "__dataclass_fields__") else t for t in tuning],
        monitors=_monitor_rows(incs, week_alerts, this, breaches, wk, labels is not None),
    )


def _scoped_labels(db_session, monitors: list[str], incs: list[_Inc], metrics, team) -> list | None:
    labels = inputs.feedback_labels(db_session, monitors)
    if labels is None:
        return None
    ids = {i.row.id for i in incs}
    team_monitors = {i.row.monitor for i in incs}
    alert_ids = sorted({lb.alert_id for lb in labels if lb.alert_id is not None})
    alert_incident = (
        dict(db_session.execute(select(Alert.id, Alert.incident_id).where(Alert.id.in_(alert_ids))).all())
        if alert_ids
        else {}
    )

    def ours(lb) -> bool:
        incident = lb.incident_id or alert_incident.get(lb.alert_id)
        if incident is not None:
            return incident in ids or (team is None and _metric_ok(lb.metric, metrics))
        # a range label (missed, or a label on a series): the metric decides, and for a team its monitors
        return _metric_ok(lb.metric, metrics) and (team is None or lb.monitor in team_monitors)

    return [lb for lb in labels if ours(lb)]


def _metric_ok(metric: str, metrics: set[str] | None) -> bool:
    return metrics is None or metric in metrics


def _monitor_rows(incs, week_alerts, labels, breaches, wk: Week, have_labels: bool) -> list[MonitorRow]:
    by: dict[str, dict] = {}

    def row(m: str) -> dict:
        return by.setdefault(m, {"alerts": 0, "incidents": 0, "breaches": 0, "labelled": 0, "fa": 0, "ok": 0})

    for a in week_alerts:
        row(a.monitor)["alerts"] += 1
    for i in incs:
        if _in(i.created, wk):
            row(i.row.monitor)["incidents"] += 1
    monitor_of = {i.row.id: i.row.monitor for i in incs}
    for b in breaches:
        row(monitor_of[b.incident_id])["breaches"] += 1
    for lb in labels:
        if lb.label in VERDICTS and lb.monitor:
            r = row(lb.monitor)
            r["labelled"] += 1
            r["fa"] += lb.label == "false_alarm"
            r["ok"] += lb.label == "confirmed"
    rows = [
        MonitorRow(
            monitor=m,
            alerts=v["alerts"],
            incidents=v["incidents"],
            breaches=v["breaches"],
            labelled=v["labelled"] if have_labels else None,
            false_alarms=v["fa"] if have_labels else None,
            precision=v["ok"] / v["labelled"] if have_labels and v["labelled"] else None,
        )
        for m, v in by.items()
    ]
    # the noisiest first: most alerts, then the least precise, then the most breaches
    rows.sort(key=lambda r: (-r.alerts, r.precision if r.precision is not None else 2.0, -r.breaches, r.monitor))
    return rows[:TOP]
