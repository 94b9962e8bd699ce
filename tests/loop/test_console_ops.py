"""The console's operating screens over HTTP (the real app, in process): a monitor with its runs, backtest preview
and pause/resume; operations (on call, the routes test, the outbox with retries, runs); the users admin screen;
a metric's data quality and version history; "silence this" on an incident; and every link of a real message."""

from __future__ import annotations

import logging
import re
from html import unescape

import pytest
from console_helpers import console_world
from loop_helpers import apply_yaml, morning, timeline
from test_console_web import client_of, csrf_of, logged_in, login

from metricloop.auth.models import User
from metricloop.monitors.models import Anomaly, MonitorRun
from metricloop.monitors.service import run_due


@pytest.fixture
def world(shop):
    return console_world(shop)


def _count(ws, model) -> int:
    with ws.db.session() as s:
        return s.query(model).count()


# ------------------------------------------------------------------ a monitor


def test_a_monitor_shows_its_runs_and_a_backtest_preview_that_writes_and_sends_nothing(world):
    from metricloop.alerting.models import Alert
    from metricloop.notify.models import Notification

    ws, inc = world
    c = logged_in(ws, "ana")
    assert 'href="/console/monitors/shop_sales"' in c.get("/console/monitors").text
    page = c.get("/console/monitors/shop_sales")
    assert page.status_code == 200 and "/assets/vendor/echarts.min.js" in page.text
    assert 'hx-get="/console/monitors/shop_sales/preview' in page.text and 'id="runs"' in page.text
    assert re.search(r"run-ok\">ok</span>", page.text)  # the morning's run
    before = {m: _count(ws, m) for m in (MonitorRun, Anomaly, Alert, Notification)}
    part = c.get("/console/monitors/shop_sales/preview", headers={"HX-Request": "true"})
    assert part.status_code == 200 and "<html" not in part.text
    assert 'id="preview-chart"' in part.text and 'id="preview-events"' in part.text
    # the drop it was built around: SH-1 on 2026-11-16, raised as one alert of the store's slice
    assert "store=SH-1" in part.text and "2026-11-16" in part.text
    chart = unescape(re.search(r'data-chart="([^"]+)"', part.text).group(1))
    assert '"slice": "store=SH-1"' in chart and '["2026-11-16"' in chart
    assert {m: _count(ws, m) for m in before} == before  # a preview: nothing written, nothing queued to send
    # another slice on request; without script the preview is a page of its own
    other = c.get("/console/monitors/shop_sales/preview?slice=store=BJ-1")
    assert other.status_code == 200 and "<html" in other.text and 'id="preview-slice">store=BJ-1' in other.text
    assert c.get("/console/monitors/nope").status_code == 404
    assert logged_in(ws, "lou").get("/console/monitors/shop_sales/preview").status_code == 404  # not their domain


def test_pause_and_resume_are_recorded_and_the_scheduler_honours_them(world):
    from metricloop.monitors.pauses import MonitorPause

    ws, _ = world
    c = logged_in(ws, "ana")
    token = csrf_of(c.get("/console/monitors/shop_sales").text)
    assert c.post("/console/monitors/shop_sales/pause", data={"reason": "x"}).status_code == 403  # no CSRF token
    vic = logged_in(ws, "vic")
    page = vic.get("/console/monitors/shop_sales")
    assert "do-pause" not in page.text
    r = vic.post("/console/monitors/shop_sales/pause", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 403 and "viewer" in r.text
    lou = logged_in(ws, "lou")
    lou_token = csrf_of(lou.get("/console").text)
    assert lou.post("/console/monitors/shop_sales/pause", data={"csrf": lou_token}).status_code == 404
    assert _count(ws, MonitorPause) == 0
    r = c.post("/console/monitors/shop_sales/pause", data={"csrf": token, "reason": "数据迁移 migration"},
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/console/monitors/shop_sales?done=pause"
    page = c.get("/console/monitors/shop_sales?done=pause")
    assert 'id="do-resume"' in page.text and "数据迁移 migration" in page.text and 'id="pause-record"' in page.text
    assert "paused" in c.get("/console/monitors?lang=en").text
    again = c.post("/console/monitors/shop_sales/pause", data={"csrf": token})
    assert again.status_code == 409 and "Monitor shop_sales is already paused" in again.text
    zh = c.post("/console/monitors/shop_sales/pause?lang=zh", data={"csrf": token})
    assert "监控 shop_sales 已经暂停了" in zh.text
    assert run_due(ws, now=morning("2026-11-18")) == []  # paused: the 18th's slot does not run
    r = c.post("/console/monitors/shop_sales/resume", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    assert [r.monitor for r in run_due(ws, now=morning("2026-11-18"))] == ["shop_sales"]
    with ws.db.session() as s:
        assert [(p.action, p.actor) for p in s.query(MonitorPause).order_by(MonitorPause.id)] == [
            ("pause", "ana"), ("resume", "ana")]  # fmt: skip
    assert c.post("/console/monitors/shop_sales/stop", data={"csrf": token}).status_code == 404


# ------------------------------------------------------------------ operations


def test_on_call_now_the_rotations_and_the_routes_test(world):
    ws, _ = world
    c = logged_in(ws, "ana")
    page = c.get("/console/operations")
    assert page.status_code == 200 and "store_oncall" in page.text
    assert "zhang.wei@shop.test" in page.text and "li.na@shop.test" in page.text
    r = c.get("/console/operations", params={"labels": "monitor=shop_sales\nmetric=sales\nstore=SH-1"})
    assert r.status_code == 200
    result = r.text[r.text.index('id="route-result"') :]
    assert 'id="matched-routes">all<' in result and "<code>hook</code>" in result and "store operations" in result
    assert "domain=sales" in result  # the labels a real alert of the monitor carries
    zh = c.get("/console/operations", params={"labels": "monitor=shop_sales\nmetric=sales", "lang": "zh"}).text
    assert "路由 all 匹配（monitor=shop_sales）" in zh and "交给指标负责人 sales.owner@shop.test" in zh
    c.get("/console?lang=en")
    r = c.get("/console/operations", params={"labels": "metric=sales\nstore=SH-1"})  # no monitor label: no route
    assert r.status_code == 200 and ("No route matches" in r.text or "没有匹配的路由" in r.text)
    r = c.get("/console/operations", params={"labels": "metric=sales\nnot a label"})
    assert r.status_code == 400 and "not a label" in r.text and ("name=value" in r.text or "名称=值" in r.text)
    r = c.get("/console/operations", params={"labels": "metric=sales\nstore=<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in r.text and "store=&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    long = "metric=sales\n" + "x=" * 1500
    r = c.get("/console/operations", params={"labels": long})
    assert r.status_code == 400 and str(len(long)) in r.text and "2000" in r.text  # too long: how long, how much
    lou = logged_in(ws, "lou")  # a metric of another domain is not theirs to probe
    assert lou.get("/console/operations", params={"labels": "metric=sales"}).status_code == 400


def _make_dead(ws) -> int:
    from metricloop.notify.models import Notification

    with ws.db.session() as s:
        row = s.query(Notification).order_by(Notification.id).first()
        row.status, row.attempts, row.last_error = "dead", row.max_attempts, "hook: HTTP 500 (test)"
        return row.id


def test_the_outbox_lists_deliveries_and_an_operator_retries_a_dead_one(world):
    from metricloop.notify.models import Notification

    ws, inc = world
    dead = _make_dead(ws)
    c = logged_in(ws, "ana")
    page = c.get("/console/outbox?status=dead")
    assert page.status_code == 200 and f'id="retry-{dead}"' in page.text and "HTTP 500 (test)" in page.text
    assert f'href="/incidents/{inc.id}"' in page.text
    assert c.get("/console/outbox?status=nonsense").status_code == 400
    vic = logged_in(ws, "vic")
    vpage = vic.get("/console/outbox")
    assert f"#{dead}" in vpage.text and "retry-" not in vpage.text
    assert vic.post(f"/console/outbox/{dead}/retry", data={"csrf": csrf_of(vpage.text)}).status_code == 403
    lou = logged_in(ws, "lou")
    lpage = lou.get("/console/outbox")
    assert f"#{dead}<" not in lpage.text  # another domain's incident: its deliveries are not theirs
    assert lou.post(f"/console/outbox/{dead}/retry", data={"csrf": csrf_of(lpage.text)}).status_code == 404
    token = csrf_of(page.text)
    assert c.post(f"/console/outbox/{dead}/retry", data={}).status_code == 403  # no CSRF token
    r = c.post(f"/console/outbox/{dead}/retry", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/outbox?done=retry"
    with ws.db.session() as s:
        row = s.get(Notification, dead)
        assert row.status == "pending" and row.attempts == 0
    assert "notify_retried" in [e.kind for e in timeline(ws, inc.id)]
    r = c.post(f"/console/outbox/{dead}/retry", data={"csrf": token})  # pending now: nothing to retry
    assert r.status_code == 409 and "only a dead row can be retried" in r.text
    assert c.post("/console/outbox/99999/retry", data={"csrf": token}).status_code == 404


def test_runs_are_listed_within_ones_domains(world):
    ws, _ = world
    c = logged_in(ws, "ana")
    page = c.get("/console/runs")
    assert page.status_code == 200 and 'href="/console/monitors/shop_sales"' in page.text
    assert 'href="/console/monitors/shop_sales"' in c.get("/console/runs?status=ok").text
    assert 'href="/console/monitors/shop_sales"' not in c.get("/console/runs?status=failed").text
    assert 'href="/console/monitors/shop_sales"' not in logged_in(ws, "lou").get("/console/runs").text


# ------------------------------------------------------------------ users


def test_an_admin_manages_users_and_nobody_raises_their_own_role(world, caplog):
    caplog.set_level(logging.DEBUG)
    ws, _ = world
    admin = logged_in(ws, "王芳")
    page = admin.get("/console/users")
    assert page.status_code == 200 and "ana" in page.text and 'id="add-user"' in page.text
    token = csrf_of(page.text)
    secret = "新密码 long enough"
    r = admin.post("/console/users", data={"csrf": token, "name": "李雷", "display_name": "Li Lei 李雷",
                                           "password": secret, "role": "viewer", "domains": "sales, fulfilment"},
                   follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    with ws.db.session() as s:
        row = s.query(User).filter_by(name="李雷").one()
        new_id, ana_id, my_id = row.id, s.query(User).filter_by(name="ana").one().id, row.id
        my_id = s.query(User).filter_by(name="王芳").one().id
        assert row.domains == ["sales", "fulfilment"] and secret not in row.password_hash
        assert row.password_hash.startswith("$argon2")
    assert secret not in caplog.text
    assert "李雷" in admin.get("/console/users").text
    # bad input is said on the page, with the form kept
    r = admin.post("/console/users", data={"csrf": token, "name": "short", "password": "abc", "role": "viewer"})
    assert r.status_code == 400 and "(password)" in r.text and 'value="short"' in r.text
    r = admin.post("/console/users", data={"csrf": token, "name": "李雷", "password": secret, "role": "viewer"})
    assert r.status_code == 400 and "already exists" in r.text
    r = admin.post(f"/console/users/{new_id}/role", data={"csrf": token, "role": "superuser"})
    assert r.status_code == 400 and "role must be one of" in r.text
    # role, domains, password
    assert admin.post(f"/console/users/{new_id}/role", data={"csrf": token, "role": "operator"},
                      follow_redirects=False).status_code == 303  # fmt: skip
    assert admin.post(f"/console/users/{new_id}/domains", data={"csrf": token, "domains": "fulfilment"},
                      follow_redirects=False).status_code == 303  # fmt: skip
    li = logged_in_as(ws, "李雷", secret)
    other = "another password 2"
    assert admin.post(f"/console/users/{new_id}/password", data={"csrf": token, "password": other},
                      follow_redirects=False).status_code == 303  # fmt: skip
    assert li.get("/console", follow_redirects=False).status_code == 303  # the reset ended their session
    assert login(ws, "李雷", secret)[1].status_code == 401
    assert login(ws, "李雷", other)[1].status_code == 303
    with ws.db.session() as s:
        row = s.get(User, new_id)
        assert (row.role, row.domains) == ("operator", ["fulfilment"]) and other not in row.password_hash
    # nobody changes their own role: an admin is told to ask another; an operator may not even see the screen
    r = admin.post(f"/console/users/{my_id}/role", data={"csrf": token, "role": "viewer"})
    assert r.status_code == 400 and ("ask another admin" in r.text or "另一位管理员" in r.text)
    ana = logged_in(ws, "ana")
    assert ana.get("/console/users").status_code == 403
    assert 'href="/console/users"' not in ana.get("/console").text
    r = ana.post(f"/console/users/{ana_id}/role", data={"csrf": csrf_of(ana.get("/console").text), "role": "admin"})
    assert r.status_code == 403 and "admin" in r.text
    with ws.db.session() as s:
        assert s.get(User, ana_id).role == "operator" and s.get(User, my_id).role == "admin"
    assert admin.post(f"/console/users/{new_id}/role", data={"role": "viewer"}).status_code == 403  # no CSRF
    assert admin.post("/console/users/99999/role", data={"csrf": token, "role": "viewer"}).status_code == 404


def logged_in_as(ws, name: str, password: str):
    c, r = login(ws, name, password)
    assert r.status_code == 303, r.text
    return c


# ------------------------------------------------------------------ a metric


def test_a_metric_shows_its_data_quality_and_its_versions_with_diffs(world):
    ws, _ = world
    import yaml
    from loop_helpers import SHOP_DEFS

    doc = yaml.safe_load(SHOP_DEFS)
    sales = next(m for m in doc["metrics"] if m["name"] == "sales")
    sales["description"] = "Till revenue, refunds netted 退款已扣除"
    apply_yaml(ws, yaml.safe_dump({"metrics": [sales]}, allow_unicode=True), author="王芳")
    c = logged_in(ws, "ana")
    page = c.get("/console/metrics/sales")
    assert page.status_code == 200
    quality = page.text[page.text.index('id="quality"') : page.text.index('id="versions"')]
    assert "freshness" in quality and "completeness" in quality
    versions = unescape(page.text[page.text.index('id="versions"') :])
    assert "v2 · update · 王芳" in versions and "v1 · create" in versions
    assert '<span class="add">+description: Till revenue, refunds netted 退款已扣除</span>' in versions
    assert "SELECT" in page.text  # the compiled SQL stays


# ------------------------------------------------------------------ an incident


def test_silence_this_prefills_from_the_incident_and_goes_back_to_it(world):
    from metricloop.alerting.models import Silence

    ws, inc = world
    c = logged_in(ws, "ana")
    page = c.get(f"/incidents/{inc.id}")
    box = unescape(page.text[page.text.index('id="silence-box"') :])
    assert "metric=sales\nmonitor=shop_sales\nstore=SH-1</textarea>" in box
    token = csrf_of(page.text)
    form = {"csrf": token, "incident": str(inc.id), "matchers": "metric=sales\nmonitor=shop_sales\nstore=SH-1",
            "reason": f"#{inc.id} till outage", "duration": "4h"}  # fmt: skip
    assert c.post("/console/silences", data=form | {"csrf": ""}).status_code == 403
    assert c.post("/console/silences", data=form | {"incident": "99999"}).status_code == 404  # an unknown incident
    assert c.post("/console/silences", data=form | {"incident": "#1"}).status_code == 400
    assert _count(ws, Silence) == 0
    r = c.post("/console/silences", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/incidents/{inc.id}?done=silence"
    with ws.db.session() as s:
        (row,) = s.query(Silence).all()
        assert row.matchers == ["metric=sales", "monitor=shop_sales", "store=SH-1"] and row.created_by == "ana"
    assert "silence-box" not in logged_in(ws, "vic").get(f"/incidents/{inc.id}").text


def test_every_link_of_a_real_message_lands_on_the_right_screen(world):
    from metricloop.notify.render import render_incident
    from metricloop.notify.signing import secret_key_for

    ws, inc = world
    base = "http://127.0.0.1"
    for lang in ("zh", "en"):
        _, body, payload = render_incident(inc, event="created", language=lang, base_url=base,
                                           secret_key=secret_key_for(ws))  # fmt: skip
        urls = re.findall(r"https?://\S+", body)
        assert urls and set(urls) == {u for u in payload["links"].values() if u}
        for url in urls:
            path = url.removeprefix(base)
            anonymous = client_of(ws)
            r = anonymous.get(path)
            assert r.status_code == 200, (url, r.status_code)
            assert inc.title in unescape(r.text) or (inc.summary or {}).get("title_en", "") in unescape(r.text)
            if "/api/incidents/" in path:  # ack / resolve: a page that asks to confirm, with the signed form
                assert "<form" in r.text and 'method="post"' in r.text
            else:  # the incident: its page, and for a logged-in person the console's screen with its actions
                assert 'id="do-ack"' in logged_in(ws, "ana").get(path).text
    # the console's own links from the incident screen land too
    c = logged_in(ws, "ana")
    page = c.get(f"/incidents/{inc.id}").text
    hrefs = set(re.findall(r'href="(/console/[^"#?]+)', page))
    assert {"/console/metrics/sales", "/console/monitors/shop_sales"} <= hrefs
    for href in hrefs:
        assert c.get(href).status_code == 200, href


# ------------------------------------------------------------------ incidents list: the domain filter


def test_the_incident_list_filters_by_domain(world):
    ws, inc = world
    admin = logged_in(ws, "王芳")
    assert f"/incidents/{inc.id}" in admin.get("/console/incidents?domain=sales").text
    assert f"/incidents/{inc.id}" not in admin.get("/console/incidents?domain=fulfilment").text
    lou = logged_in(ws, "lou")  # a domain not theirs filters to nothing, never to more
    assert f"/incidents/{inc.id}" not in lou.get("/console/incidents?domain=sales").text



# ------------------------------------------------------------------ home


def test_home_counts_every_open_incident_and_lists_data_quality_problems(world):
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from metricloop.incidents.models import Incident

    ws, inc = world
    now = datetime.now(UTC)
    rows = [{"title": f"t{i}", "state": "triggered", "severity": "P2", "monitor": "shop_sales", "metric": "sales",
             "group_key": f"g{i}", "assignee": "ana@shop.test" if i % 2 else "", "created_at": now, "updated_at": now}
            for i in range(1200)]  # fmt: skip
    rows.append(rows[0] | {"title": "sales: no rows for 30 hours", "kind": "data_quality", "group_key": "dq"})
    with ws.db.session() as s:
        s.execute(insert(Incident), rows)
    c = logged_in(ws, "ana")
    home = c.get("/console?lang=en").text
    tiles = dict(re.findall(r'sev-(P\d)[^>]*><b>(\d+)</b>', home))
    assert tiles == {"P1": "1", "P2": "1201", "P3": "0"}  # every open incident, not the first thousand
    owners = home[home.index('id="by-owner"') : home.index('id="mine"')]
    assert "<span>ana@shop.test</span><b>600</b>" in owners
    dq = home[home.index('id="data-quality"') : home.index('id="runs"')]
    assert "sales: no rows for 30 hours" in dq
    assert home[home.index('id="mine"') : home.index('id="breaches"')].count('<td><a href="/incidents/') == 20
    assert "No open data-quality problem" in logged_in(ws, "lou").get("/console?lang=en").text
    # the state as the latest run saw it: a run that found the feed late
    from metricloop.monitors.models import MonitorRun

    with ws.db.session() as s:
        s.add(MonitorRun(monitor="shop_sales", scheduled_for=now, status="ok", trigger="schedule",
                         details={"data_quality": ["sales:freshness:*"]}))  # fmt: skip
    home = c.get("/console?lang=en").text
    assert 'id="run-quality"' in home and 'title="sales:freshness:*">sales: Data late</span>' in home
    assert "sales：数据延迟" in c.get("/console?lang=zh").text
    assert 'id="run-quality"' not in logged_in(ws, "lou").get("/console").text


def test_a_metric_chart_spans_up_to_two_years(world):
    ws, _ = world
    c = logged_in(ws, "ana")
    short = c.get("/console/metrics/sales", headers={"HX-Request": "true"}).text
    long = c.get("/console/metrics/sales?days=730", headers={"HX-Request": "true"}).text
    assert unescape(long).count('"20') > unescape(short).count('"20')
    assert c.get("/console/metrics/sales?days=5000").status_code == 200  # an unknown span: the default


def test_assets_are_sent_compressed_to_a_browser_that_accepts_it(world):

    from metricloop.web.console.routes import STATIC

    ws, _ = world
    c = client_of(ws)
    shipped = (STATIC / "vendor" / "echarts.min.js").read_bytes()
    r = c.get("/assets/vendor/echarts.min.js", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.content == shipped  # httpx undoes the gzip
    assert r.num_bytes_downloaded < len(shipped) / 2.5
    plain = c.get("/assets/vendor/echarts.min.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == shipped
    again = c.get("/assets/vendor/echarts.min.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert c.get("/assets/favicon.svg", headers={"Accept-Encoding": "gzip"}).status_code == 200
    assert c.get("/assets/nope.js").status_code == 404
