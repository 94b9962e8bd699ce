"""The signed links of messages cannot be lifted from what metricloop shows, act once, as their recipient, and not
after a reopen; a malformed token is refused, never a 500 (real SMTP and HTTP receivers on loopback; SQLite and
PostgreSQL state)."""

from __future__ import annotations

import json
import re
from datetime import date
from html import escape
from urllib.parse import quote, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient
from loop_helpers import STORES, Effect, drain, incidents, monitor_yaml, morning, outbox, timeline
from typer.testing import CliRunner

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.incidents import service
from metricloop.monitors.service import run_monitor
from metricloop.notify.signing import _b64, _mac, secret_key_for, sign_action, verify_action

SECRET = "hook-secret"
MANAGER = STORES["SH-1"][1]
SH1_DOWN = Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "SH-1"})
TOKEN = re.compile(r"token=(<[^>]*>|[^\s\"&<>\\]+)")


def routing(mailbox_port: int, hook_url: str) -> str:
    return f"""
channels:
  - {{name: mail, type: email, host: 127.0.0.1, port: {mailbox_port}, from: metricloop@shop.test, language: en}}
  - {{name: hook, type: webhook, url: "{hook_url}", secret: "${{LOOP_HOOK_SECRET}}", language: en}}
routes:
  - name: store_managers
    matchers: ["monitor=shop_sales"]
    assignee_lookup: {{source: shop, table: stores, key: store, column: manager_email}}
    team: store operations
    channels: [mail, hook]
"""


@pytest.fixture
def delivered(shop, mailbox, receiver, monkeypatch):
    """An incident whose first messages went out: the email to the store's manager and the signed webhook."""
    monkeypatch.setenv("LOOP_HOOK_SECRET", SECRET)
    monitor = monitor_yaml(slicing={"dimensions": ["store"], "total": False})
    ws = shop(effects=[SH1_DOWN], extra=monitor + routing(mailbox.port, receiver.url + "/hook"))
    assert run_monitor(ws, "shop_sales", at=morning("2026-11-17")).status == "ok"
    (inc,) = incidents(ws)
    assert drain(ws).sent == 2
    with ws.db.session() as s:
        ws.viewer = create_token(s, name="viewer", role="viewer", user="intern@shop.test")
    return ws, inc


def mail_link(mailbox, label: str, nth: int = -1) -> str:
    """Path and query of the link after `label` in the manager's nth email."""
    body = mailbox.to(MANAGER)[nth].get_content()
    url = urlsplit(next(line for line in body.splitlines() if line.startswith(label)).split(": ", 1)[1])
    return f"{url.path}?{url.query}"


def state_and_events(ws, incident_id: int) -> tuple[str, int]:
    return incidents(ws)[0].state, len(timeline(ws, incident_id))


def test_what_a_viewer_reads_holds_no_link_that_acts(delivered, receiver):
    """The outbox (list and detail, API and CLI) and the inbox show messages; a viewer lifting a link from them and
    posting it must not resolve the incident."""
    ws, inc = delivered
    client = TestClient(create_app(ws))
    (hook,) = receiver.accepted()
    assert client.post("/api/inbox/ops", content=hook.body).status_code == 202  # what the channel delivered
    as_viewer = {"Authorization": f"Bearer {ws.viewer}"}
    texts = [client.get("/api/outbox", headers=as_viewer).text, client.get("/api/inbox", headers=as_viewer).text]
    texts += [client.get(f"/api/outbox/{row.id}", headers=as_viewer).text for row in outbox(ws, incident_id=inc.id)]
    from metricloop import cli

    for row in outbox(ws, incident_id=inc.id):
        env = {"COLUMNS": "300"} | ({"METRICLOOP_DB": ws.settings.db} if ws.settings.db else {})
        shown = CliRunner().invoke(cli.app, ["--workspace", str(ws.home), "outbox", "show", str(row.id)], env=env)
        assert shown.exit_code == 0, shown.output
        texts.append(shown.output)
    assert any("/resolve?token=" in t for t in texts)  # the messages are shown, with where their links point
    found = {unquote(t) for text in texts for t in TOKEN.findall(text.replace("\\u003c", "<").replace("\\u003e", ">"))}
    assert found and all(not t[0].isalnum() for t in found), found  # placeholders and <redacted>, no token
    key = secret_key_for(ws)
    for token in found:
        with pytest.raises(Exception):  # noqa: B017,PT011 - whatever it is, it is not a valid token
            verify_action(token, key=key)
        r = client.post(f"/api/incidents/{inc.id}/resolve", params={"token": token}, headers=as_viewer)
        assert r.status_code == 400, (token, r.status_code)
    assert incidents(ws)[0].state == "triggered"
    # the channels did get working links: the webhook's payload and the email
    assert verify_action(TOKEN.search(hook.json()["links"]["resolve"]).group(1), key=key) == (inc.id, "resolve")


def test_a_link_acts_once_as_its_recipient_and_a_reopen_outdates_the_rest(delivered, mailbox):
    ws, inc = delivered
    ack, resolve = mail_link(mailbox, "Acknowledge (I'm on it)"), mail_link(mailbox, "Resolve")
    view = mail_link(mailbox, "Open the incident")
    client = TestClient(create_app(ws))
    assert client.get(resolve).status_code == 200 and state_and_events(ws, inc.id)[0] == "triggered"  # GET asks
    done = client.post(resolve + "&lang=en", data={"root_cause": "SH-1 stock-out"})
    assert done.status_code == 200 and incidents(ws)[0].state == "resolved"
    last = timeline(ws, inc.id)[-1]
    assert (last.kind, last.actor, last.data["via"]) == ("resolved", f"{MANAGER} via e-mail link", "e-mail link")

    with ws.db.session() as s:
        service.reopen(s, ws, ws.catalog(), incident_id=inc.id, actor="ops@shop.test", reason="it dropped again")
    before = state_and_events(ws, inc.id)
    assert before[0] == "triggered"
    # another process, after a restart: the use is a table row, not memory
    client = TestClient(create_app(ws))
    again = client.post(resolve + "&lang=en")
    assert again.status_code == 410 and "This link was already used" in again.text and MANAGER in again.text
    assert state_and_events(ws, inc.id) == before
    # the first message's ack link was never used, but it is from before the reopen
    assert client.get(ack + "&lang=en").status_code == 410
    old = client.post(ack + "&lang=en")
    assert old.status_code == 410 and "was reopened after this link was sent" in old.text
    assert state_and_events(ws, inc.id) == before
    # the view link still opens the page, for its lifetime, read-only
    page = client.get(view + "&lang=en")
    assert page.status_code == 200 and escape(inc.summary["title_en"]) in page.text
    assert "<form" not in page.text and "the incident was reopened after this link was sent" in page.text

    # the reopened message's links act (once)
    drain(ws)
    new_ack = mail_link(mailbox, "Acknowledge (I'm on it)")
    assert new_ack != ack
    assert client.post(new_ack + "&lang=en").status_code == 200 and incidents(ws)[0].state == "acknowledged"
    assert timeline(ws, inc.id)[-1].actor == f"{MANAGER} via e-mail link"
    assert client.post(new_ack + "&lang=en").status_code == 410


def test_the_page_buttons_are_the_message_links(delivered, mailbox):
    """The incident page opened from the email offers the email's own links: using the button spends the link."""
    ws, inc = delivered
    client = TestClient(create_app(ws))
    page = client.get(mail_link(mailbox, "Open the incident") + "&lang=en")
    button = re.search(r'<form method="post" action="([^"]+/ack\?token=[^"]+)">', page.text).group(1)
    assert client.post(button.replace("&amp;", "&")).status_code == 200
    assert timeline(ws, inc.id)[-1].actor == f"{MANAGER} via e-mail link"
    assert client.post(mail_link(mailbox, "Acknowledge (I'm on it)")).status_code == 410


def _forged_payload(key: str, payload_text: bytes) -> str:
    """A token whose signature is right but whose payload is not what sign_action writes."""
    payload = _b64(payload_text)
    return f"{payload}.{_b64(_mac(key, payload.encode('ascii')))}"


def test_a_malformed_token_is_refused_never_a_500(delivered):
    ws, inc = delivered
    key = secret_key_for(ws)
    ws.settings.rate_limit_per_minute = 0  # 56 requests from one address: this test is about tokens, not the rate
    client = TestClient(create_app(ws), raise_server_exceptions=False)
    old_format = _forged_payload(key, json.dumps({"i": inc.id, "a": "ack", "e": 4102444800}).encode())
    raw = ["%C3%A9.AAAA", "AAAA.%C3%A9", "%C3%A9", "a.b.c", ".", "AAAA.%FF%FE", "A" * 60_000 + ".AA", "%00.%00"]
    decoded = [
        _forged_payload(key, b"not json"),
        _forged_payload(key, b"\xff\xfe"),
        _forged_payload(key, b"[1, 2]"),
        _forged_payload(key, json.dumps({"i": "x", "a": "ack", "e": 1, "g": 0, "n": "n"}).encode()),
        _forged_payload(key, json.dumps({"i": inc.id, "a": "ack", "e": 1e400, "g": 0, "n": "n"}).encode()),
        old_format,  # signed before links had episodes and nonces: it could not be spent, so it does not act
    ]
    queries = raw + [quote(t, safe="") for t in decoded]
    for q in queries:
        for method, path, status in [
            ("GET", f"/api/incidents/{inc.id}/ack", 400),
            ("POST", f"/api/incidents/{inc.id}/ack", 400),
            ("POST", f"/api/incidents/{inc.id}/resolve", 400),
            ("GET", f"/incidents/{inc.id}", 401),
        ]:
            r = client.request(method, f"{path}?token={q}")
            assert r.status_code == status, (method, path, q[:40], r.status_code, r.text[:200])
            assert "malformed" in r.text or "signature is not valid" in r.text, (q[:40], r.text[:300])
    assert incidents(ws)[0].state == "triggered"


def test_tokens_name_their_recipient_episode_and_nonce():
    from metricloop.notify.signing import check_link

    token = sign_action(7, "ack", key="k", episode=2, nonce="n1", recipient="li.lei@shop.test", via="email")
    link = check_link(token, key="k", action="ack", incident_id=7)
    assert (link.episode, link.nonce, link.recipient, link.via) == (2, "n1", "li.lei@shop.test", "email")
    assert sign_action(7, "ack", key="k") != sign_action(7, "ack", key="k")  # a fresh nonce each time


def test_an_over_long_resolve_form_is_refused_whole_and_the_link_stays_usable(delivered, mailbox):
    """A hand-made POST over the text limit answers 422 naming the field; nothing is cut, recorded or spent."""
    ws, inc = delivered
    resolve = mail_link(mailbox, "Resolve")
    client = TestClient(create_app(ws))
    before = state_and_events(ws, inc.id)
    long = client.post(resolve + "&lang=en", data={"root_cause": "stock-out", "note": "x" * 10_001})
    assert long.status_code == 422 and "note is too long" in long.text and "10,000" in long.text
    assert state_and_events(ws, inc.id) == before
    kept = "y" * 5000  # over the old silent 2,000/4,000 cut, under the limit: stored whole
    done = client.post(resolve + "&lang=en", data={"root_cause": kept, "note": kept})
    assert done.status_code == 200 and incidents(ws)[0].root_cause == kept
