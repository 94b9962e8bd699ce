"""The feedback panel of the console's incident screen over HTTP: buttons for operators, read-only for viewers,
CSRF, domains, and each label with what it changed."""

from __future__ import annotations

from html import unescape

from loop_helpers import timeline
from test_console_web import csrf_of, logged_in
from test_console_web import world as world  # the fixture: a sales incident and four people

from metricloop.feedback.models import Feedback


def stored(ws) -> list[tuple[str, str | None, str, str]]:
    with ws.db.session() as s:
        return [(f.label, f.cause, f.created_by, f.via) for f in s.query(Feedback).order_by(Feedback.id)]


def test_an_operator_labels_from_the_incident_screen_and_sees_the_effect(world):
    ws, inc = world
    c = logged_in(ws, "ana")
    page = c.get(f"/incidents/{inc.id}?lang=en")
    assert page.status_code == 200 and 'id="feedback"' in page.text and 'id="fb-false_alarm"' in page.text
    assert 'id="no-feedback"' in page.text
    token = csrf_of(page.text)
    r = c.post(f"/console/incidents/{inc.id}/feedback/give", data={"csrf": token, "label": "false_alarm"},
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == f"/incidents/{inc.id}#feedback"
    page = c.get(f"/incidents/{inc.id}?lang=en")
    text = unescape(page.text)
    assert "false alarm" in text and "stored as false alarm for tuning" in text
    r = c.post(f"/console/incidents/{inc.id}/feedback/give", data={"csrf": token, "label": "expected",
                                                                  "cause": "holiday"})  # fmt: skip
    assert r.status_code == 200
    text = unescape(r.text)
    assert "expected · holiday" in text and "replaced by a later label" in text
    assert stored(ws)[-1] == ("expected", "holiday", "ana", "console")
    assert ("feedback", "ana") in [(e.kind, e.actor) for e in timeline(ws, inc.id)]


def test_feedback_from_the_console_is_refused_without_csrf_for_viewers_and_outside_the_domains(world):
    ws, inc = world
    ana = logged_in(ws, "ana")
    r = ana.post(f"/console/incidents/{inc.id}/feedback/give", data={"label": "confirmed"})
    assert r.status_code == 403 and "CSRF" in r.text
    vic = logged_in(ws, "vic")
    page = vic.get(f"/incidents/{inc.id}")
    assert 'id="feedback"' in page.text and 'id="fb-confirmed"' not in page.text  # viewers read, no buttons
    r = vic.post(f"/console/incidents/{inc.id}/feedback/give", data={"csrf": csrf_of(page.text), "label": "confirmed"})
    assert r.status_code == 403
    lou = logged_in(ws, "lou")
    home = lou.get("/console")
    r = lou.post(f"/console/incidents/{inc.id}/feedback/give", data={"csrf": csrf_of(home.text), "label": "confirmed"})
    assert r.status_code == 404
    page = ana.get(f"/incidents/{inc.id}?lang=en")
    r = ana.post(f"/console/incidents/{inc.id}/feedback/give", data={"csrf": csrf_of(page.text), "label": "great"})
    assert r.status_code == 422 and "unknown label" in unescape(r.text)
    r = ana.post(f"/console/incidents/{inc.id}/feedback/give",
                 data={"csrf": csrf_of(page.text), "label": "new_normal", "since": "2099-01-01"})  # fmt: skip
    assert r.status_code == 422 and "in the future" in unescape(r.text)
    assert stored(ws) == []
