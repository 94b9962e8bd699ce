"""The signed feedback links of messages — "误报 / False alarm" and "符合预期 / Expected": GET asks to confirm,
POST labels the incident's alerts (metricloop.feedback.flows.give), exactly as the acknowledge links do
(metricloop.web.links): the signed, expiring token is the permission, a link acts once (its use is a LinkUse row
written with the label), a link from before a reopen no longer acts, and the timeline names the recipient and the
way ("li.lei@… via e-mail link"). `expected` asks for the cause, and may add the calendar event in the same step.

The paths `/api/incidents/{id}/false_alarm` and `/api/incidents/{id}/expected` answer only with `?token=`; they are
not in the OpenAPI document (the API's way to label is POST /api/incidents/{id}/feedback with an operator's token).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from metricloop.api.deps import workspace
from metricloop.api.guards import rate_limited
from metricloop.api.params import IncidentId
from metricloop.errors import MetricloopError
from metricloop.feedback.flows import CALENDAR_CAUSES, CAUSE_WORDS, give
from metricloop.feedback.models import CAUSES
from metricloop.web.incident_page import language_switch
from metricloop.web.links import act_once, form_fields, opened
from metricloop.web.pages import WORDS, notice, page, pick_language

TEXT = {
    "false_alarm": {
        "zh": {
            "question": "把这个告警标记为误报？",
            "explain": "误报会记录下来，用于调优这个监控（灵敏度、最小变化等），让以后少出这样的告警。",
            "button": "确认误报",
            "done_title": "已标记为误报",
        },
        "en": {
            "question": "Mark this alert as a false alarm?",
            "explain": "False alarms are recorded and used to tune this monitor (sensitivity, minimum change, …), "
            "so that fewer alerts like this one are sent.",
            "button": "Confirm: false alarm",
            "done_title": "Marked as a false alarm",
        },
    },
    "expected": {
        "zh": {
            "question": "这个变化符合预期？",
            "explain": "说明原因（如促销、节假日）。促销或已知事件可以直接加入日历，下次不再因此告警。",
            "button": "确认符合预期",
            "done_title": "已标记为符合预期",
        },
        "en": {
            "question": "Was this change expected?",
            "explain": "Say why (a promotion, a holiday, …). A promotion or a known event can go straight into the "
            "calendar, so the next one does not alert.",
            "button": "Confirm: expected",
            "done_title": "Marked as expected",
        },
    },
}
FORM = {
    "zh": {"cause": "原因", "calendar": "加入日历（促销或已知事件）", "note": "说明（可选）"},
    "en": {"cause": "Cause", "calendar": "Add to the calendar (promotion or known event)", "note": "Note (optional)"},
}

LIMITED = [Depends(rate_limited)]  # no API token: each address gets a rate (api/guards.py)
router = APIRouter(prefix="/api/incidents", include_in_schema=False, dependencies=LIMITED)


def confirm_page(incident_id: int, label: str, token: str | None, request: Request, ws):
    got = opened(incident_id, label, token, request, ws)  # feedback is welcome in any state
    if isinstance(got, Response):
        return got
    lang, _, back, v = got
    text = TEXT[label][lang]
    causes = [(c, CAUSE_WORDS[c][0 if lang == "zh" else 1]) for c in CAUSES]
    return page(
        "feedback_confirm.html",
        lang=lang,
        v=v,
        words=WORDS[lang],
        label=label,
        question=text["question"],
        explain=text["explain"],
        button=text["button"],
        text=FORM[lang],
        causes=causes,
        action_url=f"/api/incidents/{incident_id}/{label}?token={token}&lang={lang}",
        page_url=back[0],
        switch=language_switch(f"/api/incidents/{incident_id}/{label}", token),
    )


def act(incident_id: int, label: str, token: str | None, request: Request, ws, form: dict[str, str]):
    cause = form.get("cause") or None if label == "expected" else None
    calendar = label == "expected" and form.get("add_to_calendar") == "1" and cause in CALENDAR_CAUSES

    def change(s, who: str, via: str):
        return give(
            s, ws, ws.catalog(), label=label, actor=who, via="link", incident_id=incident_id, cause=cause,
            note=(form.get("note", "")[:2000] + (f" ({via})" if via else "")).strip(), add_to_calendar=calendar,
        )  # fmt: skip

    try:
        done = act_once(incident_id, label, token, request, ws, change)
    except MetricloopError as e:  # a label the incident cannot take (e.g. a bad cause): nothing stored, link unspent
        lang = pick_language(request, ws.config.get("language", "zh"))
        return notice(lang, status=422, title={lang: TEXT[label][lang]["question"]}, lines={lang: [e.message]})
    if isinstance(done, Response):
        return done
    lang, back, given = done
    key = "message_zh" if lang == "zh" else "message_en"
    lines = [x[key] for x in given.effects]
    return notice(lang, status=200, title={lang: TEXT[label][lang]["done_title"]}, lines={lang: lines}, link=back)


@router.get("/{incident_id}/false_alarm")
def false_alarm_link(incident_id: IncidentId, request: Request, token: str | None = None, ws=Depends(workspace)):
    return confirm_page(incident_id, "false_alarm", token, request, ws)


@router.get("/{incident_id}/expected")
def expected_link(incident_id: IncidentId, request: Request, token: str | None = None, ws=Depends(workspace)):
    return confirm_page(incident_id, "expected", token, request, ws)


@router.post("/{incident_id}/false_alarm")
def false_alarm_confirmed(
    incident_id: IncidentId, request: Request, token: str = "", form: dict = Depends(form_fields), ws=Depends(workspace)
):
    return act(incident_id, "false_alarm", token, request, ws, form)


@router.post("/{incident_id}/expected")
def expected_confirmed(
    incident_id: IncidentId, request: Request, token: str = "", form: dict = Depends(form_fields), ws=Depends(workspace)
):
    return act(incident_id, "expected", token, request, ws, form)
