"""The incident page a person opens from a message, and the signed acknowledge / resolve links: opening a link asks,
confirming it (a POST) acts (SQLite and PostgreSQL state)."""

from __future__ import annotations

import re
from datetime import date
from html import escape, unescape
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from loop_helpers import Effect, incidents, monitor_yaml, morning, outbox, timeline

from metricloop.app import create_app
from metricloop.incidents.models import Incident
from metricloop.monitors.service import run_monitor
from metricloop.notify.channels import Delivery
from metricloop.notify.dispatcher import link_signer
from metricloop.notify.signing import secret_key_for, sign_action

HOOK = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
routes:
  - {name: all, matchers: ["monitor=shop_sales"], team: store operations, channels: [hook]}
"""


@pytest.fixture
def opened(shop):
    """A P1 incident (SH-1 sells half as much) and its message, queued in Chinese."""
    monitor = monitor_yaml(slicing={"dimensions": ["store"], "total": False})
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "SH-1"})], extra=monitor + HOOK)
    assert run_monitor(ws, "shop_sales", at=morning("2026-11-17"), now=morning("2026-11-17")).status == "ok"
    (inc,) = incidents(ws)
    (row,) = outbox(ws, incident_id=inc.id)
    return ws, inc, delivered(ws, row), TestClient(create_app(ws))


def delivered(ws, row, via: str = "webhook") -> Delivery:
    """The message as its channel sends it: the dispatcher signs the row's links for its recipient on delivery."""
    return link_signer(ws)(Delivery.of(row), via)


def link(body: str, label: str) -> str:
    """The path and query of the link on the message's line that starts with `label`."""
    url = urlsplit(next(line for line in body.splitlines() if line.startswith(label)).split(label, 1)[1])
    return f"{url.path}?{url.query}"


def form_action(html: str, action: str) -> str:
    return unescape(re.search(rf'<form method="post" action="([^"]+/{action}\?token=[^"]+)">', html).group(1))


def test_the_incident_link_of_a_message_opens_the_page(opened):
    ws, inc, message, client = opened
    page_link = link(message.body, "查看工单：")
    assert page_link.startswith(f"/incidents/{inc.id}?token=")
    r = client.get(page_link)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    reason = escape(inc.summary["severity_reason_zh"].removeprefix("P1："))
    assert f"<b>定为 P1 的原因：</b>{reason}" in html
    for text in (inc.title, inc.summary["explanation_zh"], "P1 · 红", "待处理", "store=SH-1", inc.assignee,
                 "store operations", "销售额", "认领时限", "时间线", "时间为 北京时间"):  # fmt: skip
        assert escape(text) in html, text
    assert 'class="card sev-P1"' in html and 'class="badge triggered"' in html
    # the timeline: every event with its time and actor
    events = timeline(ws, inc.id)
    assert [e.kind for e in events] == ["created", "assigned", "rca"]  # rca: its root causes (rca/service.py)
    assert html.count('<li class="event-') == 3 and "<b>根因分析</b>" in html
    assert '<b>创建</b> <span class="who">· metricloop</span>' in html and "<b>指派</b>" in html
    assert '<div class="when">2026-11-17 09:00</div>' in html  # 09:00 Beijing time, when the run opened it
    # the buttons post to signed links of this incident
    assert form_action(html, "ack").startswith(f"/api/incidents/{inc.id}/ack?token=")
    assert form_action(html, "resolve").startswith(f"/api/incidents/{inc.id}/resolve?token=")
    # nothing from elsewhere, nothing kept
    assert "<script" not in html and "://" not in html and "<link" not in html
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize(
    ("query", "headers", "lang"),
    [
        ("&lang=en", {}, "en"),
        ("", {"Accept-Language": "en-US,en;q=0.9"}, "en"),
        ("", {"Accept-Language": "fr-FR, zh-CN;q=0.8, en;q=0.5"}, "zh"),
        ("&lang=zh", {"Accept-Language": "en"}, "zh"),  # the page's own switch wins over the browser
        ("", {}, "zh"),  # the workspace's language
    ],
)
def test_the_page_speaks_the_asked_language(opened, query, headers, lang):
    ws, inc, message, client = opened
    html = client.get(link(message.body, "查看工单：") + query, headers=headers).text
    words = {"zh": ("时间线", inc.summary["explanation_zh"], "销售额 · store=SH-1 低于预期"),
             "en": ("Timeline", inc.summary["explanation_en"], "Sales · store=SH-1 below expected")}
    assert all(escape(w) in html for w in words[lang])
    assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in html


def test_without_a_valid_view_token_the_page_says_how_to_get_in(opened):
    ws, inc, _, client = opened
    key = secret_key_for(ws)
    view = sign_action(inc.id, "view", key=key)
    cases = [
        ("", "链接中没有令牌", "the link has no token"),
        (sign_action(inc.id, "view", key=key, ttl_seconds=-1), "链接已过期", "the link has expired"),
        (view[:-2] + ("AA" if not view.endswith("AA") else "BB"), "链接的签名无效", "signature is not valid"),
        (sign_action(inc.id, "view", key="another key"), "链接的签名无效", "signature is not valid"),
        (sign_action(inc.id + 1, "view", key=key), "这个链接属于另一个工单", "belongs to another incident"),
        (sign_action(inc.id, "ack", key=key), "这个链接不是用于这个操作的", "the link is for &#39;ack&#39;"),
    ]
    for token, zh, en in cases:
        r = client.get(f"/incidents/{inc.id}", params={"token": token} if token else {})
        assert r.status_code == 401 and r.headers["content-type"].startswith("text/html"), token
        for text in ("无法打开这个工单页面", zh, "This incident page cannot be opened", en,
                     f"GET /api/incidents/{inc.id}", "Authorization: Bearer"):  # fmt: skip
            assert text in r.text, (token, text)
        assert escape(inc.title) not in r.text  # nothing of the incident
    assert client.get(f"/incidents/{inc.id}", params={"token": view}).status_code == 200
    assert client.get("/incidents/999", params={"token": sign_action(999, "view", key=key)}).status_code == 404


def test_open_reads_show_the_page_without_buttons(opened):
    from metricloop.settings import Settings

    ws, inc, _, _ = opened
    ws.settings = Settings(home=ws.home, db=ws.settings.db, base_url=ws.settings.base_url, public_reads=True)
    client = TestClient(create_app(ws))
    r = client.get(f"/incidents/{inc.id}")
    assert r.status_code == 200 and escape(inc.title) in r.text
    assert "<form" not in r.text and "从消息中的链接打开本页即可认领或解决" in r.text
    assert client.get(f"/incidents/{inc.id}", params={"token": "forged"}).status_code == 401  # a bad link stays bad


def test_opening_the_ack_link_changes_nothing_and_confirming_acknowledges(opened):
    ws, inc, message, client = opened
    ack = link(message.body, "我来处理（认领）：")
    for _ in range(2):  # a mail scanner, then the person
        r = client.get(ack)
        assert r.status_code == 200 and "认领这个工单？" in r.text and escape(inc.title) in r.text
    assert incidents(ws)[0].state == "triggered"
    assert "acknowledged" not in [e.kind for e in timeline(ws, inc.id)]
    confirm = form_action(r.text, "ack")
    assert confirm == f"{ack}&lang=zh"  # the same URL, with the same token
    done = client.post(confirm)
    assert done.status_code == 200 and f"工单 #{inc.id} 已认领，升级通知已停止。" in done.text
    assert incidents(ws)[0].state == "acknowledged"
    # as the recipient the message was sent to (a webhook channel's recipient is the channel)
    assert [(e.kind, e.actor) for e in timeline(ws, inc.id)][-1] == ("acknowledged", "hook via webhook link")
    back = unescape(re.search(r'<a class="btn light" href="([^"]+)">查看工单</a>', done.text).group(1))
    page = client.get(back)  # the result links back to the page, which now offers only resolving
    assert page.status_code == 200 and 'class="badge acknowledged"' in page.text and "处理中" in page.text
    assert "/ack?token=" not in page.text and "/resolve?token=" in page.text
    assert '<b>认领</b> <span class="who">· hook via webhook link</span>' in page.text
    again = client.post(confirm)  # a link acts once
    assert again.status_code == 410 and "这个链接已经用过了" in again.text and "hook via webhook link" in again.text
    assert client.get(ack).status_code == 410  # and opening it again says so instead of asking


def test_resolving_from_the_page_records_the_root_cause(opened):
    ws, inc, message, client = opened
    page = client.get(link(message.body, "查看工单：") + "&lang=en")
    resolve = form_action(page.text, "resolve")
    assert resolve.endswith("&lang=en")
    done = client.post(resolve, data={"root_cause": "SH-1 饮料缺货", "note": "restocked <today>"})
    assert done.status_code == 200 and f"Incident #{inc.id} resolved." in done.text
    (after,) = incidents(ws)
    assert (after.state, after.root_cause, after.resolution) == ("resolved", "SH-1 饮料缺货", "restocked <today>")
    last = timeline(ws, inc.id)[-1]
    assert (last.kind, last.actor, last.data["root_cause"]) == ("resolved", "hook via webhook link", "SH-1 饮料缺货")
    page = client.get(link(message.body, "查看工单：") + "&lang=en")
    assert "<form" not in page.text and 'class="badge resolved"' in page.text
    assert "SH-1 饮料缺货" in page.text and "restocked &lt;today&gt;" in page.text
    r = client.get(link(message.body, "标记为已解决："))  # the message's resolve link is the page's: used
    assert r.status_code == 410 and "这个链接已经用过了" in r.text
    r = client.get(link(message.body, "我来处理（认领）："))  # its ack link was not, but the incident is past it
    assert r.status_code == 409 and "不能再认领" in r.text


def test_the_api_keeps_its_own_post_on_the_links_paths(opened):
    """Without ?token= a POST to …/ack is the API's: it needs an operator's API token and answers JSON."""
    _, inc, _, client = opened
    r = client.post(f"/api/incidents/{inc.id}/ack")
    assert r.status_code == 401 and r.json()["error"].startswith("this call needs an API token")
    r = client.post(f"/api/incidents/{inc.id}/resolve", json={"root_cause": "x"})
    assert r.status_code == 401 and "(role operator or admin)" in r.json()["error"]


def test_the_page_escapes_what_it_shows(shop):
    ws = shop()
    with ws.db.session() as s:
        inc = Incident(title="<script>alert(1)</script>", severity="P2", monitor="m", metric="sales", group_key="g",
                       summary={"explanation_zh": "<img src=x onerror=alert(1)>"}, slices=["store=<b>"])  # fmt: skip
        s.add(inc)
        s.flush()
        incident_id = inc.id
    view = sign_action(incident_id, "view", key=secret_key_for(ws))
    html = TestClient(create_app(ws)).get(f"/incidents/{incident_id}", params={"token": view}).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html and "store=&lt;b&gt;" in html
    assert 'class="card sev-P2"' in html
