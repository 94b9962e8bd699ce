"""The console incident screen's feedback panel: the labels given on the incident (who, when, what it changed) and
buttons to give one — confirmed, false alarm, expected (with its cause, and the calendar in the same step), new
normal (from a date). The screen gets the panel's data through `feedback_panel(...)`, the template
`console/_feedback.html` shows it, and the buttons POST to /console/incidents/{id}/feedback/give (CSRF and the
operator role checked as for every console form)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from metricloop.api.deps import workspace
from metricloop.db.times import aware
from metricloop.errors import MetricloopError
from metricloop.feedback.flows import CALENDAR_CAUSES, CAUSE_WORDS, LABEL_WORDS, give
from metricloop.feedback.models import CAUSES, Feedback
from metricloop.feedback.service import effective_labels, label_of
from metricloop.web.pages import clock

router = APIRouter(include_in_schema=False)

WORDS = {
    "zh": {
        "title": "反馈",
        "explain": "告诉 metricloop 这个告警是否准确：误报和漏报用于调优，新常态会从指定日期起重设基线。",
        "none": "还没有人给出反馈。",
        "cause": "原因",
        "calendar": "同时加入日历（促销或已知事件）",
        "since": "新水平开始的日期",
        "note": "说明（可选）",
        "replaced": "已被后来的反馈取代",
        "give": "提交",
    },
    "en": {
        "title": "Feedback",
        "explain": "Tell metricloop whether this alert was right: false alarms and misses tune the monitor; a new "
        "normal re-baselines the series from its date.",
        "none": "Nobody has given feedback yet.",
        "cause": "Cause",
        "calendar": "Also add it to the calendar (promotion or known event)",
        "since": "The day the new level began",
        "note": "Note (optional)",
        "replaced": "replaced by a later label",
        "give": "Give",
    },
}
BUTTONS = ("confirmed", "false_alarm", "expected", "new_normal")


def feedback_panel(db_session, ws, inc, lang: str) -> dict:
    """What the panel shows for incident `inc`: every label on it, newest first, each standing or replaced."""
    rows = list(
        db_session.scalars(
            select(Feedback).where(Feedback.incident_id == inc.id).order_by(Feedback.created_at, Feedback.id)
        )
    )
    standing = {lab.id for lab in effective_labels([label_of(r) for r in rows])}
    tz = ws.config.get("timezone") or "Asia/Shanghai"
    i = 0 if lang == "zh" else 1
    seen, items = set(), []
    for r in reversed(rows):  # one line per act of feedback (a label on a 3-alert incident is 3 rows)
        key = (r.created_by, r.created_at, r.label)
        if key in seen:
            continue
        seen.add(key)
        items.append(
            {
                "label": r.label,
                "word": LABEL_WORDS[r.label][i] + (f" · {CAUSE_WORDS[r.cause][i]}" if r.cause else ""),
                "by": r.created_by,
                "at": clock(aware(r.created_at), tz),
                "via": r.via,
                "note": r.note,
                "standing": r.id in standing,
                "effects": [e.get("message_zh" if lang == "zh" else "message_en", "") for e in r.effects or []],
            }
        )
    first = min((r.start for r in rows), default=None)
    return {
        "words": WORDS[lang],
        "given": items,
        "buttons": [(b, LABEL_WORDS[b][i]) for b in BUTTONS],
        "causes": [(c, CAUSE_WORDS[c][i]) for c in CAUSES],
        "today": date.today().isoformat(),
        "since": (first.date().isoformat() if first else (inc.created_at.date().isoformat())),
        "action": f"/console/incidents/{inc.id}/feedback/give",
    }


@router.post("/console/incidents/{incident_id}/feedback/give")
async def give_feedback(incident_id: int, request: Request, ws=Depends(workspace)):
    from metricloop.web.console.routes import _incident_screen, _operator_form, _visible_incident, need_login

    who = need_login(request, ws)
    lang, form = await _operator_form(request, ws, who, doing={"zh": "给出反馈", "en": "giving feedback"})
    who.lang = lang
    with ws.db.session() as s:
        _visible_incident(s, ws, who, incident_id)
    label = form.get("label", "")
    cause = (form.get("cause") or None) if label == "expected" else None
    try:
        since = date.fromisoformat(form["since"]) if label == "new_normal" and form.get("since") else None
    except ValueError:
        since = None
        return _incident_screen(request, ws, who, incident_id, status=400, error=f"bad date {form.get('since')!r}")
    try:
        with ws.db.session() as s:
            give(
                s, ws, ws.catalog(), label=label, actor=who.name, via="console", incident_id=incident_id, cause=cause,
                start=None if since is None else _midnight(since), note=form.get("note", "").strip()[:2000],
                add_to_calendar=label == "expected" and form.get("add_to_calendar") == "1" and cause in CALENDAR_CAUSES,
            )  # fmt: skip
    except MetricloopError as e:
        return _incident_screen(request, ws, who, incident_id, status=e.status_code, error=e.message)
    return RedirectResponse(f"/incidents/{incident_id}#feedback", status_code=303)


def _midnight(d: date):
    from datetime import datetime, time

    return datetime.combine(d, time())
