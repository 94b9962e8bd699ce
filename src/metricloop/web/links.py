"""The signed acknowledge / resolve links of messages: GET asks to confirm, POST acts.

Mail security scanners open ("pre-fetch") every link of a message, so a GET that changed the incident would
acknowledge it before anyone read the mail. GET `/api/incidents/{id}/ack?token=…` shows the incident and a
button; the button POSTs the form to the same URL, and that acknowledges (resolve: with an optional root cause
and note). The signed, expiring token is the permission, as it is for the incident page.

A link acts once, as the recipient its token names: acting records its use (notify/links.py LinkUse) in the
transaction that changes the incident, and a link that was used, or that is from before the incident was reopened,
answers 410 and changes nothing. The timeline names the recipient and the way ("li.lei@… via e-mail link").

The POST shares its path with the API's `POST /api/incidents/{id}/ack` (an operator's API token). A request with
`?token=` in its query string is a confirmation and is routed here; any other goes to the API.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from starlette.routing import Match

from metricloop.api.contract import errors
from metricloop.api.deps import workspace
from metricloop.api.guards import rate_limited
from metricloop.api.params import IncidentId
from metricloop.db.times import aware
from metricloop.errors import MetricloopError, NotFound
from metricloop.incidents import service
from metricloop.incidents.models import Incident
from metricloop.notify import links as message_links
from metricloop.notify.render import STATE_TEXT
from metricloop.notify.signing import Link, check_link, secret_key_for, sign_action
from metricloop.web.incident_page import incident_view, language_switch, not_found, page_path, until_text
from metricloop.web.pages import WORDS, notice, page, pick_language, refusal_zh

ALLOWED = {"ack": ("triggered",), "resolve": service.OPEN_STATES}

TEXT = {
    "ack": {
        "zh": {
            "question": "认领这个工单？",
            "explain": "认领表示由你负责处理：升级通知会立即停止。",
            "button": "确认认领",
            "done_title": "已认领",
            "done": "工单 #{id} 已认领，升级通知已停止。",
            "not_now": "工单 #{id} 当前为「{state}」，不能再认领。",
        },
        "en": {
            "question": "Acknowledge this incident?",
            "explain": "Acknowledging says you are on it: escalation stops at once.",
            "button": "Acknowledge",
            "done_title": "Acknowledged",
            "done": "Incident #{id} acknowledged. Escalation has stopped.",
            "not_now": "Incident #{id} is {state}: it cannot be acknowledged now.",
        },
    },
    "resolve": {
        "zh": {
            "question": "把这个工单标记为已解决？",
            "explain": "可以写下根因和处理说明，以后再出现类似问题时能找到。",
            "button": "确认解决",
            "done_title": "已解决",
            "done": "工单 #{id} 已解决。",
            "not_now": "工单 #{id} 当前为「{state}」，不能再标记为已解决。",
        },
        "en": {
            "question": "Resolve this incident?",
            "explain": "You may write down the root cause and what was done, so the next person finds it.",
            "button": "Resolve",
            "done_title": "Resolved",
            "done": "Incident #{id} resolved.",
            "not_now": "Incident #{id} is {state}: it cannot be resolved now.",
        },
    },
}


def _has_token(scope) -> bool:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return "token" in query


class SignedLinkRoute(APIRoute):
    """Matches only a request whose query string has `token`; any other request to the path falls through to the
    next route of the same path (the API's)."""

    def matches(self, scope):
        match, child = super().matches(scope)
        if match is not Match.NONE and not _has_token(scope):
            return Match.NONE, {}
        return match, child


LIMITED = [Depends(rate_limited)]  # no API token: each address gets a rate (api/guards.py)
router = APIRouter(prefix="/api/incidents", tags=["incidents"], dependencies=LIMITED)
# Included before the API's incident routes; hidden from the OpenAPI document, which lists the API's POST.
confirmations = APIRouter(
    prefix="/api/incidents", route_class=SignedLinkRoute, include_in_schema=False, dependencies=LIMITED
)
PAGE = {"response_class": HTMLResponse, "responses": errors(400, 404, 409)}  # a page, also when it refuses


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a submitted HTML form (application/x-www-form-urlencoded, what a plain form sends)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {k: v[0].strip() for k, v in fields.items()}


def _refused(incident_id: int, reason: str):
    """A link that does not verify: both languages (whoever opens it may read either)."""
    return notice(
        None,
        status=400,
        title={"zh": "这个链接无法使用", "en": "This link does not work"},
        lines={
            "zh": [f"原因：{refusal_zh(reason)}。", f"工单 #{incident_id} 没有任何改动。"],
            "en": [f"Why: {reason}.", f"Nothing was changed on incident #{incident_id}."],
        },
    )


def _back(link: Link, key: str, lang: str) -> tuple[str, str]:
    """A link back to the incident page that works as long as the action link did (the same recipient and nonce)."""
    view = sign_action(
        link.incident_id,
        "view",
        key=key,
        expires=link.expires,
        episode=link.episode,
        nonce=link.nonce,
        recipient=link.recipient,
        via=link.via,
    )
    return page_path(link.incident_id, token=view, lang=lang), WORDS[lang]["open_incident"]


def _checked(incident_id: int, action: str, token: str | None, request: Request, ws):
    """(language, the link, way back to the incident page) for a link that verifies, else the page refusing it."""
    lang = pick_language(request, ws.config.get("language", "zh"))
    key = secret_key_for(ws)
    try:
        link = check_link(token, key=key, action=action, incident_id=incident_id)
    except MetricloopError as e:
        return _refused(incident_id, e.message)
    return lang, link, _back(link, key, lang)


def _not_now(inc: Incident, action: str, lang: str, back):
    text = TEXT[action][lang]["not_now"].format(id=inc.id, state=STATE_TEXT[lang].get(inc.state, inc.state))
    title = {"zh": "无需操作", "en": "Nothing to do"}[lang]
    return notice(lang, status=409, title={lang: title}, lines={lang: [text]}, link=back)


GONE = {
    "zh": {
        "title": "这个链接已失效",
        "used": "这个链接已经用过了（{when}，{who}），每个链接只能操作一次。工单 #{id} 没有任何改动。",
        "outdated": "这个链接发出后工单 #{id} 已重新打开，旧链接不能再操作；请使用最新消息中的链接。工单没有任何改动。",
    },
    "en": {
        "title": "This link was already used",
        "used": "This link was already used ({when}, {who}); a link acts once. Nothing was changed on incident #{id}.",
        "outdated": "Incident #{id} was reopened after this link was sent, so it no longer acts; use the links of the "
        "newest message. Nothing was changed.",
    },
}


def _gone(s, ws, link: Link, lang: str, back):
    """The 410 page for a link that cannot act any more (used, or from an earlier episode), else None."""
    words = GONE[lang]
    use = message_links.used(s, link.nonce, link.action)
    if use is not None:
        when = until_text(int(aware(use.used_at).timestamp()), ws, lang)
        text = words["used"].format(id=link.incident_id, when=when, who=use.actor)
        title = words["title"]
    elif link.episode != message_links.episode_of(s, link.incident_id):
        text = words["outdated"].format(id=link.incident_id)
        title = {"zh": "这个链接已过时", "en": "This link is out of date"}[lang]
    else:
        return None
    return notice(lang, status=410, title={lang: title}, lines={lang: [text]}, link=back)


def opened(incident_id: int, action: str, token: str | None, request: Request, ws, *, states=None):
    """(language, the link, way back, the incident's view) for a link that may still act on an incident in one of
    `states` (None: any), else the page that says why not. What every confirm page starts with."""
    checked = _checked(incident_id, action, token, request, ws)
    if isinstance(checked, Response):
        return checked
    lang, link, back = checked
    with ws.db.session() as s:
        inc = s.get(Incident, incident_id)
        if inc is None:
            return not_found(incident_id, lang)
        gone = _gone(s, ws, link, lang, back)
        if gone is not None:
            return gone
        if states is not None and inc.state not in states:
            return _not_now(inc, action, lang, back)
        return lang, link, back, incident_view(s, ws, inc, lang)


def confirm_page(incident_id: int, action: str, token: str | None, request: Request, ws):
    got = opened(incident_id, action, token, request, ws, states=ALLOWED[action])
    if isinstance(got, Response):
        return got
    lang, _, back, v = got
    text = TEXT[action][lang]
    return page(
        "confirm.html",
        lang=lang,
        v=v,
        words=WORDS[lang],
        action=action,
        question=text["question"],
        explain=text["explain"],
        button=text["button"],
        action_url=f"/api/incidents/{incident_id}/{action}?token={token}&lang={lang}",
        page_url=back[0],
        switch=language_switch(f"/api/incidents/{incident_id}/{action}", token),
    )


class _Gone(Exception):
    def __init__(self, response) -> None:
        self.response = response


def act_once(incident_id: int, action: str, token: str | None, request: Request, ws, change):
    """Check the link, then in one transaction: lock the incident, refuse a spent or outdated link, record the link's
    use and `change(session, who, via)`. Returns (language, way back, what change returned), or the page that
    refuses (nothing recorded: a refusal does not spend the link). Errors of `change` other than these propagate,
    after the rollback."""
    checked = _checked(incident_id, action, token, request, ws)
    if isinstance(checked, Response):
        return checked
    lang, link, back = checked
    who, via = message_links.actor_of(link.recipient, link.via)

    def not_now():
        with ws.db.session() as s:
            inc = service.get(s, incident_id)
            return _not_now(inc, action, lang, back) if action in TEXT else not_found(incident_id, lang)

    try:
        with ws.db.session() as s:
            # Lock the incident first: two uses of one link at once are serialized, the second sees the first's use.
            service.get_for_change(s, incident_id)
            gone = _gone(s, ws, link, lang, back)
            if gone is not None:
                raise _Gone(gone)
            message_links.spend(
                s, nonce=link.nonce, action=action, incident_id=incident_id, episode=link.episode,
                actor=f"{who} via {via}" if via else who,
            )  # fmt: skip
            result = change(s, who, via)
    except _Gone as g:  # the session rolled back: nothing was recorded
        return g.response
    except NotFound:
        return not_found(incident_id, lang)
    except service.StateError:  # rolled back too: the link is not spent by a refusal
        return not_now()
    except IntegrityError:  # the same link used at the same moment elsewhere (the use's key)
        with ws.db.session() as s:
            gone = _gone(s, ws, link, lang, back)
        return gone or not_now()
    return lang, back, result


def act(incident_id: int, action: str, token: str | None, request: Request, ws, form: dict[str, str]):
    def change(s, who: str, via: str) -> None:
        if action == "ack":
            service.acknowledge(s, ws, ws.catalog(), incident_id=incident_id, actor=who, via=via)
        else:
            service.resolve(
                s,
                ws,
                ws.catalog(),
                incident_id=incident_id,
                actor=who,
                via=via,
                root_cause=form.get("root_cause", "")[:2000],
                note=form.get("note", "")[:4000] or "resolved from a message link",
            )

    done = act_once(incident_id, action, token, request, ws, change)
    if isinstance(done, Response):
        return done
    lang, back, _ = done
    text = TEXT[action][lang]
    done_text = text["done"].format(id=incident_id)
    return notice(lang, status=200, title={lang: text["done_title"]}, lines={lang: [done_text]}, link=back)


@router.get("/{incident_id}/ack", summary="Open a signed acknowledge link from a message: asks to confirm", **PAGE)
def ack_link(incident_id: IncidentId, request: Request, token: str | None = None, ws=Depends(workspace)):
    return confirm_page(incident_id, "ack", token, request, ws)


@router.get("/{incident_id}/resolve", summary="Open a signed resolve link from a message: asks to confirm", **PAGE)
def resolve_link(incident_id: IncidentId, request: Request, token: str | None = None, ws=Depends(workspace)):
    return confirm_page(incident_id, "resolve", token, request, ws)


@confirmations.post("/{incident_id}/ack")
def ack_confirmed(incident_id: IncidentId, request: Request, token: str = "", ws=Depends(workspace)):
    return act(incident_id, "ack", token, request, ws, {})


@confirmations.post("/{incident_id}/resolve")
def resolve_confirmed(
    incident_id: IncidentId, request: Request, token: str = "", form: dict = Depends(form_fields), ws=Depends(workspace)
):
    return act(incident_id, "resolve", token, request, ws, form)
