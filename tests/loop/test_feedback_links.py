"""The feedback links of every message ("误报 / False alarm", "符合预期 / Expected"): GET asks to confirm and
changes nothing, POST labels the incident's alerts as the link's recipient, once (real SMTP and HTTP receivers on
loopback; SQLite and PostgreSQL state)."""

from __future__ import annotations

from html import unescape

from fastapi.testclient import TestClient
from loop_helpers import incidents, timeline
from test_link_hardening import MANAGER, mail_link
from test_link_hardening import delivered as delivered  # the fixture: an incident whose first e-mail went out

from metricloop.app import create_app
from metricloop.feedback.models import Feedback


def labels(ws) -> list[tuple[str, str | None, str]]:
    with ws.db.session() as s:
        return [(f.label, f.cause, f.created_by) for f in s.query(Feedback).order_by(Feedback.id)]


def test_every_message_has_feedback_links_that_confirm_then_act_once(delivered, mailbox):
    ws, inc = delivered
    client = TestClient(create_app(ws))
    body = mailbox.to(MANAGER)[-1].get_content()
    assert "False alarm / 误报: " in body and "Expected / 符合预期: " in body
    link = mail_link(mailbox, "False alarm / 误报") + "&lang=en"
    page = client.get(link)
    assert page.status_code == 200 and "Mark this alert as a false alarm?" in page.text
    assert labels(ws) == []  # opening the link (a mail scanner's pre-fetch) changes nothing
    done = client.post(link, data={"note": "stocktake"})
    assert done.status_code == 200 and "stored as false alarm for tuning" in done.text
    assert labels(ws) == [("false_alarm", None, MANAGER)]
    (event,) = [e for e in timeline(ws, inc.id) if e.kind == "feedback"]
    assert event.actor == MANAGER and event.data["via"] == "link" and "e-mail link" in event.message
    again = client.post(link, data={})
    assert again.status_code == 410 and labels(ws) == [("false_alarm", None, MANAGER)]
    assert incidents(ws)[0].state == "triggered"  # feedback is not a flow: the incident's state is its owner's


def test_the_expected_link_asks_for_the_cause_and_can_add_the_calendar_event(delivered, mailbox):
    ws, inc = delivered
    client = TestClient(create_app(ws))
    link = mail_link(mailbox, "Expected / 符合预期") + "&lang=en"
    page = client.get(link)
    assert page.status_code == 200 and 'name="cause"' in page.text and "promotion" in page.text
    done = client.post(link, data={"cause": "promotion", "add_to_calendar": "1"})
    assert done.status_code == 200, done.text
    assert "added to the calendar" in done.text
    assert labels(ws) == [("expected", "promotion", MANAGER)]
    assert (ws.home / "calendar" / "feedback.csv").exists()
    bad = client.get(link.replace("token=", "token=x"))
    assert bad.status_code == 400 and labels(ws) == [("expected", "promotion", MANAGER)]


def test_a_bad_cause_from_the_form_is_refused_and_the_link_is_not_spent(delivered, mailbox):
    ws, _ = delivered
    client = TestClient(create_app(ws))
    link = mail_link(mailbox, "Expected / 符合预期") + "&lang=en"
    r = client.post(link, data={"cause": "weather"})
    assert r.status_code == 422 and "unknown cause 'weather'" in unescape(r.text) and labels(ws) == []
    assert client.post(link, data={"cause": "holiday"}).status_code == 200
    assert labels(ws) == [("expected", "holiday", MANAGER)]
