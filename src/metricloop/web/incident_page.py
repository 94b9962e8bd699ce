"""GET /incidents/{id}: the incident page a person opens from a message, read-only, with Acknowledge / Resolve
buttons while the state allows them.

The link in a message carries a signed, expiring `view` token (notify/signing.py); the page is the permission's
holder's, and its buttons are the message's own signed links (same recipient, same nonce: each acts once), which
expire with it and stop acting once the incident is reopened. Without a valid token the page says how to get
in (HTTP 401), unless METRICLOOP_PUBLIC_READS opens reads to anyone (then without buttons).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.api.deps import workspace
from metricloop.api.guards import rate_limited
from metricloop.api.params import IncidentId
from metricloop.errors import MetricloopError
from metricloop.incidents.models import Incident, IncidentEvent
from metricloop.notify.links import episode_of
from metricloop.notify.render import LANGUAGES as LANGS
from metricloop.notify.render import (
    SEVERITIES,
    STATE_TEXT,
    incident_links,
    incident_title,
    message_values,
    severity_reason,
)
from metricloop.notify.signing import DEFAULT_TTL, check_link, secret_key_for
from metricloop.web.pages import WORDS, clock, event_word, notice, page, pick_language, refusal_zh, zone_name

router = APIRouter(dependencies=[Depends(rate_limited)])  # no API token: each address gets a rate


def page_path(incident_id: int, **query: str) -> str:
    """The page's own URL, relative to the server, with `token` and `lang` where given."""
    return f"/incidents/{incident_id}" + (f"?{urlencode(query)}" if query else "")


def timezone_of(ws) -> str:
    return ws.config.get("timezone") or "Asia/Shanghai"


def incident_view(db_session: Session, ws, inc: Incident, lang: str) -> dict:
    """What the page shows of an incident, in `lang`."""
    summary = dict(inc.summary or {})
    tz = timezone_of(ws)
    words = WORDS[lang]
    sev = SEVERITIES.get(inc.severity, SEVERITIES["P3"])
    reason = severity_reason(summary, inc.severity, lang)
    open_ = inc.state in ("triggered", "acknowledged")
    times = [(words["opened"], clock(inc.created_at, tz), False)]
    if inc.state == "triggered" or inc.ack_breached:
        times.append((words["ack_due"], clock(inc.ack_due_at, tz), inc.ack_breached))
    if inc.acknowledged_at:
        times.append((words["acknowledged_at"], clock(inc.acknowledged_at, tz), False))
    if open_ or inc.resolve_breached:
        times.append((words["resolve_due"], clock(inc.resolve_due_at, tz), inc.resolve_breached))
    if inc.resolved_at:
        times.append((words["resolved_at"], clock(inc.resolved_at, tz), False))
    events = db_session.scalars(
        select(IncidentEvent).where(IncidentEvent.incident_id == inc.id).order_by(IncidentEvent.at, IncidentEvent.id)
    )
    return {
        "id": inc.id,
        "title": incident_title(inc, lang),
        "severity": inc.severity,
        "sev_name": sev[lang],
        "state": inc.state,
        "state_text": STATE_TEXT[lang].get(inc.state, inc.state),
        "explanation": summary.get(f"explanation_{lang}") or summary.get("explanation") or "",
        "reason": reason[len(inc.severity) + 1 :].strip() if reason else "",
        "numbers": message_values(summary) | {"direction": summary.get("direction") or ""},
        "metric": inc.metric,
        "metric_title": summary.get(f"metric_title_{lang}") or inc.metric,
        "monitor": inc.monitor,
        "slices": [words["total"] if sl == "*" else sl for sl in (inc.slices or [])],
        "assignee": inc.assignee,
        "team": inc.team,
        "times": times,
        "root_cause": inc.root_cause,
        "resolution": inc.resolution,
        # the root-cause analysis the incident opened with (rca/service.py puts its top causes in the summary)
        "rca": {
            "title": {"zh": "根因分析", "en": "Root causes"}[lang],
            "explanation": summary.get(f"rca_explanation_{lang}") or "",
            "causes": [
                " & ".join(f"{k}={v}" for k, v in (c.get("dimensions") or {}).items())
                + (f" ({c['deviation_pct']:+.0f}%)" if isinstance(c.get("deviation_pct"), int | float) else "")
                for c in summary.get("rca_causes") or [] if isinstance(c, dict)
            ],
        },
        "zone": zone_name(tz, lang),
        "timeline": [
            {
                "at": clock(e.at, tz),
                "kind": e.kind,
                "word": event_word(e.kind, lang),
                "actor": e.actor,
                "message": e.message,
            }
            for e in events
        ],
        "ack_url": None,
        "resolve_url": None,
        "until": "",
        "read_only": False,
        "hint": "",
    }


def language_switch(path: str, token: str | None) -> list[tuple[str, str]]:
    """The same page in each language (the token kept)."""
    return [
        (code, f"{path}?{urlencode({'token': token, 'lang': code} if token else {'lang': code})}") for code in LANGS
    ]


def until_text(expires: int, ws, lang: str) -> str:
    tz = timezone_of(ws)
    return f"{clock(datetime.fromtimestamp(expires, UTC), tz)} {zone_name(tz, lang)}"


def refused(incident_id: int, reason: str, *, status: int = 401) -> object:
    """The page for a link that does not open: both languages, since whoever opens it may read either."""
    days = DEFAULT_TTL // 86400
    api = f"GET /api/incidents/{incident_id}"
    return notice(
        None,
        status=status,
        title={"zh": "无法打开这个工单页面", "en": "This incident page cannot be opened"},
        lines={
            "zh": [
                f"原因：{refusal_zh(reason)}。",
                "这个页面要从 metricloop 消息（邮件、群聊或 Webhook）里的工单链接打开："
                f"链接带有签名，{days} 天内有效。",
                f"也可以用 API 令牌读取这个工单：{api}，请求头 Authorization: Bearer <令牌>"
                "（用 metricloop tokens create 创建令牌）。",
            ],
            "en": [
                f"Why: {reason}.",
                "This page opens from the incident link in a metricloop message (email, chat or webhook): the link is "
                f"signed and works for {days} days.",
                f"Or read the incident over the API with a token: {api} with the header Authorization: Bearer <token> "
                "(create one with metricloop tokens create).",
            ],
        },
    )


def not_found(incident_id: int, lang: str | None = None):
    return notice(
        lang,
        status=404,
        title={"zh": f"没有工单 #{incident_id}", "en": f"No incident #{incident_id}"},
        lines={"zh": ["这个工单不存在（或已被删除）。"], "en": ["This incident does not exist (or was deleted)."]},
    )


@router.get("/incidents/{incident_id}", include_in_schema=False)
def incident_page(incident_id: IncidentId, request: Request, token: str | None = None, ws=Depends(workspace)):
    lang = pick_language(request, ws.config.get("language", "zh"))
    key = secret_key_for(ws)
    held = None
    try:
        held = check_link(token, key=key, action="view", incident_id=incident_id)
    except MetricloopError as e:
        if token or not ws.settings.public_reads:  # a token that is sent must be valid, as in the API
            return refused(incident_id, e.message)
    with ws.db.session() as s:
        inc = s.get(Incident, incident_id)
        if inc is None:
            return not_found(incident_id, lang)
        v = incident_view(s, ws, inc, lang)
        from metricloop.knowledge.views import link_panel

        knowledge = link_panel(s, ws, inc, lang)
        if held is None:
            v["read_only"] = inc.state in ("triggered", "acknowledged")
        elif held.episode != episode_of(s, inc.id):  # a link from before a reopen: it still shows, it cannot act
            v["read_only"] = inc.state in ("triggered", "acknowledged")
            v["hint"] = WORDS[lang]["outdated"]
        else:
            # The buttons are the links of the message that opened the page: the same recipient, episode and nonce
            # (so each acts once, whichever copy is used), ending when the page's own link does.
            links = incident_links(
                inc,
                base_url="",
                secret_key=key,
                expires=held.expires,
                episode=held.episode,
                nonce=held.nonce,
                recipient=held.recipient,
                via=held.via,
            )
            v["ack_url"] = links["ack"] and f"{links['ack']}&lang={lang}"
            v["resolve_url"] = links["resolve"] and f"{links['resolve']}&lang={lang}"
            v["until"] = until_text(held.expires, ws, lang)
    switch = language_switch(page_path(incident_id), token)
    return page("incident.html", lang=lang, v=v, words=WORDS[lang], switch=switch, knowledge=knowledge)
