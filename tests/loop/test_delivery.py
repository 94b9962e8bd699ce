"""An incident reaches people: a real SMTP server and a real HTTP receiver on loopback, outages, a dispatcher
killed mid-delivery (SQLite and PostgreSQL state)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from html import escape
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from loop_helpers import (
    STORES,
    Effect,
    aware,
    drain,
    incidents,
    monitor_yaml,
    morning,
    outbox,
    runs,
    timeline,
)

from loopback import verify_signature
from metricloop.app import create_app
from metricloop.monitors.service import run_monitor

SECRET = "s3cret-for-the-receiver"
SH1_DOWN = Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "SH-1"})
MANAGER = STORES["SH-1"][1]


def routing(mailbox_port: int, hook_url: str, *, timeout: float = 5, max_attempts: int = 8) -> str:
    return f"""
channels:
  - {{name: mail, type: email, host: 127.0.0.1, port: {mailbox_port}, from: metricloop@shop.test, language: en}}
  - name: hook
    type: webhook
    url: "{hook_url}"
    secret: "${{LOOP_HOOK_SECRET}}"
    language: en
    timeout: {timeout}
    max_attempts: {max_attempts}
routes:
  - name: store_managers
    matchers: ["monitor=shop_sales"]
    assignee_lookup: {{source: shop, table: stores, key: store, column: manager_email}}
    team: store operations
    channels: [mail, hook]
"""


@pytest.fixture
def open_incident(shop, mailbox, receiver, monkeypatch):
    """shop → a store's sales drop → one incident routed to the store's manager on email and a signed webhook."""
    monkeypatch.setenv("LOOP_HOOK_SECRET", SECRET)

    def make(**channel_options):
        monitor = monitor_yaml(slicing={"dimensions": ["store"], "total": False})
        ws = shop(effects=[SH1_DOWN], extra=monitor + routing(mailbox.port, receiver.url + "/hook", **channel_options))
        at = morning("2026-11-17")
        run = run_monitor(ws, "shop_sales", at=at)
        assert run.status == "ok", run.error
        (inc,) = incidents(ws)
        return ws, inc

    return make


def test_one_email_and_one_signed_webhook(open_incident, mailbox, receiver):
    ws, inc = open_incident()
    assert inc.assignee == MANAGER and inc.team == "store operations" and inc.slices == ["store=SH-1"]
    rows = outbox(ws, incident_id=inc.id)
    assert [(r.channel, r.recipient, r.status) for r in rows] == [
        ("mail", MANAGER, "pending"),
        ("hook", "hook", "pending"),
    ]
    stats = drain(ws)
    assert stats.sent == 2 and stats.dead == 0

    # the email
    (mail,) = mailbox.to(MANAGER)
    assert len(mailbox.messages) == 1
    explanation = inc.summary["explanation_en"]
    assert explanation and "below" in explanation
    # an English message of a Chinese workspace carries the English title, as the page does
    assert inc.summary["title_en"] != inc.title
    assert mail["Subject"] == f"[P1 red] New incident: {inc.summary['title_en']}"
    body = mail.get_content()
    assert explanation in body
    ack_line = next(line for line in body.splitlines() if line.startswith("Acknowledge (I'm on it): "))
    ack_link = ack_line.split(": ", 1)[1]
    assert ack_link.startswith(f"http://metricloop.test/api/incidents/{inc.id}/ack?token=")
    assert mail["X-Metricloop-Idempotency-Key"] == rows[0].idempotency_key

    # the webhook
    (hook,) = receiver.accepted()
    assert len(receiver.requests) == 1 and hook.path == "/hook"
    assert verify_signature(SECRET, hook)
    assert not verify_signature("another secret", hook)
    payload = hook.json()
    assert payload["idempotency_key"] == hook.key == rows[1].idempotency_key
    assert payload["event"] == "created" and payload["incident"]["id"] == inc.id
    assert payload["incident"]["assignee"] == MANAGER and payload["incident"]["severity"] == "P1"
    assert payload["explanation"] == explanation
    assert payload["links"]["ack"].startswith(f"http://metricloop.test/api/incidents/{inc.id}/ack?token=")

    # both deliveries are on the timeline
    notified = [e for e in timeline(ws, inc.id) if e.kind == "notified"]
    assert sorted(e.data["channel"] for e in notified) == ["hook", "mail"]

    # the incident link of the email opens the incident's page in a browser, with no API token
    client = TestClient(create_app(ws))
    page_link = urlsplit(next(line for line in body.splitlines() if line.startswith("Open the incident: ")).split()[-1])
    assert page_link.path == f"/incidents/{inc.id}" and page_link.query.startswith("token=")
    client.headers["Accept-Language"] = "en-GB,en;q=0.9,zh-CN;q=0.8"  # a browser's: the pages speak English
    page = client.get(f"{page_link.path}?{page_link.query}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert escape(inc.summary["title_en"]) in page.text and escape(explanation) in page.text and "Timeline" in page.text
    assert "<b>created</b>" in page.text and "<b>notified</b>" in page.text and MANAGER in page.text

    # the acknowledge link of the email asks first (a mail scanner opening it changes nothing); confirming acts, once
    link = urlsplit(ack_link)
    opened = client.get(f"{link.path}?{link.query}")
    assert opened.status_code == 200 and "Acknowledge this incident?" in opened.text
    assert incidents(ws)[0].state == "triggered"
    first = client.post(f"{link.path}?{link.query}")
    assert first.status_code == 200 and f"Incident #{inc.id} acknowledged" in first.text
    assert incidents(ws)[0].state == "acknowledged"
    again = client.post(f"{link.path}?{link.query}")  # a link acts once
    assert again.status_code == 410 and "This link was already used" in again.text
    # as the person it was sent to
    assert [(e.kind, e.actor) for e in timeline(ws, inc.id)][-1] == ("acknowledged", f"{MANAGER} via e-mail link")


def test_receiver_outage_then_delivered_exactly_once(open_incident, receiver):
    receiver.plan = [500, 503, 500]  # down for the first three attempts
    ws, inc = open_incident(max_attempts=6)
    start = datetime.now(UTC)
    for i in range(10):
        drain(ws, start=start + timedelta(hours=i), passes=1)
        (row,) = [r for r in outbox(ws, incident_id=inc.id) if r.channel == "hook"]
        if row.status == "sent":
            break
        assert row.status == "pending" and row.last_error.startswith(f"attempt {row.attempts}: webhook channel hook")
        assert "HTTP 5" in row.last_error
        assert aware(row.next_attempt_at) > start + timedelta(hours=i)  # backed off, not hammered
    assert row.status == "sent" and row.attempts == 4 and row.last_error == ""
    statuses = [r.status for r in receiver.requests]
    assert statuses == [500, 503, 500, 200]  # raw: four attempts, one accepted
    assert len(receiver.accepted()) == 1 and receiver.keys() == [row.idempotency_key]
    assert len({r.key for r in receiver.requests}) == 1  # every attempt carried the same key
    assert [e.kind for e in timeline(ws, inc.id)].count("notified") == 2  # email and webhook, once each


DISPATCHER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from metricloop.notify.dispatcher import dispatch_once
    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    home, db = Path(sys.argv[1]), sys.argv[2] or None
    ws = Workspace(home, Settings(home=home, db=db))
    print("dispatching", flush=True)
    dispatch_once(ws, lease_seconds=30)
    print("finished", flush=True)
    """
)


def _status(ws, incident_id: int, channel: str) -> str:
    return {r.channel: r for r in outbox(ws, incident_id=incident_id)}[channel].status


def test_dispatcher_killed_during_delivery_loses_and_duplicates_nothing(open_incident, mailbox, receiver):
    receiver.plan = ["hang"]
    receiver.hang_seconds = 10.0  # the first webhook attempt is still in flight when the process dies
    ws, inc = open_incident(timeout=10)
    keys = {r.idempotency_key for r in outbox(ws)}
    env = {**os.environ, "LOOP_HOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-c", DISPATCHER, str(ws.home), ws.settings.db or ""],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert receiver.arrived.wait(60), proc.stderr.read1().decode() if proc.poll() is not None else "no request"
        # the email is another chain, sent in parallel: let its delivery be recorded before the crash (the webhook
        # hangs for 10 s, so it is still in flight), else the kill races it
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and _status(ws, inc.id, "mail") != "sent":
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    by_channel = {r.channel: r for r in outbox(ws, incident_id=inc.id)}
    assert by_channel["mail"].status == "sent"  # delivered and recorded before the crash
    assert by_channel["hook"].status == "sending" and by_channel["hook"].attempts == 1  # in flight when killed

    # a new dispatcher once the lease is over
    stats = drain(ws, start=datetime.now(UTC) + timedelta(seconds=31))
    assert stats.sent == 1
    assert {r.status for r in outbox(ws)} == {"sent"}
    deadline = time.monotonic() + 30  # the killed attempt's request is answered in the background
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    delivered = receiver.keys() + [m["X-Metricloop-Idempotency-Key"] for _, m in mailbox.messages]
    assert set(delivered) == keys  # nothing lost
    assert len(mailbox.messages) == 1  # the email went once
    assert len(receiver.accepted()) == 2 and len(set(receiver.keys())) == 1  # at least once; once after dedup
    assert all(verify_signature(SECRET, r) for r in receiver.accepted())


def test_a_hanging_receiver_times_out_is_retried_and_dead_lettered(open_incident, receiver):
    receiver.plan = ["hang"] * 3
    receiver.hang_seconds = 3.0
    ws, inc = open_incident(timeout=0.5, max_attempts=3)
    drain(ws)
    (row,) = [r for r in outbox(ws, incident_id=inc.id) if r.channel == "hook"]
    assert row.status == "dead" and row.attempts == 3
    assert row.last_error == f"attempt 3: webhook channel hook: no answer from {receiver.url}/hook within 0.5s"
    (failed,) = [e for e in timeline(ws, inc.id) if e.kind == "notify_failed"]
    assert "after 3 attempts" in failed.message and "within 0.5s" in failed.message


def test_a_receiver_that_keeps_failing_is_dead_lettered_with_its_answer(open_incident, receiver):
    receiver.status = 500
    ws, inc = open_incident(max_attempts=3)
    drain(ws)
    (row,) = [r for r in outbox(ws, incident_id=inc.id) if r.channel == "hook"]
    assert row.status == "dead" and row.attempts == 3
    assert row.last_error.startswith(f"attempt 3: webhook channel hook: POST {receiver.url}/hook answered HTTP 500")
    assert len(receiver.requests) == 3 and receiver.accepted() == []


def test_a_wrong_url_is_dead_at_once_with_a_clear_error(open_incident, receiver):
    receiver.status = 404
    ws, inc = open_incident()
    drain(ws)
    (row,) = [r for r in outbox(ws, incident_id=inc.id) if r.channel == "hook"]
    assert row.status == "dead" and row.attempts == 1  # a 404 will not get better by retrying
    assert "answered HTTP 404" in row.last_error


def test_an_action_waits_for_approval_then_is_called_and_retried(shop, receiver, monkeypatch):
    from metricloop.auth.service import create_token

    monkeypatch.setenv("LOOP_HOOK_SECRET", SECRET)
    action = {
        "name": "restock",
        "url": receiver.url + "/restock",
        "severities": ["P1"],
        "secret": "${LOOP_HOOK_SECRET}",
        "payload": {"store": "{{ labels.store }}", "reason": "{{ incident.title }}", "incident": "{{ incident_url }}"},
        "require_approval": True,
        "approvers": ["zhang.wei@shop.test"],
    }
    monitor = monitor_yaml(slicing={"dimensions": ["store"], "total": False}, actions=[action])
    ws = shop(effects=[SH1_DOWN], extra=monitor)
    run_monitor(ws, "shop_sales", at=morning("2026-11-17"))
    (inc,) = incidents(ws)
    (row,) = outbox(ws, incident_id=inc.id)
    assert row.kind == "action" and row.status == "awaiting_approval" and row.channel == "action:restock"
    assert "action_requested" in [e.kind for e in timeline(ws, inc.id)]
    drain(ws)
    assert receiver.requests == []  # nothing goes out before someone approves

    with ws.db.session() as s:
        approver = create_token(s, name="zw", user="zhang.wei@shop.test")
        other = create_token(s, name="li", user="li.lei@shop.test")
    client = TestClient(create_app(ws))
    refused = client.post(f"/api/outbox/{row.id}/approve", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403 and "may not approve" in refused.json()["error"]
    ok = client.post(f"/api/outbox/{row.id}/approve", headers={"Authorization": f"Bearer {approver}"})
    assert (
        ok.status_code == 200 and ok.json()["status"] == "pending" and ok.json()["approved_by"] == "zhang.wei@shop.test"
    )

    receiver.plan = [502]  # the purchasing system hiccups once
    drain(ws)
    (row,) = outbox(ws, incident_id=inc.id)
    assert row.status == "sent" and row.attempts == 2
    assert [r.status for r in receiver.requests] == [502, 200]
    call = receiver.accepted()[0]
    assert call.path == "/restock" and verify_signature(SECRET, call)
    assert call.json() == {
        "store": "SH-1",
        "reason": inc.title,
        "incident": f"http://metricloop.test/incidents/{inc.id}",
    }
    kinds = [(e.kind, e.actor) for e in timeline(ws, inc.id) if e.kind.startswith("action")]
    assert kinds == [
        ("action_requested", "metricloop"),
        ("action_approved", "zhang.wei@shop.test"),
        ("action_run", "metricloop"),
    ]


def test_serve_runs_the_scheduler_and_the_dispatcher_in_the_background(open_incident, mailbox, receiver):
    ws, inc = open_incident()
    keys = {r.idempotency_key for r in outbox(ws, incident_id=inc.id)}
    app = create_app(ws, background=True)
    with TestClient(app) as client:
        assert client.get("/api/health").json()["status"] == "ok"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if keys <= {r.idempotency_key for r in outbox(ws, incident_id=inc.id) if r.status == "sent"}:
                break
            time.sleep(0.1)
    assert not any(t.is_alive() for t in app.state.background.threads)  # stopped with the app
    assert keys <= set(receiver.keys()) | {m["X-Metricloop-Idempotency-Key"] for _, m in mailbox.messages}
    scheduled = [r for r in runs(ws) if r.trigger != "manual"]
    assert scheduled and scheduled[0].monitor == "shop_sales"  # the scheduler ran today's slot too
