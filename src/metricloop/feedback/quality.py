"""Quality KPIs per monitor, metric, team or owner, over a window of days: what the labels say about the alerts.

- precision: confirmed ÷ judged, the alerts whose standing label says whether they were worth it (`JUDGED`:
  confirmed, false alarm, expected; a `new_normal` says the level moved, not whether the alert helped); the later
  of two labels stands. Tuning and the weekly review use the same definition (`precision_of`);
- false alarms, expected, new normal: standing labels on alerts;
- missed: standing `missed` ranges (and `confirmed` ranges with no alert in them), what nobody was alerted on;
- alerts per series per month: alerts ÷ series watched ÷ months in the window (series from the monitor's last run);
- labelled share: labelled ÷ alerts;
- MTTA and MTTR of the incidents opened in the window, and the share acknowledged / resolved within the SLA.

A row's team is its incident's; an alert without an incident, or a missed range, takes the team its monitor's
incidents had most often. The owner is the metric's owner. The console calls `quality` directly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from metricloop.alerting.models import Alert
from metricloop.db.times import as_utc, aware
from metricloop.definitions.kinds import Catalog
from metricloop.errors import InvalidInput
from metricloop.feedback.models import Feedback
from metricloop.feedback.service import JUDGED, effective_labels, label_of
from metricloop.incidents.models import Incident
from metricloop.incidents.service import sla_for
from metricloop.monitors.models import MonitorRun

BY = ("monitor", "metric", "team", "owner")
DAYS_PER_MONTH = 30.44
NONE = "-"


def quality(
    db_session: Session,
    catalog: Catalog,
    *,
    by: str = "monitor",
    days: int = 90,
    now: datetime | None = None,
    within: set[str] | None = None,
) -> dict:
    """{"by", "since", "until", "days", "rows": [one dict per group, worst precision first]}. `within`: the metrics
    the caller may see (None: all)."""
    if by not in BY:
        raise InvalidInput(f"cannot group by {by!r}; choose one of: {', '.join(BY)}", where="by")
    if not 1 <= days <= 3660:
        raise InvalidInput(f"days must be between 1 and 3660, not {days}", where="days")
    until = as_utc(now)
    since = until - timedelta(days=days)
    s = db_session

    def seen(metric: str) -> bool:
        return within is None or metric in within

    alerts = [
        a
        for a in s.scalars(select(Alert).where(Alert.kind == "metric", Alert.created_at >= since))
        if seen(a.metric) and aware(a.created_at) <= until
    ]
    incidents = [
        i
        for i in s.scalars(select(Incident).where(Incident.kind == "metric", Incident.created_at >= since))
        if seen(i.metric) and aware(i.created_at) <= until
    ]
    team_of_incident = {i.id: i.team or NONE for i in incidents}
    for inc_id in {a.incident_id for a in alerts if a.incident_id and a.incident_id not in team_of_incident}:
        inc = s.get(Incident, inc_id)
        team_of_incident[inc_id] = (inc.team or NONE) if inc else NONE
    monitor_team: dict[str, str] = {}
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in s.execute(select(Incident.monitor, Incident.team).where(Incident.team != "")).all():
        counts[row[0]][row[1]] += 1
    for monitor, c in counts.items():
        monitor_team[monitor] = c.most_common(1)[0][0]

    def owner(metric: str) -> str:
        try:
            return catalog.metric(metric).owner or NONE
        except Exception:  # a deleted metric keeps its history
            return NONE

    def key(*, monitor: str | None, metric: str, incident_id: int | None) -> str:
        if by == "monitor":
            return monitor or NONE
        if by == "metric":
            return metric
        if by == "owner":
            return owner(metric)
        if incident_id is not None and incident_id in team_of_incident:
            return team_of_incident[incident_id]
        return monitor_team.get(monitor or "", NONE)

    rows: dict[str, dict] = defaultdict(_empty)
    alert_key = {}
    for a in alerts:
        k = key(monitor=a.monitor, metric=a.metric, incident_id=a.incident_id)
        alert_key[a.id] = k
        rows[k]["alerts"] += 1
        rows[k]["_monitors"].add(a.monitor)
    # labels given in the window or on the window's alerts; the later of two on the same target stands
    labels = effective_labels(
        [label_of(f) for f in s.scalars(select(Feedback).order_by(Feedback.created_at, Feedback.id)) if seen(f.metric)]
    )
    for lab in labels:
        if lab.alert_id is not None:
            k = alert_key.get(lab.alert_id)
            if k is None:
                continue  # an alert from before the window
            r = rows[k]
            r["labelled"] += 1
            r["judged"] += lab.label in JUDGED
            r[lab.label] += 1
        elif lab.label in ("missed", "confirmed") and lab.incident_id is None:
            if not since <= lab.created_at <= until:
                continue
            k = key(monitor=lab.monitor, metric=lab.metric, incident_id=None)
            rows[k]["missed"] += 1
            if lab.monitor:
                rows[k]["_monitors"].add(lab.monitor)
    for inc in incidents:
        k = key(monitor=inc.monitor, metric=inc.metric, incident_id=inc.id)
        r = rows[k]
        r["_monitors"].add(inc.monitor)
        ack_sla, fix_sla = sla_for(catalog, inc)
        opened = aware(inc.created_at)
        r["incidents"] += 1
        if inc.acknowledged_at:
            took = (aware(inc.acknowledged_at) - opened).total_seconds()
            r["_acks"].append(took)
            r["_ack_ok"] += took <= ack_sla.total_seconds()
        if inc.resolved_at:
            took = (aware(inc.resolved_at) - opened).total_seconds()
            r["_fixes"].append(took)
            r["_fix_ok"] += took <= fix_sla.total_seconds()
        r["ack_breaches"] += bool(inc.ack_breached)
        r["resolve_breaches"] += bool(inc.resolve_breached)
    series = _series_watched(s)
    months = days / DAYS_PER_MONTH
    out = []
    for k, r in rows.items():
        n_series = sum(series.get(m, 0) for m in r["_monitors"])
        acks, fixes = r.pop("_acks"), r.pop("_fixes")
        ack_ok, fix_ok = r.pop("_ack_ok"), r.pop("_fix_ok")
        r.pop("_monitors")
        r.update(
            {
                by: k,
                "precision": r["confirmed"] / r["judged"] if r["judged"] else None,
                "labelled_share": r["labelled"] / r["alerts"] if r["alerts"] else None,
                "series": n_series,
                "alerts_per_series_month": r["alerts"] / n_series / months if n_series else None,
                "mtta_seconds": sum(acks) / len(acks) if acks else None,
                "mttr_seconds": sum(fixes) / len(fixes) if fixes else None,
                "ack_within_sla": ack_ok / len(acks) if acks else None,
                "resolve_within_sla": fix_ok / len(fixes) if fixes else None,
            }
        )
        out.append({by: k, **{f: r[f] for f in FIELDS}})
    out.sort(key=lambda r: (r["precision"] if r["precision"] is not None else 2.0, -r["alerts"], str(r[by])))
    return {"by": by, "since": since.isoformat(), "until": until.isoformat(), "days": days, "rows": out}


FIELDS = (
    "alerts",
    "series",
    "alerts_per_series_month",
    "labelled",
    "judged",
    "labelled_share",
    "confirmed",
    "false_alarm",
    "expected",
    "new_normal",
    "missed",
    "precision",
    "incidents",
    "mtta_seconds",
    "mttr_seconds",
    "ack_within_sla",
    "resolve_within_sla",
    "ack_breaches",
    "resolve_breaches",
)


def _empty() -> dict:
    r: dict = {f: 0 for f in FIELDS}
    r.update(_acks=[], _fixes=[], _ack_ok=0, _fix_ok=0, _monitors=set())
    return r


def _series_watched(s: Session) -> dict[str, int]:
    """Series each monitor judged at its last run that judged any."""
    last = (
        select(func.max(MonitorRun.id)).where(MonitorRun.series_evaluated > 0).group_by(MonitorRun.monitor)
    ).scalar_subquery()
    rows = s.execute(select(MonitorRun.monitor, MonitorRun.series_evaluated).where(MonitorRun.id.in_(last)))
    return {m: n for m, n in rows}
