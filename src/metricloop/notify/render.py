"""Messages about an incident, in Chinese or English, from Jinja2 templates (notify/templates/*.j2).

`render_incident` returns the subject and plain-text body (email, chat) and the JSON payload that a
webhook receives. The payload's keys are stable and documented in docs/notifications.md.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from metricloop.errors import MetricloopError
from metricloop.notify.signing import DEFAULT_TTL, sign_action

TEMPLATES = Path(__file__).parent / "templates"
EVENTS = ("created", "escalated", "repeat", "resolved", "reopened", "acknowledged", "reassigned", "severity_raised")
LANGUAGES = ("zh", "en")
REASONED_EVENTS = ("created", "severity_raised")  # the messages that announce a severity say why
PAYLOAD_VERSION = 1

SEVERITIES = {
    "P1": {"code": "P1", "zh": "红", "en": "red", "colour": "red", "mark": "🔴"},
    "P2": {"code": "P2", "zh": "橙", "en": "orange", "colour": "orange", "mark": "🟠"},
    "P3": {"code": "P3", "zh": "黄", "en": "yellow", "colour": "yellow", "mark": "🟡"},
}

_EVENT_TEXT = {
    "zh": {
        "created": "新工单",
        "escalated": "工单升级（第 {level} 级）",
        "repeat": "仍未恢复",
        "resolved": "已解决",
        "reopened": "工单重新打开",
        "acknowledged": "已认领",
        "reassigned": "工单转派",
        "severity_raised": "严重程度升级",
    },
    "en": {
        "created": "New incident",
        "escalated": "Escalated (level {level})",
        "repeat": "Still firing",
        "resolved": "Resolved",
        "reopened": "Reopened",
        "acknowledged": "Acknowledged",
        "reassigned": "Reassigned",
        "severity_raised": "Severity raised",
    },
}

STATE_TEXT = {
    "zh": {"triggered": "待处理", "acknowledged": "处理中", "resolved": "已解决", "reviewed": "已复盘"},
    "en": {"triggered": "triggered", "acknowledged": "acknowledged", "resolved": "resolved", "reviewed": "reviewed"},
}

_NOTE = {
    "zh": {
        "escalated": "该工单在规定时间内无人认领，已升级通知。",
        "repeat": "指标仍然异常，工单尚未解决。",
        "resolved": "指标已恢复正常或工单已被解决。",
        "acknowledged": "{who} 已认领该工单。",
        "reassigned": "该工单已转派给 {who}，由其负责跟进。",
        "severity_raised": "该工单情况变严重，已升级为 {sev[code]}（{sev[zh]}），处理时限随之收紧。",
    },
    "en": {
        "escalated": "Nobody acknowledged this incident in time, so it was escalated.",
        "repeat": "The metric is still abnormal and the incident is not resolved.",
        "resolved": "The metric is back to normal or the incident was resolved.",
        "acknowledged": "{who} is on it.",
        "reassigned": "This incident is now assigned to {who}, who owns it from here.",
        "severity_raised": "This incident grew worse: it is now {sev[code]} ({sev[en]}), with that severity's "
        "tighter deadlines.",
    },
}


def fmt_number(value: Any) -> str:
    """Readable numbers: thousands separators, few decimals, '—' when unknown."""
    if value is None:
        return "—"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x) or math.isinf(x):
        return "—"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 100_000:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:,.2f}".rstrip("0").rstrip(".")
    return f"{x:.4g}"


def fmt_pct(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return f"{float(value):+.1f}%"
    except (TypeError, ValueError):
        return str(value)


def template_environment(folder: Path, *, html: bool) -> Environment:
    """Templates of a folder with the number filters; `html` escapes what they show (web pages)."""
    env = Environment(
        loader=FileSystemLoader(str(folder)),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_number
    env.filters["pct"] = fmt_pct
    return env


@lru_cache(maxsize=1)
def environment() -> Environment:
    return template_environment(TEMPLATES, html=False)  # plain text; webhook JSON is built from data


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:  # SQLite returns naive datetimes for timezone-aware columns; they are UTC
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_time(t: datetime | None, tz: str, lang: str) -> str:
    if t is None:
        return "—"
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    local = t.astimezone(ZoneInfo(tz))
    if lang == "zh" and tz == "Asia/Shanghai":
        return local.strftime("%Y-%m-%d %H:%M 北京时间")
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M ") + f"UTC{offset[:3]}:{offset[3:]}".replace("UTC+00:00", "UTC")


def signed_link(
    incident_id: int,
    action: str,
    *,
    base_url: str,
    secret_key: str | None,
    ttl_seconds: int = DEFAULT_TTL,
    now: float | None = None,
    expires: int | None = None,
    **claims,
) -> str:
    """A link with a signed, expiring token: `view` opens the incident's web page (no API token needed); `ack` and
    `resolve` open a page that asks to confirm, and the confirmation (a POST to the same URL) acts. Without a
    `secret_key` the token is a placeholder that the dispatcher signs on delivery (notify/links.py); `claims` are
    sign_action's episode, nonce, recipient and via."""
    if secret_key is None:
        from metricloop.notify.links import placeholder

        token = placeholder(action, claims.get("episode", 0))
    else:
        token = sign_action(
            incident_id, action, key=secret_key, ttl_seconds=ttl_seconds, now=now, expires=expires, **claims
        )
    path = f"/incidents/{incident_id}" if action == "view" else f"/api/incidents/{incident_id}/{action}"
    return f"{base_url.rstrip('/')}{path}?token={token}"


def incident_links(
    incident,
    *,
    base_url: str,
    secret_key: str | None,
    ttl_seconds: int = DEFAULT_TTL,
    now: float | None = None,
    expires: int | None = None,
    **claims,
) -> dict:
    """The incident page, and signed expiring ack/resolve links where the state still allows them. The links of one
    call share a nonce, so each action's link is spent once whichever copy acts (the message's or its page's)."""
    if secret_key is not None and not claims.get("nonce"):
        from metricloop.notify.signing import new_nonce

        claims["nonce"] = new_nonce()
    signed = dict(base_url=base_url, secret_key=secret_key, ttl_seconds=ttl_seconds, now=now, expires=expires)
    signed |= claims
    links: dict[str, str | None] = {"incident": signed_link(incident.id, "view", **signed)}
    state = incident.state or "triggered"
    links["ack"] = signed_link(incident.id, "ack", **signed) if state == "triggered" else None
    links["resolve"] = signed_link(incident.id, "resolve", **signed) if state in ("triggered", "acknowledged") else None
    # feedback, welcome in any state (web/feedback_links.py)
    for label in ("false_alarm", "expected"):
        links[label] = signed_link(incident.id, label, **signed)
    return links


def incident_title(incident, language: str | None) -> str:
    """The incident's title in `language` when its summary has one (a Chinese workspace's incident
    read in English), else the stored title. Messages, payloads and the page all use this."""
    summary = incident.summary or {}
    return (summary.get(f"title_{language}") if language else None) or incident.title


def incident_fields(incident, *, base_url: str, url: str | None = None, language: str | None = None) -> dict:
    """The incident as messages and action payloads show it; `url` is its page (default: the bare page);
    `language` picks the title (default: the stored one)."""
    sev = SEVERITIES.get(incident.severity, SEVERITIES["P3"])
    return {
        "id": incident.id,
        "title": incident_title(incident, language),
        "state": incident.state or "triggered",
        "severity": incident.severity,
        "severity_colour": sev["colour"],
        "kind": getattr(incident, "kind", None) or "metric",
        "metric": incident.metric,
        "monitor": incident.monitor or "",
        "slices": [str(s) for s in (incident.slices or [])],
        "labels": dict(incident.labels or {}),
        "assignee": incident.assignee or "",
        "team": incident.team or "",
        "created_at": _iso(incident.created_at),
        "acknowledged_at": _iso(getattr(incident, "acknowledged_at", None)),
        "resolved_at": _iso(getattr(incident, "resolved_at", None)),
        "url": url or f"{base_url.rstrip('/')}/incidents/{incident.id}",
    }


def message_values(summary: dict) -> dict:
    unit = summary.get("unit") or ""
    return {
        "actual": summary.get("actual"),
        "expected": summary.get("expected"),
        "lower": summary.get("lower"),
        "upper": summary.get("upper"),
        "deviation_pct": summary.get("deviation_pct"),
        "unit": unit if unit in ("", None) or unit.startswith(("%", " ")) else f" {unit}",
    }


def severity_reason(summary: dict, severity: str, language: str) -> str | None:
    """Why the incident has its severity, in `language` ("P1: 400 CNY at stake, 11% of the total …"), or None when
    the summary says nothing about it or speaks of another severity (a reason recorded before a raise)."""
    reason = summary.get(f"severity_reason_{language}") or ""
    sep = next((s for s in (": ", "：") if reason.startswith(severity + s)), None)
    if sep is None:
        return None
    # the level came from another member than the one the incident is headed by (the total, or its
    # first slice): say which, as an escalation does ("P1: region=South: 12% below expected")
    where = summary.get("severity_slice")
    members = summary.get("members") or []
    lead = members[0].get("slice") if members and isinstance(members[0], dict) else None
    if where and where != "*" and lead is not None and where != lead:
        return f"{severity}{sep}{where}{sep}{reason[len(severity + sep):]}"
    return reason


def render_incident(
    incident,
    *,
    event: str,
    language: str,
    base_url: str,
    secret_key: str | None,
    level: int = 0,
    channel_type: str = "email",
    timezone: str = "Asia/Shanghai",
    ttl_seconds: int = DEFAULT_TTL,
    now: float | None = None,
    episode: int = 0,
) -> tuple[str, str, dict]:
    """(subject, body, payload) for one incident event in one language. With `secret_key=None` (what the outbox
    stores) the links carry placeholder tokens that the dispatcher signs for each recipient on delivery."""
    if event not in EVENTS:
        raise MetricloopError(f"unknown notification event '{event}' (known: {', '.join(EVENTS)})")
    lang = language if language in LANGUAGES else "zh"
    summary = dict(incident.summary or {})
    explanation = summary.get(f"explanation_{lang}") or summary.get("explanation") or ""
    links = incident_links(
        incident, base_url=base_url, secret_key=secret_key, ttl_seconds=ttl_seconds, now=now, episode=episode
    )
    fields = incident_fields(incident, base_url=base_url, url=links["incident"], language=lang)
    values = message_values(summary)
    sev = SEVERITIES.get(incident.severity, SEVERITIES["P3"])
    event_text = _EVENT_TEXT[lang][event].format(level=level + 1)
    who = incident.assignee or ("有人" if lang == "zh" else "someone")
    note = _NOTE[lang].get(event, "").format(who=who, sev=sev)
    reason = severity_reason(summary, incident.severity, lang)
    ctx = {
        "incident": fields,
        "sev": sev,
        "event": event,
        "event_text": event_text,
        "level": level,
        "explanation": explanation,
        "last_similar": summary.get(f"last_similar_{lang}") or "",  # knowledge/similar.py: what was done last time
        "values": values,
        "links": links,
        "state_text": STATE_TEXT[lang].get(fields["state"], fields["state"]),
        "created": local_time(incident.created_at, timezone, lang),
        "note": note,
        # why this severity, without its "P1: " (the templates say it); on the messages that announce a severity
        "severity_reason": reason[len(sev["code"]) + 1 :].strip() if reason and event in REASONED_EVENTS else "",
        "ttl_days": max(1, round(ttl_seconds / 86400)),
        "channel_type": channel_type,
        "language": lang,
        # root-cause analysis (rca/service.py): the top causes and the sentence naming the likely cause
        "rca_causes": list(summary.get("rca_causes") or [])[:3],
        "rca_explanation": summary.get(f"rca_explanation_{lang}") or "",
    }
    env = environment()
    subject = env.get_template(f"subject.{lang}.j2").render(ctx).strip()
    body = env.get_template(f"body.{lang}.j2").render(ctx).strip() + "\n"
    payload = {
        "version": PAYLOAD_VERSION,
        "event": event,
        "seq": getattr(incident, "seq", 0) or 0,  # the incident's event number: the highest is its current state
        "level": level,
        "language": lang,
        "subject": subject,
        "text": body,
        "incident": fields,
        "explanation": explanation,
        "severity_reason": reason,
        "values": {k: v for k, v in values.items() if k != "unit"} | {"unit": summary.get("unit") or ""},
        "links": links,
        "causes": ctx["rca_causes"],
    }
    return subject, body, payload


_NOW_TEXT = {
    "zh": "当前状态（第 {seq} 号事件之后）：{state}，{severity}。本消息说的是较早的事件。",
    "en": "Current state (after event {seq}): {state}, {severity}. This message is about an earlier event.",
}


def current_state_note(language: str, *, state: str, severity: str, seq: int) -> str:
    """The line that a message delivered after its incident has moved on starts with (email and chat)."""
    lang = language if language in LANGUAGES else "zh"
    sev = SEVERITIES.get(severity, SEVERITIES["P3"])
    return _NOW_TEXT[lang].format(
        seq=seq, state=STATE_TEXT[lang].get(state, state), severity=f"{sev['code']} {sev[lang]}"
    )
