"""Email through a real SMTP server (aiosmtpd on loopback) and apprise through a real HTTP receiver."""

import pytest
from sqlalchemy import select

from metricloop.notify.channels import message_id
from metricloop.notify.dispatcher import dispatch_once
from metricloop.notify.models import Notification


def email_channels(port: int, extra: str = "") -> str:
    return f"""
channels:
  - name: store_mail
    type: email
    host: 127.0.0.1
    port: {port}
    from: alerts@metricloop.test
    to: [ops@example.com]
    language: zh
    timeout: 2
  - name: store_mail_en
    type: email
    host: 127.0.0.1
    port: {port}
    from: alerts@metricloop.test
    language: en
    timeout: 2
{extra}"""


def rows(ws) -> list[Notification]:
    with ws.db.session() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


@pytest.fixture
def mail_ws(make_workspace, mailbox, apply_defs):
    ws = make_workspace()
    apply_defs(ws, email_channels(mailbox.port))
    return ws


def test_email_is_delivered_in_chinese_and_english_with_its_idempotency_key(mail_ws, mailbox, queue):
    zh = queue(mail_ws, channel="store_mail", recipient="wang.fang@example.com", language="zh")
    en = queue(mail_ws, channel="store_mail_en", recipient="li.lei@example.com", language="en", severity="P2")
    stats = dispatch_once(mail_ws)
    assert stats.sent == 2
    by_key = {m["X-Metricloop-Idempotency-Key"]: (rcpts, m) for rcpts, m in mailbox.messages}
    assert set(by_key) == {zh, en}

    rcpts, m = by_key[zh]
    assert rcpts == ["wang.fang@example.com"]
    assert m["Subject"] == "[P1 红] 新工单：门店 S012 饮料销售额下降"
    assert m["From"] == "alerts@metricloop.test"
    assert m["Message-ID"] == message_id(zh)
    body = m.get_content()
    assert "S012 门店销售额比预期低 42%" in body and "我来处理（认领）：http://metricloop.test/api/incidents/" in body

    rcpts, m = by_key[en]
    assert rcpts == ["li.lei@example.com"]
    assert m["Subject"] == "[P2 orange] New incident: 门店 S012 饮料销售额下降"
    assert "Store S012 sales are 42% below expected" in m.get_content()
    assert {r.status for r in rows(mail_ws)} == {"sent"}


def test_a_row_for_the_channel_itself_goes_to_its_to_list(mail_ws, mailbox, queue):
    queue(mail_ws, channel="store_mail")  # recipient = the channel name, no address
    dispatch_once(mail_ws)
    [(rcpts, _)] = mailbox.messages
    assert rcpts == ["ops@example.com"]


def test_a_temporary_smtp_refusal_is_retried(mail_ws, mailbox, queue, drain_outbox):
    mailbox.refuse_first = 1
    key = queue(mail_ws, channel="store_mail", recipient="wang.fang@example.com")
    assert dispatch_once(mail_ws).retried == 1
    assert "SMTP error 451" in rows(mail_ws)[0].last_error
    drain_outbox(mail_ws)
    assert [m["X-Metricloop-Idempotency-Key"] for _, m in mailbox.messages] == [key]


def test_smtp_server_down_is_retryable_and_bad_login_settings_are_not(
    make_workspace, mailbox, unused_port, apply_defs, queue, monkeypatch
):
    monkeypatch.setenv("ML_TEST_SMTP_PASSWORD", "pw-secret-123")
    ws = make_workspace()
    apply_defs(ws, email_channels(unused_port) + f"""
  - name: needs_login
    type: email
    host: 127.0.0.1
    port: {mailbox.port}
    username: alerts
    password: ${{ML_TEST_SMTP_PASSWORD}}
    to: [ops@example.com]
""")  # fmt: skip
    queue(ws, channel="store_mail", recipient="wang.fang@example.com")
    queue(ws, channel="needs_login")
    stats = dispatch_once(ws)
    assert (stats.retried, stats.dead) == (1, 1)
    down, login = rows(ws)
    assert down.status == "pending" and f"(127.0.0.1:{unused_port})" in down.last_error
    assert "ConnectionRefusedError" in down.last_error
    assert login.status == "dead" and "AUTH" in login.last_error  # the server offers no login: a config error
    assert "pw-secret-123" not in login.last_error


def test_apprise_delivers_to_a_real_receiver(make_workspace, receiver, apply_defs, queue):
    ws = make_workspace()
    apply_defs(ws, f"""
channels:
  - name: team_chat
    type: apprise
    url: json://127.0.0.1:{receiver.port}/apprise
    language: en
""")  # fmt: skip
    key = queue(ws, channel="team_chat", language="en")
    assert dispatch_once(ws).sent == 1
    [req] = receiver.requests
    assert req.path == "/apprise" and req.key == key
    body = req.json()
    assert body["title"] == "[P1 red] New incident: 门店 S012 饮料销售额下降"
    assert "Store S012 sales are 42% below expected" in body["message"] and f"ref: {key}" in body["message"]


def test_apprise_failures_are_retried_with_the_reason(make_workspace, receiver, apply_defs, queue, drain_outbox):
    ws = make_workspace()
    apply_defs(ws, f"""
channels:
  - name: team_chat
    type: apprise
    url: form://127.0.0.1:{receiver.port}/apprise
""")  # fmt: skip
    receiver.plan = [500]
    key = queue(ws, channel="team_chat")
    assert dispatch_once(ws).retried == 1
    assert "form:// delivery failed" in rows(ws)[0].last_error and "500" in rows(ws)[0].last_error
    drain_outbox(ws)
    assert receiver.keys() == [key]


def test_an_apprise_url_that_is_wrong_is_refused_when_applied_or_dead_when_sent(
    make_workspace, apply_defs, queue, monkeypatch
):
    from metricloop.errors import DefinitionError

    ws = make_workspace()
    with pytest.raises(DefinitionError, match="is not a URL apprise understands"):
        apply_defs(ws, "channels:\n  - {name: chat, type: apprise, url: 'nosuchscheme://abc'}\n")
    apply_defs(ws, "channels:\n  - {name: chat, type: apprise, url: '${ML_TEST_APPRISE_URL}'}\n".replace(
        "${ML_TEST_APPRISE_URL}", "json://${ML_TEST_APPRISE_HOST}/"))  # fmt: skip
    monkeypatch.setenv("ML_TEST_APPRISE_HOST", "")
    queue(ws, channel="chat")
    assert dispatch_once(ws).dead == 1
    assert "apprise does not understand the URL" in rows(ws)[0].last_error
