"""The console in a real browser: Debian's Chromium driven by Playwright, against a real server (uvicorn on
127.0.0.1) over a real workspace. Every page is checked for console errors and for requests that leave
127.0.0.1 (there must be none: the console vendors its scripts). Screenshots land in tests/artifacts/."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from console_helpers import open_sales_incident
from loop_helpers import BASE_URL, SHOP_DEFS, apply_yaml, write_shop_data

from loopback import free_port
from metricloop.auth import users
from metricloop.settings import Settings
from metricloop.workspace import Workspace

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A workspace with a sales incident and users per role, served by uvicorn on a loopback port."""
    from datetime import date

    import uvicorn
    from console_helpers import Effect, console_extra

    from metricloop.app import create_app
    from metricloop.web.console import routes

    home = tmp_path_factory.mktemp("console") / "ws"
    write_shop_data(home, effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "SH-1"})])
    ws = Workspace.init(home, Settings(home=home, user="tester", base_url=BASE_URL))
    apply_yaml(ws, SHOP_DEFS + "\n" + console_extra())
    ws, inc = open_sales_incident(ws=ws)
    with ws.db.session() as s:
        users.add_user(s, name="ana", password=PASSWORD, role="operator", domains=["sales"], display_name="Ana 安娜")
        users.add_user(s, name="vic", password=PASSWORD, role="viewer", domains=["sales"])
        users.add_user(s, name="lou", password=PASSWORD, role="operator", domains=["fulfilment"])
        users.add_user(s, name="王芳", password=PASSWORD, role="admin", display_name="王芳 Wang Fang")
    routes.limiter.__init__()
    port = free_port()
    config = uvicorn.Config(create_app(ws), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/api/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield ws, inc, url
    srv.should_exit = True
    thread.join(10)
    ws.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A browser context whose pages record console errors and any request that leaves 127.0.0.1."""

    def __init__(self, browser, **options) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.context = browser.new_context(**options)
        self.context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/]).*"), self._outside)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _outside(self, route) -> None:
        self.outside.append(route.request.url)
        route.abort()

    def check(self) -> None:
        assert self.errors == [], self.errors
        assert self.outside == [], self.outside

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser):
    made: list[Watched] = []

    def make(**options) -> Watched:
        w = Watched(browser, **options)
        made.append(w)
        return w

    yield make
    for w in made:
        w.check()
        w.close()


def log_in(w: Watched, url: str, name: str, password: str = PASSWORD) -> None:
    w.page.goto(url + "/console")
    assert "/login" in w.page.url
    w.page.fill("#name", name)
    w.page.fill("#password", password)
    w.page.click("button[type=submit]")
    w.page.wait_for_url(url + "/console")


def wait_js(w: Watched, expression: str, timeout: float = 15.0):
    """Poll `expression` until it is truthy. (page.wait_for_function polls with eval, which our CSP forbids;
    page.evaluate goes through the debugger protocol.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = w.page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {expression}")
        time.sleep(0.1)


def shot(w: Watched, name: str) -> None:
    w.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_log_in_and_the_home_screen(server, watched):
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "ana")
    assert w.page.locator("#mine").is_visible() and w.page.locator("#by-severity").is_visible()
    assert w.page.locator("#by-severity .sev-P1 b").inner_text() == "1"
    assert inc.assignee in w.page.locator("#by-owner").inner_text()
    shot(w, "home")


def test_open_an_incident_from_a_message_link_without_logging_in(server, watched):
    from metricloop.notify.signing import secret_key_for, sign_action

    ws, inc, url = server
    w = watched(locale="zh-CN")
    view = sign_action(inc.id, "view", key=secret_key_for(ws))
    w.page.goto(f"{url}/incidents/{inc.id}?token={view}")
    assert w.page.locator("h1").inner_text() == inc.title
    shot(w, "message-link")


def test_acknowledge_then_resolve_with_a_root_cause(server, watched):
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "ana")
    w.page.goto(f"{url}/incidents/{inc.id}")
    wait_js(w, "!!(window.echarts && echarts.getInstanceByDom(document.getElementById('incident-chart')))")
    series = w.page.evaluate("echarts.getInstanceByDom(document.getElementById('incident-chart')).getOption().series")
    actual = next(s for s in series if s["type"] == "line" and s["name"] == "Actual")
    assert sum(v is not None for v in actual["data"]) > 30
    anomalies = next(s for s in series if s["type"] == "scatter")
    assert len(anomalies["data"]) >= 1  # the anomalous point of 2026-11-16
    shot(w, "incident")
    w.page.click("#do-ack")
    w.page.wait_for_url(re.compile(r"done=ack"))
    assert w.page.locator(".badge.acknowledged").first.inner_text().lower() == "acknowledged"
    w.page.click("#resolve-box summary")
    w.page.fill("#root_cause", "till outage at SH-1")
    w.page.fill("#note", "restarted the tills")
    w.page.click("#do-resolve")
    w.page.wait_for_url(re.compile(r"done=resolve"))
    assert w.page.locator("#root-cause").inner_text() == "till outage at SH-1"
    assert "ana" in w.page.locator("#timeline").inner_text()
    shot(w, "incident-resolved")


def test_give_feedback_from_the_incident_screen(server, watched):
    """The feedback buttons label the incident's alerts: the label, who gave it, and the timeline say so."""
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "ana")
    w.page.goto(f"{url}/incidents/{inc.id}")
    w.page.click("#fb-false_alarm")
    w.page.wait_for_selector("#feedback li.label-false_alarm")
    given = w.page.locator("#feedback li.label-false_alarm").first.inner_text()
    assert "ana" in given
    assert "feedback" in w.page.locator("#timeline").inner_text().lower()
    shot(w, "incident-feedback")


def test_a_metric_chart_and_its_breakdown(server, watched):
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "ana")
    w.page.goto(f"{url}/console/metrics")
    w.page.fill("#q", "销售")
    w.page.wait_for_timeout(600)
    w.page.click("a[href='/console/metrics/sales']")
    get = (
        "(() => { const c = window.echarts && echarts.getInstanceByDom(document.getElementById('metric-chart'));"
        " return c ? c.getOption().series : []; })()"
    )
    assert len(wait_js(w, get)) == 1
    w.page.select_option("#breakdown", "store")
    wait_js(w, f"{get}.length === 4")
    names = sorted(s["name"] for s in w.page.evaluate(get))
    assert names == ["BJ-1", "BJ-2", "SH-1", "SH-2"]
    assert "by=store" in w.page.url
    shot(w, "metric")


def test_switch_between_chinese_and_english(server, watched):
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "ana")
    assert w.page.locator("#mine h2").inner_text().lower() == "my incidents"
    w.page.click("#lang-zh")
    assert "我的工单" in w.page.locator("#mine h2").inner_text()
    w.page.goto(url + "/console/incidents")  # remembered
    assert w.page.locator("h1").inner_text() == "工单"
    shot(w, "incidents-zh")
    w.page.click("#lang-en")
    assert w.page.locator("h1").inner_text() == "Incidents"


def test_the_console_fits_a_phone(server, watched):
    ws, inc, url = server
    w = watched(locale="zh-CN", viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    log_in(w, url, "ana")
    screens = {"/console": "mobile-home", f"/incidents/{inc.id}": "mobile-incident",
               "/console/incidents": "mobile-incidents", "/console/metrics/sales": "mobile-metric",
               "/console/silences": "mobile-silences"}  # fmt: skip
    for path, name in screens.items():
        w.page.goto(url + path)
        width = w.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
        shot(w, name)


def test_a_viewer_sees_no_action_and_the_server_refuses_theirs(server, watched):
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "vic")
    w.page.goto(f"{url}/incidents/{inc.id}")
    assert w.page.locator("#read-only").is_visible()
    assert w.page.locator("#actions").count() == 0
    assert w.page.locator("form[action*='/console/incidents/']").count() == 0
    csrf = w.page.locator("input[name=csrf]").first.get_attribute("value")  # the logout form's
    r = w.page.request.post(f"{url}/console/incidents/{inc.id}/comment", form={"csrf": csrf, "text": "hi"})
    assert r.status == 403
    shot(w, "viewer-incident")


def test_a_logistics_user_gets_404_for_a_sales_incident(server, watched):
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "lou")
    r = w.page.goto(f"{url}/incidents/{inc.id}")
    assert r.status == 404 and f"No incident #{inc.id}" in w.page.inner_text("main")
    w.errors.clear()  # the browser logs the 404 of the document itself
    assert w.page.locator(f"a[href='/incidents/{inc.id}']").count() == 0


def test_a_monitor_with_its_backtest_preview_then_pause_and_resume(server, watched):
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "ana")
    w.page.goto(url + "/console/monitors")
    w.page.click("a[href='/console/monitors/shop_sales']")
    get = (
        "(() => { const el = document.getElementById('preview-chart');"
        " const c = el && window.echarts && echarts.getInstanceByDom(el); return c ? c.getOption().series : null; })()"
    )
    series = wait_js(w, get, timeout=60)  # the preview is fetched after the page (HTMX) and drawn
    flagged = next(s for s in series if s["type"] == "scatter")
    assert any(p[0] == "2026-11-16" for p in flagged["data"])  # the drop of SH-1 it would have raised
    assert "store=SH-1" in w.page.locator("#preview-events").inner_text()
    shot(w, "monitor")
    w.page.fill("#pause-form input[name=reason]", "till migration")
    w.page.click("#do-pause")
    w.page.wait_for_url(re.compile(r"done=pause"))
    assert w.page.locator("#monitor-state").inner_text() == "paused"
    assert "till migration" in w.page.locator("#pause-record").inner_text()
    w.page.click("#do-resume")
    w.page.wait_for_url(re.compile(r"done=resume"))
    assert w.page.locator("#monitor-state").inner_text() == "running"


def test_operations_on_call_routes_test_outbox_and_runs(server, watched):
    ws, inc, url = server
    w = watched(locale="zh-CN")
    log_in(w, url, "ana")
    w.page.click("nav a[href='/console/operations']")
    assert w.page.locator("#on-call").inner_text().count("@shop.test") == 1
    w.page.fill("#labels", "monitor=shop_sales\nmetric=sales\nstore=SH-1")
    w.page.click("#do-route-test")
    assert w.page.locator("#matched-routes").inner_text() == "all"
    assert "hook" in w.page.locator("#route-channels").inner_text()
    shot(w, "operations")
    w.page.goto(url + "/console/outbox")
    assert w.page.locator("#outbox").count() == 1
    shot(w, "outbox")
    w.page.goto(url + "/console/runs")
    assert w.page.locator("a[href='/console/monitors/shop_sales']").count() >= 1
    shot(w, "runs")


def test_silence_this_from_an_incident(server, watched):
    ws, inc, url = server
    w = watched(locale="en-US")
    log_in(w, url, "ana")
    w.page.goto(f"{url}/incidents/{inc.id}")
    w.page.click("#silence-box summary")
    assert "store=SH-1" in w.page.input_value("#s-matchers")
    w.page.click("#do-silence-this")
    w.page.wait_for_url(re.compile(rf"/incidents/{inc.id}\?done=silence"))
    assert "silenced" in w.page.locator(".ok").inner_text()
    w.page.goto(url + "/console/silences")
    assert "store=SH-1" in w.page.inner_text("main") and f"#{inc.id}" in w.page.inner_text("main")
    shot(w, "silences")


def test_an_admin_adds_a_user_and_an_operator_has_no_users_screen(server, watched):
    ws, inc, url = server
    w = watched(locale="zh-CN")
    log_in(w, url, "王芳")
    w.page.click("nav a[href='/console/users']")
    w.page.fill("#u-name", "韩梅梅")
    w.page.fill("#u-password", "a long enough password")
    w.page.select_option("#u-role", "viewer")
    w.page.fill("#u-domains", "sales")
    w.page.click("#do-add-user")
    w.page.wait_for_url(re.compile(r"done=add"))
    assert "韩梅梅" in w.page.locator("#users").inner_text()
    shot(w, "users")
    o = watched(locale="en-US")
    log_in(o, url, "ana")
    assert o.page.locator("nav a[href='/console/users']").count() == 0
    r = o.page.goto(url + "/console/users")
    assert r.status == 403 and "managing users needs admin" in o.page.inner_text("main")
    o.errors.clear()  # the browser logs the 403 of the document itself


def test_the_new_screens_fit_a_phone(server, watched):
    ws, inc, url = server
    w = watched(locale="zh-CN", viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    log_in(w, url, "王芳")
    screens = {"/console/monitors/shop_sales": "mobile-monitor", "/console/operations": "mobile-operations",
               "/console/outbox": "mobile-outbox", "/console/runs": "mobile-runs", "/console/users": "mobile-users",
               "/console/metrics/sales": "mobile-metric-versions"}  # fmt: skip
    for path, name in screens.items():
        w.page.goto(url + path)
        if "monitors/" in path:
            wait_js(w, "!!document.getElementById('preview-events')", timeout=60)
        width = w.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
        shot(w, name)


def test_a_monitor_tuning_panel_computed_by_an_operator_and_seen_on_a_phone(server, watched):
    from datetime import date

    import tuning_helpers as th

    ws, inc, url = server
    with ws.db.session() as s:  # someone called the SH-1 drop a false alarm: the tuner has something to fix
        th.label(s, "false_alarm", "SH-1", date(2026, 11, 16), monitor="shop_sales")
    w = watched(locale="en-US")
    log_in(w, url, "ana")
    w.page.goto(url + "/console/monitors/shop_sales")
    assert w.page.locator("#tuning").is_visible() and w.page.locator("#tune-apply").count() == 0
    w.page.fill("#tuning input[name=budget]", "2")
    w.page.click("#tune-compute")
    w.page.wait_for_url(re.compile(r"done=tune_compute"), timeout=120_000)
    assert "Alerts per month" in w.page.locator("#before-after").inner_text()
    assert "waiting for approval" in w.page.locator("#suggestion-status").inner_text()
    w.page.locator("#tuning").scroll_into_view_if_needed()
    shot(w, "monitor-tuning")
    phone = watched(locale="zh-CN", viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    log_in(phone, url, "王芳")
    phone.page.goto(url + "/console/monitors/shop_sales")
    assert phone.page.locator("#tune-apply").is_visible()  # an admin may apply
    assert "每月告警" in phone.page.locator("#before-after").inner_text()
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    phone.page.locator("#tuning").screenshot(path=str(ARTIFACTS / "mobile-monitor-tuning.png"))
    phone.page.click("#tune-reject")  # leave the monitor as the other tests know it
    phone.page.wait_for_url(re.compile(r"done=tune_reject"))
    assert "已拒绝" in phone.page.locator("#suggestion-status").inner_text()


def test_artifacts_are_kept_out_of_git():
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text()
    assert "tests/artifacts/" in ignored
    shutil.rmtree(ARTIFACTS / "tmp", ignore_errors=True)
