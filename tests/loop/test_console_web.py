"""The console over HTTP (the real app, in process): login and sessions, CSRF, roles and domains, the screens,
and bad input. The browser tests (tests/loop/test_console_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from console_helpers import PASSWORD, console_world
from fastapi.testclient import TestClient
from loop_helpers import timeline

from metricloop.app import create_app
from metricloop.auth import users
from metricloop.auth.models import WebSession
from metricloop.web.console import sessions


@pytest.fixture
def world(shop):
    return console_world(shop)


def client_of(ws) -> TestClient:
    return TestClient(create_app(ws), base_url="http://127.0.0.1")


def csrf_of(html: str) -> str:
    return unescape(re.search(r'name="csrf" value="([^"]+)"', html).group(1))


def login(ws, name: str, password: str = PASSWORD, client: TestClient | None = None):
    c = client or client_of(ws)
    page = c.get("/login")
    r = c.post("/login", data={"name": name, "password": password, "csrf": csrf_of(page.text), "next": "/console"},
               follow_redirects=False)  # fmt: skip
    return c, r


def logged_in(ws, name: str) -> TestClient:
    c, r = login(ws, name)
    assert r.status_code == 303 and r.headers["location"] == "/console", r.text
    return c


def test_log_in_see_home_and_log_out_and_the_cookie_is_refused_after(world, caplog):
    caplog.set_level(logging.DEBUG)
    ws, inc = world
    anonymous = client_of(ws)
    r = anonymous.get("/console", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/console"
    c, r = login(ws, "ana")
    assert PASSWORD not in caplog.text  # the server's log never has it
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Max-Age=43200" in cookie
    home = c.get("/console")
    assert home.status_code == 200 and "ana" in home.text
    assert "Content-Security-Policy" in home.headers and "script-src 'self'" in home.headers["content-security-policy"]
    assert "echarts" not in home.text  # no chart on the home page: ECharts is not loaded
    stolen = c.cookies.get(sessions.COOKIE)
    c.post("/logout", data={"csrf": csrf_of(home.text)}, follow_redirects=False)
    again = client_of(ws)
    again.cookies.set(sessions.COOKIE, stolen)
    r = again.get("/console", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_a_wrong_password_says_so_and_ten_get_429(world):
    ws, _ = world
    for i in range(users.MAX_FAILED):
        _, r = login(ws, "ana", "wrong password")
        assert r.status_code == 401, i
        assert "Wrong user name or password" in r.text or "用户名或密码错误" in r.text
    _, r = login(ws, "ana")  # the right password, too late
    assert r.status_code == 429
    assert PASSWORD not in r.text


def test_an_expired_session_asks_to_log_in_again(world):
    ws, _ = world
    c = logged_in(ws, "ana")
    with ws.db.session() as s:
        for row in s.query(WebSession):
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    r = c.get("/console/incidents", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/console/incidents"


def test_a_form_post_without_the_csrf_token_is_refused(world):
    ws, inc = world
    c = logged_in(ws, "ana")
    r = c.post(f"/console/incidents/{inc.id}/ack", data={})
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post(f"/console/incidents/{inc.id}/ack", data={"csrf": "forged"})
    assert r.status_code == 403
    assert [e.kind for e in timeline(ws, inc.id)].count("acknowledged") == 0
    # and the login form has its own token
    r = client_of(ws).post("/login", data={"name": "ana", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403


def test_operator_acknowledges_comments_and_resolves_with_a_root_cause(world):
    ws, inc = world
    c = logged_in(ws, "ana")
    page = c.get(f"/incidents/{inc.id}")  # the console's screen, for a logged-in person
    assert page.status_code == 200 and 'id="do-ack"' in page.text and 'id="incident-chart"' in page.text
    assert "/assets/vendor/echarts.min.js" in page.text
    token = csrf_of(page.text)
    r = c.post(f"/console/incidents/{inc.id}/ack", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/incidents/{inc.id}?done=ack"
    r = c.post(f"/console/incidents/{inc.id}/comment", data={"csrf": token, "text": "<script>alert(1)</script> 看过了"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt; 看过了" in r.text
    r = c.post(f"/console/incidents/{inc.id}/resolve", data={"csrf": token, "root_cause": ""})
    assert r.status_code == 400
    assert "Resolving needs a root cause" in r.text or "解决工单需要填写根因" in r.text
    r = c.post(f"/console/incidents/{inc.id}/resolve", data={"csrf": token, "root_cause": "till outage at SH-1"})
    assert r.status_code == 200 and "till outage at SH-1" in r.text
    kinds = [(e.kind, e.actor) for e in timeline(ws, inc.id)]
    assert ("acknowledged", "ana") in kinds and ("commented", "ana") in kinds and ("resolved", "ana") in kinds
    r = c.post(f"/console/incidents/{inc.id}/ack", data={"csrf": token})
    assert r.status_code == 409  # resolved: nothing to acknowledge, said on the page
    assert 'id="do-reopen"' in r.text


def test_a_viewer_sees_no_buttons_and_their_post_is_refused(world):
    ws, inc = world
    c = logged_in(ws, "vic")
    page = c.get(f"/incidents/{inc.id}")
    assert page.status_code == 200 and 'id="read-only"' in page.text
    assert "do-ack" not in page.text and "/resolve" not in page.text
    r = c.post(f"/console/incidents/{inc.id}/ack", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 403 and "viewer" in r.text
    assert "acknowledged" not in [e.kind for e in timeline(ws, inc.id)]


def test_outside_ones_domains_is_a_404(world):
    ws, inc = world
    c = logged_in(ws, "lou")
    assert c.get(f"/incidents/{inc.id}").status_code == 404
    assert c.get(f"/console/incidents/{inc.id}").status_code == 404
    home = c.get("/console")
    assert f"/incidents/{inc.id}" not in home.text
    assert f"/incidents/{inc.id}" not in c.get("/console/incidents").text
    assert c.get("/console/metrics/sales").status_code == 404
    page = c.get("/console/metrics")
    assert "deliveries" in page.text and "/console/metrics/sales" not in page.text
    token = csrf_of(home.text)
    assert c.post(f"/console/incidents/{inc.id}/ack", data={"csrf": token}).status_code == 404
    assert c.post("/console/incidents/99999/ack", data={"csrf": token}).status_code == 404  # an unknown incident


def test_bad_input_on_forms_and_filters(world):
    ws, inc = world
    c = logged_in(ws, "王芳")  # a unicode name; an admin sees all
    page = c.get(f"/incidents/{inc.id}")
    token = csrf_of(page.text)
    r = c.post(f"/console/incidents/{inc.id}/comment", data={"csrf": token, "text": "x" * 5000})
    assert r.status_code == 400 and "5000" in r.text and "4000" in r.text
    assert "commented" not in [e.kind for e in timeline(ws, inc.id)]
    r = c.get("/console/incidents?from=2026-13-45")
    assert r.status_code == 400 and "2026-13-45" in r.text and "YYYY-MM-DD" in r.text
    r = c.get("/console/incidents?from=2026-11-01&to=2026-11-30&severity=P1&state=triggered")
    assert r.status_code == 200 and f"/incidents/{inc.id}" in r.text
    r = c.get("/console/incidents?from=2026-01-01&to=2026-01-02")
    assert r.status_code == 200 and f"/incidents/{inc.id}" not in r.text
    assert c.get("/console/incidents?page=zz").status_code == 200
    r = c.post("/console/incidents/99999/comment", data={"csrf": token, "text": "hi"})
    assert r.status_code == 404


def test_a_message_link_opens_its_one_incident_without_login(world):
    from metricloop.notify.signing import secret_key_for, sign_action

    ws, inc = world
    view = sign_action(inc.id, "view", key=secret_key_for(ws))
    anonymous = client_of(ws)
    r = anonymous.get(f"/incidents/{inc.id}?token={view}")
    assert r.status_code == 200 and inc.title in unescape(r.text)
    assert anonymous.get(f"/incidents/{inc.id + 1}?token={view}").status_code == 401
    assert anonymous.get("/console", follow_redirects=False).status_code == 303  # the link opens nothing else
    # a logged-in person reaching the incident, with the link or without, gets the console's screen
    c = logged_in(ws, "ana")
    assert 'id="do-ack"' in c.get(f"/incidents/{inc.id}").text
    assert 'id="do-ack"' in c.get(f"/incidents/{inc.id}?token={view}").text
    # … unless it is outside their domains: then the link still opens its one incident, read as the link allows
    lou = logged_in(ws, "lou")
    assert lou.get(f"/incidents/{inc.id}").status_code == 404
    r = lou.get(f"/incidents/{inc.id}?token={view}")
    assert r.status_code == 200 and "do-ack" not in r.text and inc.title in unescape(r.text)


def test_metric_catalogue_and_metric_page(world):
    ws, _ = world
    c = logged_in(ws, "王芳")
    r = c.get("/console/metrics?q=发货")
    assert "deliveries" in r.text and "/console/metrics/sales" not in r.text
    assert "/console/metrics/sales" in c.get("/console/metrics?q=销售").text
    assert "/console/metrics/sales" not in c.get("/console/metrics?domain=fulfilment").text
    assert "/console/metrics/sales" in c.get("/console/metrics?tier=core").text
    r = c.get("/console/metrics/sales?by=store")
    assert r.status_code == 200 and "SELECT" in r.text and "SH-1" in r.text
    part = c.get("/console/metrics/sales?by=region", headers={"HX-Request": "true"})
    assert part.status_code == 200 and "<html" not in part.text and "East" in part.text
    assert c.get("/console/monitors").status_code == 200


def test_the_language_follows_the_browser_then_the_choice_is_remembered(world):
    ws, _ = world
    c = logged_in(ws, "ana")
    assert "我的工单" in c.get("/console", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    assert "My incidents" in c.get("/console", headers={"Accept-Language": "en-US"}).text
    c.get("/console?lang=zh")
    assert "我的工单" in c.get("/console", headers={"Accept-Language": "en-US"}).text


def test_silences_create_list_and_expire(world):
    from metricloop.alerting.models import Silence

    ws, _ = world
    c = logged_in(ws, "ana")
    page = c.get("/console/silences")
    token = csrf_of(page.text)
    form = {"csrf": token, "matchers": "metric=sales\nstore=SH-1", "reason": "till outage 收银故障", "duration": "2h"}
    r = c.post("/console/silences", data=form, follow_redirects=False)
    assert r.status_code == 303
    page = c.get("/console/silences")
    assert "store=SH-1" in page.text and "till outage 收银故障" in page.text
    # bad input: a bad duration, a bad matcher, no matcher of one's domains; nothing is written, the form is kept
    r = c.post("/console/silences", data=form | {"duration": "soon"})
    assert r.status_code == 400 and "(duration)" in r.text and "till outage 收银故障" in r.text
    r = c.post("/console/silences", data=form | {"matchers": "metric=sales\nnot a matcher"})
    assert r.status_code == 400 and "is not a matcher" in r.text
    r = c.post("/console/silences", data=form | {"matchers": "store=SH-1"})
    assert r.status_code == 400 and ("metric=NAME" in r.text or "metric=指标名" in r.text)
    with ws.db.session() as s:
        (row,) = s.query(Silence).all()
        silence_id = row.id
    # other domains neither see nor end it; a viewer cannot
    lou = logged_in(ws, "lou")
    assert "till outage 收银故障" not in lou.get("/console/silences").text
    lou_token = csrf_of(lou.get("/console/silences").text)
    assert lou.post(f"/console/silences/{silence_id}/expire", data={"csrf": lou_token}).status_code == 404
    vic = logged_in(ws, "vic")
    assert 'id="silence-form"' not in vic.get("/console/silences").text
    vic_token = csrf_of(vic.get("/console/silences").text)
    assert vic.post(f"/console/silences/{silence_id}/expire", data={"csrf": vic_token}).status_code == 403
    assert c.post(f"/console/silences/{silence_id}/expire", data={}).status_code == 403  # no CSRF token
    r = c.post(f"/console/silences/{silence_id}/expire", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    with ws.db.session() as s:
        assert s.get(Silence, silence_id).expired_early_at is not None
