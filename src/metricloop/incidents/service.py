"""Incident flows: open, acknowledge, assign, comment, resolve, reopen, review.

Every flow writes its timeline event, its notifications (outbox rows) and its timers in the
caller's transaction, so a crash at any point leaves either all of it or none of it.
Service functions take the session first and keyword-only arguments after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from metricloop.db.times import as_utc, aware
from metricloop.definitions.durations import parse_duration
from metricloop.definitions.kinds import Catalog
from metricloop.errors import MetricloopError, NotFound
from metricloop.incidents.models import Incident, IncidentEvent, Timer
from metricloop.limits import check_text
from metricloop.routing.schemas import DEFAULT_SLA

SYSTEM = "metricloop"
OPEN_STATES = ("triggered", "acknowledged")


class StateError(MetricloopError):
    status_code = 409


def get(db_session: Session, incident_id: int) -> Incident:
    inc = db_session.get(Incident, incident_id)
    if inc is None:
        raise NotFound(f"no incident #{incident_id}")
    return inc


def get_for_change(db_session: Session, incident_id: int) -> Incident:
    """The incident, locked until the caller's transaction ends, so two people acting at once are serialized
    (the second sees what the first did, e.g. "already acknowledged"). A no-op UPDATE takes the lock: the row's
    lock on PostgreSQL, the database's write lock on SQLite (a SELECT first could not be upgraded there)."""
    db_session.execute(
        update(Incident)
        .where(Incident.id == incident_id)
        .values(updated_at=Incident.updated_at)  # not the key: rows referring to it stay insertable
        .execution_options(synchronize_session=False)
    )
    inc = db_session.get(Incident, incident_id, populate_existing=True)
    if inc is None:
        raise NotFound(f"no incident #{incident_id}")
    return inc


def event(db_session: Session, incident: Incident, kind: str, actor: str, message: str = "", *, at=None, **data):
    at = as_utc(at)
    db_session.add(IncidentEvent(incident_id=incident.id, kind=kind, actor=actor, at=at, message=message, data=data))
    incident.updated_at = at


# ------------------------------------------------------------------ notifications


def recipients_for(catalog: Catalog, channel: str, people: list[str]) -> list[str]:
    spec = catalog.all("channel").get(channel)
    if spec is None:
        return []
    if spec.type == "email":
        return list(dict.fromkeys([p for p in people if "@" in p] + list(spec.to)))
    return [channel]  # a group bot or a webhook: the channel itself is the recipient


def next_seq(db_session: Session, incident: Incident) -> int:
    """Number the incident's next notified event: one atomic `seq = seq + 1` on its row, which also locks the
    row until the caller's transaction ends, so the messages of one incident are queued (and numbered) in order."""
    db_session.flush()  # a new incident's row first
    stmt = (
        update(Incident)
        .where(Incident.id == incident.id)
        .values(seq=Incident.seq + 1)
        .execution_options(synchronize_session=False)
    )
    if db_session.get_bind().dialect.update_returning:
        seq = db_session.execute(stmt.returning(Incident.seq)).scalar_one()
    else:
        db_session.execute(stmt)
        seq = db_session.scalar(select(Incident.seq).where(Incident.id == incident.id))
    set_committed_value(incident, "seq", seq)
    return seq


def notify(
    db_session: Session,
    ws,
    catalog: Catalog,
    incident: Incident,
    *,
    event_name: str,
    people: list[str],
    channels: list[str],
    level: int = 0,
    round_: int = 0,
    now: datetime | None = None,
) -> int:
    """Queue one message per channel × recipient for a new event of the incident.

    The event gets the incident's next `seq`; every message carries it with the incident's state, and its
    idempotency key is `incident:{id}:{seq}:{event}:{channel}:{recipient}`: one message per event, channel and
    recipient however fast events follow one another (a key made of the moment collided within a second).
    `round_` (the escalation round) is in the payload's `level` story only, not in the key. The stored message
    holds link placeholders; the links are signed for each recipient on delivery (notify/links.py)."""
    from metricloop.notify.links import episode_of
    from metricloop.notify.outbox import enqueue
    from metricloop.notify.render import render_incident

    n = 0
    episode = episode_of(db_session, incident.id)
    seq = next_seq(db_session, incident)
    for channel in channels:
        spec = catalog.all("channel").get(channel)
        if spec is None:
            continue
        subject, body, payload = render_incident(
            incident,
            event=event_name,
            language=spec.language,
            base_url=ws.settings.base_url,
            secret_key=None,  # the links are signed for each recipient on delivery (notify/links.py)
            level=level,
            channel_type=spec.type,
            episode=episode,
        )
        for rcpt in recipients_for(catalog, channel, people):
            key = f"incident:{incident.id}:{seq}:{event_name}:{channel}:{rcpt}"
            row = enqueue(
                db_session,
                key=key,
                channel=channel,
                event=event_name,
                recipient=rcpt,
                incident_id=incident.id,
                seq=seq,
                subject=subject,
                body=body,
                payload=payload,
                language=spec.language,
                max_attempts=spec.max_attempts,
            )
            n += row is not None
    if n:
        incident.last_notified_at = as_utc(now)  # the flow's clock: the repeat interval is measured on it
    return n


# ------------------------------------------------------------------ opening


def sla_for(catalog: Catalog, incident: Incident) -> tuple[timedelta, timedelta]:
    policy = catalog.all("escalation").get(incident.escalation_policy) if incident.escalation_policy else None
    target = policy.sla.get(incident.severity) if policy is not None else None
    if target is not None:
        return parse_duration(target.ack), parse_duration(target.resolve)
    d = DEFAULT_SLA[incident.severity]
    return parse_duration(d["ack"]), parse_duration(d["resolve"])


def schedule_escalation(db_session: Session, catalog: Catalog, incident: Incident, *, start: datetime) -> None:
    policy = catalog.all("escalation").get(incident.escalation_policy) if incident.escalation_policy else None
    if policy is None:
        return
    delays = [parse_duration(level.after) for level in policy.levels]
    # A repeat starts one step after the last level: the smallest non-zero delay, at least 5 minutes.
    step = max(min((d for d in delays if d > timedelta(0)), default=timedelta(minutes=15)), timedelta(minutes=5))
    cycle = max(delays) + step
    for round_ in range(policy.repeat + 1):
        for i, delay in enumerate(delays):
            if round_ == 0 and i == 0 and delay == timedelta(0):
                continue  # level 1 at 0m goes out with the opening notification
            db_session.add(
                Timer(
                    incident_id=incident.id,
                    kind="escalate",
                    level=i + 100 * round_,
                    due_at=start + round_ * cycle + delay,
                    status="pending",
                )
            )


def open_incident(
    db_session: Session,
    ws,
    catalog: Catalog,
    *,
    title: str,
    severity: str,
    kind: str,
    monitor: str,
    metric: str,
    group_key: str,
    slices: list[str],
    labels: dict,
    summary: dict,
    fallback_owner: str = "",
    actions: list | None = None,
    now: datetime | None = None,
) -> Incident:
    from metricloop.routing.service import resolve_route

    now = as_utc(now)
    decision = resolve_route(ws, catalog, {**labels, "severity": severity}, at=now, fallback=fallback_owner)
    inc = Incident(
        title=title,
        severity=severity,
        kind=kind,
        monitor=monitor,
        metric=metric,
        group_key=group_key,
        slices=slices,
        labels=labels,
        summary=summary,
        assignee=decision.assignee,
        team=decision.team,
        route=",".join(decision.routes),
        channels=decision.channels,
        escalation_policy=decision.escalation or "",
        state="triggered",
        created_at=now,
        updated_at=now,
    )
    db_session.add(inc)
    db_session.flush()
    ack_sla, resolve_sla = sla_for(catalog, inc)
    inc.ack_due_at, inc.resolve_due_at = now + ack_sla, now + resolve_sla
    event(
        db_session,
        inc,
        "created",
        SYSTEM,
        summary.get("explanation_en", title),
        at=now,
        route=decision.routes,
        reasons=decision.reasons,
    )
    if decision.assignee:
        event(
            db_session, inc, "assigned", SYSTEM, f"assigned to {decision.assignee}", at=now, assignee=decision.assignee
        )
    db_session.add(Timer(incident_id=inc.id, kind="sla_ack", due_at=inc.ack_due_at))
    db_session.add(Timer(incident_id=inc.id, kind="sla_resolve", due_at=inc.resolve_due_at))
    schedule_escalation(db_session, catalog, inc, start=now)
    from metricloop.knowledge.similar import remember_similar

    remember_similar(db_session, catalog, inc, now=now)  # what was done last time, ready for the page
    notify(
        db_session, ws, catalog, inc, event_name="created", people=[inc.assignee], channels=decision.channels, now=now
    )
    for action in actions or []:
        if not action.severities or severity in action.severities:
            from metricloop.notify.actions import enqueue_action

            enqueue_action(
                db_session,
                incident=inc,
                action=action,
                base_url=ws.settings.base_url,  # the payload's incident_url must point at this server
                language=ws.config.get("language", "zh"),
            )
    return inc


def raise_severity(
    db_session: Session,
    ws,
    catalog: Catalog,
    incident: Incident,
    severity: str,
    *,
    now: datetime,
    reason: str,
    why: dict | None = None,
) -> bool:
    """An open incident that grows worse (a P3 that now has a P1 slice) takes the worse severity and its tighter
    SLA; it never gets milder by itself. People hear it at once (`severity_raised`), whatever the repeat interval.

    The routes are tried again with the new severity, because a route may match `severity=P1` only: the channels of
    routes that match now join the incident's, and a newly matching first route's assignee is told too. The owner
    and the escalation policy stay (reassign to hand it over). `why` replaces the summary's reason for the severity
    (`severity_reason_zh/en`, `severity_slice`, `impact`). True when it changed."""
    rank = {"P1": 1, "P2": 2, "P3": 3}
    if rank[severity] >= rank[incident.severity]:
        return False
    now = as_utc(now)
    before, incident.severity = incident.severity, severity
    if why:
        incident.summary = {**(incident.summary or {}), **why}
    ack_sla, resolve_sla = sla_for(catalog, incident)
    start = aware(incident.created_at)
    targets = [("sla_ack", "ack_due_at", start + ack_sla, incident.state == "triggered")]
    targets.append(("sla_resolve", "resolve_due_at", start + resolve_sla, incident.state in OPEN_STATES))
    for kind, field_name, due, applies in targets:
        current = aware(getattr(incident, field_name))
        if applies and (current is None or due < current):
            setattr(incident, field_name, due)
            db_session.add(Timer(incident_id=incident.id, kind=kind, due_at=due))
    routes, channels, newcomer = _reroute(ws, catalog, incident, now=now)
    message = f"{before} → {severity}: {reason}"
    if routes:
        message += f"; now also routed by {', '.join(routes)}"
    event(
        db_session,
        incident,
        "severity_raised",
        SYSTEM,
        message,
        at=now,
        before=before,
        after=severity,
        routes=routes,
        channels=channels,
        told=newcomer,
    )
    notify(
        db_session,
        ws,
        catalog,
        incident,
        event_name="severity_raised",
        people=[p for p in (incident.assignee, newcomer) if p],
        channels=incident.channels,
        round_=int(now.timestamp()),
        now=now,
    )
    return True


def _reroute(ws, catalog: Catalog, incident: Incident, *, now: datetime) -> tuple[list[str], list[str], str]:
    """The routes that match the incident at its new severity and did not before: they join the incident's route,
    their channels its channels. Returns (new routes, new channels, the new first route's assignee or '')."""
    from metricloop.routing.service import resolve_route

    decision = resolve_route(ws, catalog, {**incident.labels, "severity": incident.severity}, at=now)
    current = [r for r in (incident.route or "").split(",") if r]
    routes = [r for r in decision.routes if r not in current]
    channels = [c for c in decision.channels if c not in (incident.channels or [])]
    first_is_new = bool(decision.routes) and decision.routes[0] in routes
    newcomer = decision.assignee if first_is_new and decision.assignee != incident.assignee else ""
    if routes:
        incident.route = ",".join([*current, *routes])
    if channels:
        incident.channels = [*(incident.channels or []), *channels]
    return routes, channels, newcomer


# ------------------------------------------------------------------ flows


def _cancel_timers(db_session: Session, incident: Incident, kinds: tuple[str, ...]) -> None:
    db_session.execute(
        update(Timer)
        .where(Timer.incident_id == incident.id, Timer.status == "pending", Timer.kind.in_(kinds))
        .values(status="cancelled")
    )


def _cancel_queued(db_session: Session, incident: Incident, events: tuple[str, ...]) -> None:
    from metricloop.notify.outbox import cancel

    cancel(db_session, incident_id=incident.id, events=events)


def _who(actor: str, via: str) -> str:
    """The timeline's actor: the person, and how they acted when not directly ("li.lei@… via e-mail link")."""
    return f"{actor} via {via}"[:200] if via else actor


def acknowledge(
    db_session: Session, ws, catalog: Catalog, *, incident_id: int, actor: str, via: str = "", now=None
) -> Incident:
    inc = get_for_change(db_session, incident_id)
    if inc.state == "acknowledged":
        raise StateError(f"incident #{inc.id} is already acknowledged (by {inc.assignee or 'someone'})")
    if inc.state != "triggered":
        raise StateError(f"incident #{inc.id} is {inc.state}: only a triggered incident can be acknowledged")
    now = as_utc(now)
    inc.state, inc.acknowledged_at = "acknowledged", now
    due = aware(inc.ack_due_at)
    if due and now > due:  # late: a breach even when the SLA timer has not fired yet (it cancels below)
        inc.ack_breached = True
    if not inc.assignee:
        inc.assignee = actor
    _cancel_timers(db_session, inc, ("escalate", "sla_ack"))  # an ack stops escalation at once,
    _cancel_queued(db_session, inc, ("escalated", "repeat"))  # including pages queued but not yet sent
    extra = {"via": via} if via else {}
    event(db_session, inc, "acknowledged", _who(actor, via), f"{actor} is on it", at=now, **extra)
    return inc


def assign(
    db_session: Session,
    ws,
    catalog: Catalog,
    *,
    incident_id: int,
    assignee: str,
    actor: str,
    team: str | None = None,
    now=None,
) -> Incident:
    inc = get_for_change(db_session, incident_id)
    now = as_utc(now)
    if not assignee.strip():
        raise MetricloopError("assignee must not be empty", where="assignee")
    if inc.state in ("resolved", "reviewed"):
        raise StateError(f"incident #{inc.id} is {inc.state}: reopen it before reassigning")
    before = inc.assignee
    inc.assignee = assignee
    if team is not None:
        inc.team = team
    event(
        db_session,
        inc,
        "reassigned",
        actor,
        f"{before or 'nobody'} → {assignee}",
        at=now,
        before=before,
        after=assignee,
    )
    notify(
        db_session,
        ws,
        catalog,
        inc,
        event_name="reassigned",
        people=[assignee],
        channels=inc.channels,
        round_=int(now.timestamp()),
        now=now,
    )
    return inc


def comment(db_session: Session, *, incident_id: int, actor: str, text: str, now=None) -> Incident:
    check_text(text, "text")
    inc = get_for_change(db_session, incident_id)
    if not text.strip():
        raise MetricloopError("a comment needs text", where="text")
    event(db_session, inc, "commented", actor, text, at=now)
    return inc


def resolve(
    db_session: Session,
    ws,
    catalog: Catalog,
    *,
    incident_id: int,
    actor: str,
    root_cause: str = "",
    note: str = "",
    category: str | None = None,
    actions: str = "",
    auto: bool = False,
    via: str = "",
    now=None,
) -> Incident:
    """Resolve, and record what it taught in the knowledge base: the root-cause `category` (knowledge/categories.py;
    None: inferred from the words, else `other`), the cause, the `actions` that worked (else the note) and who."""
    from metricloop.knowledge.categories import check_category
    from metricloop.knowledge.service import record_resolution

    check_text(root_cause, "root_cause")
    check_text(note, "note")
    check_text(actions, "actions")
    check_category(catalog, category)
    inc = get_for_change(db_session, incident_id)
    if inc.state in ("resolved", "reviewed"):
        raise StateError(f"incident #{inc.id} is already {inc.state} (at {inc.resolved_at:%Y-%m-%d %H:%M} UTC)")
    now = as_utc(now)
    inc.state, inc.resolved_at = "resolved", now
    inc.root_cause, inc.resolution = root_cause or inc.root_cause, note or inc.resolution
    due = aware(inc.resolve_due_at)
    if due and now > due:
        inc.resolve_breached = True
    ack_due = aware(inc.ack_due_at)
    if inc.acknowledged_at is None and ack_due and now > ack_due:  # resolved unacknowledged past its ack deadline
        inc.ack_breached = True
    _cancel_timers(db_session, inc, ("escalate", "sla_ack", "sla_resolve", "repeat"))
    _cancel_queued(db_session, inc, ("escalated", "repeat"))
    kind = "auto_resolved" if auto else "resolved"
    entry = record_resolution(db_session, catalog, inc, category=category, cause=inc.root_cause,
                              actions=actions or inc.resolution, actor=_who(actor, via), now=now)
    extra = {"via": via} if via else {}
    event(db_session, inc, kind, _who(actor, via), note or root_cause or "resolved", at=now, root_cause=root_cause,
          category=entry.category, knowledge_entry=entry.id, **extra)
    notify(db_session, ws, catalog, inc, event_name="resolved", people=[inc.assignee], channels=inc.channels, now=now)
    return inc


def reopen(db_session: Session, ws, catalog: Catalog, *, incident_id: int, actor: str, reason: str = "", now=None):
    check_text(reason, "reason")
    inc = get_for_change(db_session, incident_id)
    if inc.state not in ("resolved", "reviewed"):
        raise StateError(f"incident #{inc.id} is {inc.state}: only a resolved incident can be reopened")
    now = as_utc(now)
    inc.state, inc.resolved_at, inc.acknowledged_at, inc.reviewed_at = "triggered", None, None, None
    inc.escalation_level = 0
    ack_sla, resolve_sla = sla_for(catalog, inc)
    inc.ack_due_at, inc.resolve_due_at = now + ack_sla, now + resolve_sla
    db_session.add(Timer(incident_id=inc.id, kind="sla_ack", due_at=inc.ack_due_at))
    db_session.add(Timer(incident_id=inc.id, kind="sla_resolve", due_at=inc.resolve_due_at))
    schedule_escalation(db_session, catalog, inc, start=now)
    event(db_session, inc, "reopened", actor, reason or "reopened", at=now)
    notify(db_session, ws, catalog, inc, event_name="reopened", people=[inc.assignee], channels=inc.channels, now=now)
    return inc


def review(db_session: Session, *, incident_id: int, actor: str, note: str = "", now=None) -> Incident:
    check_text(note, "note")
    inc = get_for_change(db_session, incident_id)
    if inc.state != "resolved":
        raise StateError(f"incident #{inc.id} is {inc.state}: only a resolved incident can be reviewed")
    now = as_utc(now)
    inc.state, inc.reviewed_at = "reviewed", now
    event(db_session, inc, "reviewed", actor, note or "reviewed", at=now)
    return inc


# ------------------------------------------------------------------ timers


def process_timers(ws, *, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Fire due timers: escalate unacknowledged incidents, flag SLA breaches. Safe to run anywhere, often."""
    now = as_utc(now)
    fired = {"escalated": 0, "sla_breached": 0, "skipped": 0}
    with ws.db.session() as s:
        catalog = ws.catalog()
        q = select(Timer).where(Timer.status == "pending", Timer.due_at <= now).order_by(Timer.due_at).limit(limit)
        if s.bind.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        due = s.scalars(q).all()
        # after downtime several rounds of one escalation can be due at once: each level goes out
        # once, its latest round, in level order (not "level 2, level 1, level 2" in one minute)
        latest: dict[tuple[int, int], Timer] = {}
        for timer in due:
            if timer.kind == "escalate":
                key = (timer.incident_id, timer.level % 100)
                if key not in latest or timer.due_at > latest[key].due_at:
                    latest[key] = timer
        for timer in due:
            if timer.kind == "escalate" and latest.get((timer.incident_id, timer.level % 100)) is not timer:
                timer.status, timer.fired_at = "superseded", now
                fired["skipped"] += 1
        ordered = [t for t in due if t.kind != "escalate"] + [latest[k] for k in sorted(latest)]
        for timer in ordered:
            inc = s.get(Incident, timer.incident_id)
            timer.status, timer.fired_at = "done", now
            if inc is None:
                continue
            if timer.kind == "escalate":
                fired[_escalate(s, ws, catalog, inc, timer, now)] += 1
            elif timer.kind == "sla_ack" and inc.state == "triggered" and not inc.ack_breached:
                inc.ack_breached = True
                event(s, inc, "sla_breached", SYSTEM, "not acknowledged within the SLA", at=now, sla="ack")
                fired["sla_breached"] += 1
            elif timer.kind == "sla_resolve" and inc.state in OPEN_STATES and not inc.resolve_breached:
                inc.resolve_breached = True
                event(s, inc, "sla_breached", SYSTEM, "not resolved within the SLA", at=now, sla="resolve")
                fired["sla_breached"] += 1
    return fired


def owner_of(catalog: Catalog, inc: Incident) -> str:
    """Who owns what an incident is about: the data's owner (the source's) for data problems, else the metric's."""
    metric = catalog.metrics.get(inc.metric)
    if metric is None:
        return ""
    if inc.kind == "data_quality":
        source = catalog.sources.get(metric.source) if metric.source else None
        if source is not None and source.owner:
            return source.owner
    return metric.owner


def _escalate(s: Session, ws, catalog: Catalog, inc: Incident, timer: Timer, now: datetime) -> str:
    if inc.state != "triggered":
        return "skipped"
    policy = catalog.all("escalation").get(inc.escalation_policy)
    if policy is None:
        return "skipped"
    round_, index = divmod(timer.level, 100)
    if index >= len(policy.levels):
        return "skipped"
    level = policy.levels[index]
    people = []
    for who in level.notify:
        if who == "assignee":
            people.append(inc.assignee)
        elif who.startswith("oncall:"):
            from metricloop.routing.service import on_call

            rotation = catalog.all("rotation").get(who.split(":", 1)[1])
            if rotation is not None:
                people.append(on_call(rotation, now))
        elif who == "owner":
            people.append(owner_of(catalog, inc))
        else:
            people.append(who)
    inc.escalation_level = index
    channels = level.channels or inc.channels
    event(
        s,
        inc,
        "escalated",
        SYSTEM,
        f"not acknowledged: level {index + 1} → {', '.join(people) or 'channels'}",
        at=now,
        level=index,
        round=round_,
        people=people,
    )
    notify(
        s,
        ws,
        catalog,
        inc,
        event_name="escalated",
        people=people,
        channels=channels,
        level=index,
        round_=round_,
        now=now,
    )
    return "escalated"


# ------------------------------------------------------------------ KPIs


def kpis(db_session: Session, *, since: datetime | None = None) -> dict:
    """MTTA and MTTR (seconds), counts by state and SLA breaches."""
    q = select(Incident)
    if since is not None:
        q = q.where(Incident.created_at >= as_utc(since))
    rows = list(db_session.scalars(q))
    acks = [(aware(r.acknowledged_at) - aware(r.created_at)).total_seconds() for r in rows if r.acknowledged_at]
    fixes = [(aware(r.resolved_at) - aware(r.created_at)).total_seconds() for r in rows if r.resolved_at]
    by_state: dict[str, int] = {}
    for r in rows:
        by_state[r.state] = by_state.get(r.state, 0) + 1
    return {
        "incidents": len(rows),
        "by_state": by_state,
        "mtta_seconds": sum(acks) / len(acks) if acks else None,
        "mttr_seconds": sum(fixes) / len(fixes) if fixes else None,
        "ack_breaches": sum(r.ack_breached for r in rows),
        "resolve_breaches": sum(r.resolve_breached for r in rows),
    }
