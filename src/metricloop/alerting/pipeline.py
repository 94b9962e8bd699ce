"""The alert path: a chain of stages, each with one method, passing candidates on.

    fingerprint → dedup → severity → mute → group → incident

An empty list stops the chain. Every stage's effect is a row (alerts, incidents, events), never a log line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.alerting import severity as severities
from metricloop.alerting.models import Alert
from metricloop.alerting.mutes import Mutes
from metricloop.db.times import aware
from metricloop.definitions.durations import parse_duration
from metricloop.definitions.kinds import Catalog
from metricloop.definitions.schemas import MetricSpec
from metricloop.incidents import service as incidents
from metricloop.incidents.models import Incident
from metricloop.metrics.slices import parse_slice
from metricloop.monitors.models import Anomaly
from metricloop.monitors.schemas import MonitorSpec

OPEN_ALERT = ("firing", "muted")
OPEN_INCIDENT = ("triggered", "acknowledged")
SEVERITY_RANK = severities.RANK


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass
class Candidate:
    anomaly: Anomaly
    labels: dict[str, str]
    fingerprint: str = ""
    alert: Alert | None = None
    existing: bool = False
    muted_by: str = ""
    severity: str = "P3"
    decision: severities.Decision | None = None  # why this severity
    group: int = -1
    repeats: list[Anomaly] = field(default_factory=list)  # later buckets of the same series in this run


@dataclass
class Context:
    session: Session
    ws: object
    catalog: Catalog
    monitor: MonitorSpec
    metric: MetricSpec
    now: datetime
    mutes: Mutes
    stats: dict[str, int] = field(
        default_factory=lambda: {
            "anomalies": 0,
            "alerts_new": 0,
            "alerts_repeat": 0,
            "muted": 0,
            "incidents_opened": 0,
            "absorbed": 0,
        }
    )
    incidents: list[int] = field(default_factory=list)
    grain: str = "day"
    wholes: severities.Wholes | None = None  # the metric's whole per bucket, for the share at stake
    rca_cache: dict = field(default_factory=dict)  # leaf cubes shared by the incidents of this run (rca/service.py)

    def bucket_end(self, start: datetime) -> datetime:
        import pandas as pd

        from metricloop.metrics.timeutil import FREQ

        return (pd.Timestamp(start) + pd.tseries.frequencies.to_offset(FREQ[self.grain])).to_pydatetime()


class Stage(Protocol):
    def process(self, ctx: Context, items: list[Candidate]) -> list[Candidate]: ...


class Fingerprint:
    def process(self, ctx: Context, items: list[Candidate]) -> list[Candidate]:
        for c in items:
            c.fingerprint = fingerprint(ctx.monitor.name, c.anomaly.slice)
            c.anomaly.fingerprint = c.fingerprint
        return items


class Dedup:
    """An open alert with the same fingerprint absorbs the repeat."""

    def process(self, ctx: Context, items: list[Candidate]) -> list[Candidate]:
        fps = {c.fingerprint for c in items}
        open_alerts = {
            a.fingerprint: a
            for a in ctx.session.scalars(select(Alert).where(Alert.fingerprint.in_(fps), Alert.status.in_(OPEN_ALERT)))
        }
        out: list[Candidate] = []
        seen: dict[str, Candidate] = {}
        for c in sorted(items, key=lambda c: c.anomaly.time):
            alert = open_alerts.get(c.fingerprint)
            if c.fingerprint in seen:  # several buckets of one series in a catch-up run: one alert
                first = seen[c.fingerprint]
                first.repeats.append(c.anomaly)
                if first.alert is not None:  # an open alert: it absorbs this bucket too
                    first.alert.last_seen = max(first.alert.last_seen, c.anomaly.time)
                    first.alert.count += 1
                    c.anomaly.alert_id = first.alert.id
                continue
            seen[c.fingerprint] = c
            if alert is not None:
                alert.last_seen = max(alert.last_seen, c.anomaly.time)
                alert.count += 1
                alert.normal_streak = 0
                alert.updated_at = ctx.now
                c.alert, c.existing = alert, True
                c.anomaly.alert_id = alert.id
                ctx.stats["alerts_repeat"] += 1
            out.append(c)
        return out


class Mute:
    """Silences, maintenance windows, calendar suppression and inhibition, behind one interface."""

    def process(self, ctx: Context, items: list[Candidate]) -> list[Candidate]:
        out = []
        for c in items:
            newest = max([c.anomaly.time, *(r.time for r in c.repeats)])  # a catch-up: where the series is now
            c.muted_by = ctx.mutes.mutes(
                c.labels, at_local=newest, until_local=ctx.bucket_end(newest), timezone=ctx.metric.timezone
            )
            if not c.muted_by:
                out.append(c)
                continue
            ctx.stats["muted"] += 1
            if c.alert is None:
                c.alert = _new_alert(ctx, c, status="muted")
            else:
                c.alert.status, c.alert.muted_by = "muted", c.muted_by
        return out


class Severity:
    """Rules first (first match wins); otherwise from the deviation, the metric's tier and the business impact
    (see `metricloop.alerting.severity`)."""

    def process(self, ctx: Context, items: list[Candidate]) -> list[Candidate]:
        for c in items:
            a = c.anomaly
            whole = ctx.wholes.at(a.slice, a.time) if ctx.wholes is not None else None
            c.decision = severities.decide(
                metric=ctx.metric,
                monitor=ctx.monitor,
                labels=c.labels,
                actual=a.actual,
                expected=a.expected,
                whole=whole,
            )
            c.severity = c.decision.severity
            c.labels["severity"] = c.severity
        return items


def _is_parent(a: dict[str, str], b: dict[str, str]) -> bool:
    return len(a) < len(b) and all(b.get(k) == v for k, v in a.items())


class Group:
    """A total and its child slices firing together become one group (one incident)."""

    def process(self, ctx: Context, items: list[Candidate]) -> list[Candidate]:
        parent = list(range(len(items)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        if ctx.monitor.group == "monitor":
            parent = [0] * len(items)
        elif ctx.monitor.group == "hierarchy":
            dims = [parse_slice(c.anomaly.slice) for c in items]
            for i in range(len(items)):
                for j in range(len(items)):
                    if i != j and _is_parent(dims[i], dims[j]):
                        parent[find(j)] = find(i)
        for i, c in enumerate(items):
            c.group = find(i)
        return items


class OpenIncidents:
    """New groups open an incident; repeats are absorbed by the open incident (re-notified after the interval)."""

    def process(self, ctx: Context, items: list[Candidate]) -> list[Candidate]:
        groups: dict[int, list[Candidate]] = {}
        for c in items:
            groups.setdefault(c.group, []).append(c)
        for members in groups.values():
            open_inc = None
            for c in members:
                if c.alert is not None and c.alert.incident_id:
                    inc = ctx.session.get(Incident, c.alert.incident_id)
                    if inc is not None and inc.state in OPEN_INCIDENT:
                        open_inc = inc
                        break
            if open_inc is None:
                open_inc = self._related_open(ctx, members)
            for c in members:
                if c.alert is None:
                    c.alert = _new_alert(ctx, c, status="firing")
                    ctx.stats["alerts_new"] += 1
                elif c.alert.status == "muted":
                    c.alert.status, c.alert.muted_by = "firing", ""
            if open_inc is not None:
                self._absorb(ctx, open_inc, members)
            else:
                self._open(ctx, members)
        return items

    def _related_open(self, ctx: Context, members: list[Candidate]) -> Incident | None:
        """An open incident of this monitor that already covers a parent or child of these slices."""
        if ctx.monitor.group == "none":
            return None
        rows = ctx.session.scalars(
            select(Incident)
            .where(Incident.monitor == ctx.monitor.name, Incident.kind == "metric", Incident.state.in_(OPEN_INCIDENT))
            .order_by(Incident.id)
        ).all()
        if ctx.monitor.group == "monitor":
            return rows[0] if rows else None
        mine = [parse_slice(c.anomaly.slice) for c in members]
        for inc in rows:
            theirs = [parse_slice(x) for x in inc.slices]
            if any(_is_parent(a, b) or _is_parent(b, a) for a in mine for b in theirs):
                return inc
        return None

    def _absorb(self, ctx: Context, inc: Incident, members: list[Candidate]) -> None:
        for c in members:
            c.alert.incident_id = inc.id
            if c.anomaly.slice not in inc.slices:
                inc.slices = [*inc.slices, c.anomaly.slice]
        ctx.stats["absorbed"] += 1
        incidents.event(
            ctx.session,
            inc,
            "absorbed",
            incidents.SYSTEM,
            f"still firing: {', '.join(c.anomaly.slice for c in members)}",
            at=ctx.now,
            anomalies=[c.anomaly.id for c in members],
        )
        worst = _worst(members)
        rca = None
        if _RANK.get(worst.severity, 3) < _RANK.get(inc.severity, 3):  # it grows worse: explain it again first
            rca = _rca(ctx, [c.anomaly.slice for c in members] + list(inc.slices), members)
            inc.summary = {**(inc.summary or {}), **rca.summary_fields()}
        raised = incidents.raise_severity(
            ctx.session,
            ctx.ws,
            ctx.catalog,
            inc,
            worst.severity,
            now=ctx.now,
            reason=f"{worst.anomaly.slice}: {_why(worst)}",
            why=_severity_summary(worst),
        )
        if rca is not None:
            from metricloop.rca.service import record

            record(ctx.session, inc, rca, now=ctx.now, why="worse")
        last = aware(inc.last_notified_at) or aware(inc.created_at)
        if not raised and ctx.now - last >= parse_duration(ctx.monitor.repeat_interval):
            incidents.notify(
                ctx.session,
                ctx.ws,
                ctx.catalog,
                inc,
                event_name="repeat",
                people=[inc.assignee],
                channels=inc.channels,
                round_=int(ctx.now.timestamp()),
                now=ctx.now,
            )

    def _open(self, ctx: Context, members: list[Candidate]) -> None:
        members.sort(key=lambda c: (len(parse_slice(c.anomaly.slice)), -c.anomaly.score))
        lead = members[0]
        worst = _worst(members)
        severity = worst.severity
        a = lead.anomaly
        slices = [c.anomaly.slice for c in members]
        lang = ctx.ws.config.get("language", "zh") if hasattr(ctx.ws, "config") else "zh"
        where = "" if a.slice == "*" else f" · {a.slice}"
        word = {
            "zh": "高于预期" if a.direction == "up" else "低于预期",
            "en": "above expected" if a.direction == "up" else "below expected",
        }
        titles = {code: f"{ctx.metric.label(code)}{where} {word[code]}" for code in ("zh", "en")}
        title = titles.get(lang, titles["zh"])
        summary = {
            "title_zh": titles["zh"],
            "title_en": titles["en"],
            "explanation_zh": a.explanation_zh,
            "explanation_en": a.explanation_en,
            "actual": a.actual,
            "expected": a.expected,
            "lower": a.lower,
            "upper": a.upper,
            "deviation_pct": ((a.actual - a.expected) / abs(a.expected) * 100) if a.expected else None,
            "direction": a.direction,
            "detector": a.detector,
            "time": a.time.isoformat(),
            "metric_title_zh": ctx.metric.title.zh,
            "metric_title_en": ctx.metric.title.en,
            "unit": ctx.metric.unit,
            **_severity_summary(worst),
            "members": [
                {
                    "slice": c.anomaly.slice,
                    "actual": c.anomaly.actual,
                    "expected": c.anomaly.expected,
                    "explanation_zh": c.anomaly.explanation_zh,
                    "explanation_en": c.anomaly.explanation_en,
                    "severity": c.severity,
                }
                for c in members
            ],
        }
        rca = _rca(ctx, slices, members)  # before opening: the first message names the top causes
        summary.update(rca.summary_fields())
        inc = incidents.open_incident(
            ctx.session,
            ctx.ws,
            ctx.catalog,
            title=title,
            severity=severity,
            kind="metric",
            monitor=ctx.monitor.name,
            metric=ctx.metric.name,
            group_key=lead.fingerprint,
            slices=slices,
            labels={k: v for k, v in lead.labels.items() if k != "severity"},
            summary=summary,
            fallback_owner=ctx.metric.owner,
            actions=ctx.monitor.actions,
            now=ctx.now,
        )
        from metricloop.rca.service import record

        record(ctx.session, inc, rca, now=ctx.now, why="opened")
        for c in members:
            c.alert.incident_id = inc.id
            _set_severity(c.alert, c)
        ctx.stats["incidents_opened"] += 1
        ctx.incidents.append(inc.id)


_RANK = {"P1": 1, "P2": 2, "P3": 3}


def _rca(ctx: Context, slices: list[str], members: list[Candidate]):
    """Root causes and related metrics of the incident these members open or worsen (rca/service.py); a failure
    comes back as an outcome with its reason, never as an exception."""
    from metricloop.rca.service import compute

    lead = min(members, key=lambda c: (len(parse_slice(c.anomaly.slice)), -c.anomaly.score))
    ordered = sorted(dict.fromkeys(slices), key=lambda s: len(parse_slice(s)))
    return compute(ctx.ws, ctx.catalog, ctx.monitor, ctx.metric, slices=ordered, at=lead.anomaly.time,
                   direction=lead.anomaly.direction, grain=ctx.grain, cache=ctx.rca_cache)


def _new_alert(ctx: Context, c: Candidate, *, status: str) -> Alert:
    a = c.anomaly
    alert = Alert(
        fingerprint=c.fingerprint,
        kind="metric",
        monitor=ctx.monitor.name,
        metric=ctx.metric.name,
        slice=a.slice,
        labels=c.labels,
        status=status,
        muted_by=c.muted_by,
        first_seen=a.time,
        last_seen=max([a.time, *(r.time for r in c.repeats)]),
        count=1 + len(c.repeats),
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    _set_severity(alert, c)
    ctx.session.add(alert)
    ctx.session.flush()
    for anomaly in (a, *c.repeats):
        anomaly.alert_id = alert.id
    return alert


def _worst(members: list[Candidate]) -> Candidate:
    """The member that sets the group's severity (the first of the worst: the lead when it is as bad)."""
    return min(members, key=lambda c: SEVERITY_RANK[c.severity])


def _severity_summary(c: Candidate) -> dict:
    """What the incident's summary says about its severity: the slice that set it, and why."""
    return {"severity_slice": c.anomaly.slice, **(c.decision.summary() if c.decision is not None else {})}


def _why(c: Candidate) -> str:
    return c.decision.reason_en.removeprefix(f"{c.severity}: ") if c.decision is not None else c.severity


def _set_severity(alert: Alert, c: Candidate) -> None:
    """The alert's severity, and its summary: what the detector saw, then why this severity."""
    a = c.anomaly
    alert.severity = c.severity
    alert.summary_zh = "\n".join(x for x in (a.explanation_zh, c.decision and c.decision.reason_zh) if x)
    alert.summary_en = "\n".join(x for x in (a.explanation_en, c.decision and c.decision.reason_en) if x)


# Severity comes before Mute: `severity` is one of the labels a silence may match.
DEFAULT_STAGES: list[Stage] = [Fingerprint(), Dedup(), Severity(), Mute(), Group(), OpenIncidents()]


def run_pipeline(ctx: Context, items: list[Candidate], stages: list[Stage] | None = None) -> Context:
    ctx.stats["anomalies"] += len(items)
    for stage in stages or DEFAULT_STAGES:
        if not items:
            break
        items = stage.process(ctx, items)
    return ctx
