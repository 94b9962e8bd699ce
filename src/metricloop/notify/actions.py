"""Actions: outbound calls when an incident opens (a restock request, an OA ticket), through the outbox.

An action row is an outbox row of kind `action` on the pseudo-channel `action:<name>`. Its payload
carries the call (url, method, headers, the secret as its ${ENV} reference, the rendered body), so
the dispatcher delivers and retries it like any webhook. With `require_approval`, the row waits as
`awaiting_approval` until one of the approvers approves it (or rejects it); both are on the timeline.

Payload templates are Jinja2 in a sandbox: definitions are written by users, so templates may read
the incident but not reach into Python.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from metricloop.errors import MetricloopError
from metricloop.notify.channels import ACTION_PREFIX
from metricloop.notify.models import Notification
from metricloop.notify.outbox import as_utc, enqueue, get, timeline
from metricloop.notify.render import fmt_number, incident_fields

SYSTEM = "metricloop"


class NotPermitted(MetricloopError):
    status_code = 403


class ActionStateError(MetricloopError):
    status_code = 409


def _env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["num"] = fmt_number
    env.filters["tojson"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env


def action_applies(action: Any, severity: str) -> bool:
    """An action runs for every severity, or only for those it lists."""
    return not action.severities or severity in action.severities


def template_context(incident: Any, *, base_url: str = "", event: str = "created", language: str = "zh") -> dict:
    summary = dict(incident.summary or {})
    # The bare page, without a view token: a payload goes to another system, and a view link would let whoever
    # reads it there acknowledge or resolve the incident from the page.
    fields = incident_fields(incident, base_url=base_url)
    return {
        "incident": fields,
        "summary": summary,
        "labels": fields["labels"],
        "explanation": summary.get(f"explanation_{language}") or summary.get("explanation") or "",
        "event": event,
        "incident_url": fields["url"],
    }


def render_payload(template: dict | list | str, context: dict) -> Any:
    """Strings anywhere in a dict/list payload are templates; a string payload must render to JSON."""
    env = _env()

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return env.from_string(value).render(context)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    if isinstance(template, str):
        text = env.from_string(template).render(context)
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise MetricloopError(f"the payload template did not render to JSON ({e}): {text[:200]}") from None
    return walk(template)


def check_action(action: Any) -> list[str]:
    """Syntax problems in an action's payload templates (for validating a monitor when it is applied).

    Values are only known when an incident opens: a template naming a label the incident lacks fails
    then, and the action row is dead with that error.
    """
    env = _env()
    texts: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    collect(action.payload)
    problems = []
    for text in texts:
        try:
            env.parse(text)
        except TemplateError as e:
            problems.append(f"action {action.name}: payload template {text[:60]!r}: {e}")
    return problems


def enqueue_action(
    db_session: Session,
    *,
    incident: Any,
    action: Any,
    base_url: str = "",
    event: str = "created",
    language: str = "zh",
    key: str | None = None,
) -> Notification:
    """Queue an action call for an incident in the caller's transaction (no commit).

    It waits as `awaiting_approval` when the action requires approval. Queueing the same action for
    the same incident event twice returns the first row. A payload template that fails to render
    does not stop the incident from opening: the row is written dead, with the error, and the
    timeline says so.
    """
    key = key or f"action:{action.name}:incident:{incident.id}:{event}"
    call: dict[str, Any] = {
        "action": action.name,
        "url": action.url,
        "method": action.method,
        "headers": dict(action.headers),
        "secret": action.secret,  # the ${ENV} reference, never the value
        "require_approval": action.require_approval,
        "approvers": list(action.approvers),
    }
    error = ""
    try:
        call["body"] = render_payload(
            action.payload, template_context(incident, base_url=base_url, event=event, language=language)
        )
    except (TemplateError, MetricloopError) as e:
        call["body"] = None
        error = f"payload template of action {action.name} failed for this incident: {getattr(e, 'message', None) or e}"
    row = enqueue(
        db_session,
        key=key,
        channel=f"{ACTION_PREFIX}{action.name}",
        event=event,
        recipient=action.url,
        incident_id=incident.id,
        subject=f"action {action.name}",
        body=json.dumps(call["body"], ensure_ascii=False, indent=2) if call["body"] is not None else "",
        payload=call,
        language=language,
        kind="action",
        status="awaiting_approval" if action.require_approval else "pending",
        max_attempts=action.max_attempts,
    )
    if row is None:  # already queued: the first row stands
        return db_session.scalar(select(Notification).where(Notification.idempotency_key == key))
    if error:
        row.status, row.last_error = "dead", error
        timeline(db_session, row, "action_failed", f"action {action.name} not run: {error}")
    elif action.require_approval:
        who = ", ".join(action.approvers) or "any operator"
        timeline(db_session, row, "action_requested", f"action {action.name} waits for approval by {who}")
    else:
        timeline(db_session, row, "action_queued", f"action {action.name} queued ({action.method} {action.url})")
    return row


def _action_row(db_session: Session, notification_id: int, actor: str, verb: str) -> Notification:
    row = get(db_session, notification_id)
    if row.kind != "action":
        raise MetricloopError(f"outbox row #{row.id} is a notification, not an action; only actions are approved")
    name = row.channel.removeprefix(ACTION_PREFIX)
    approvers = list((row.payload or {}).get("approvers") or [])
    if approvers and actor not in approvers:
        raise NotPermitted(f"{actor} may not {verb} action {name} (approvers: {', '.join(approvers)})")
    return row


def _transition(db_session: Session, row: Notification, verb: str, values: dict) -> None:
    result = db_session.execute(
        update(Notification)
        .where(Notification.id == row.id, Notification.status == "awaiting_approval")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db_session.refresh(row)
    if result.rowcount != 1:
        name = row.channel.removeprefix(ACTION_PREFIX)
        by = f" by {row.approved_by}" if row.approved_by else ""
        raise ActionStateError(
            f"action {name} (outbox #{row.id}) is {row.status}{by}; only an action awaiting approval can be {verb}d"
        )


def approve_action(
    db_session: Session, *, notification_id: int, actor: str, now: datetime | None = None
) -> Notification:
    """Let a waiting action go out: awaiting_approval → pending, with the approver recorded."""
    now = as_utc(now)
    row = _action_row(db_session, notification_id, actor, "approve")
    _transition(db_session, row, "approve", {"status": "pending", "approved_by": actor, "next_attempt_at": now})
    name = row.channel.removeprefix(ACTION_PREFIX)
    timeline(db_session, row, "action_approved", f"{actor} approved action {name}", actor=actor, at=now)
    return row


def reject_action(
    db_session: Session, *, notification_id: int, actor: str, reason: str = "", now: datetime | None = None
) -> Notification:
    """Refuse a waiting action: awaiting_approval → rejected. It is never sent."""
    now = as_utc(now)
    row = _action_row(db_session, notification_id, actor, "reject")
    why = f"rejected by {actor}" + (f": {reason}" if reason else "")
    _transition(db_session, row, "reject", {"status": "rejected", "last_error": why})
    name = row.channel.removeprefix(ACTION_PREFIX)
    message = f"{actor} rejected action {name}" + (f": {reason}" if reason else "")
    timeline(db_session, row, "action_rejected", message, actor=actor, at=now, reason=reason)
    return row
