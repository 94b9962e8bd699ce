"""Runs people ask for (`metricloop run --force`, POST /api/monitors/{name}/run): a back-dated one is a backtest
that sends nothing, a meaningless `at` is refused, and two at once never end in a raw database error."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from fastapi.testclient import TestClient
from loop_helpers import MONITOR, Effect, count, incidents, morning, runs
from typer.testing import CliRunner

from metricloop.alerting.models import Alert
from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.cli import app
from metricloop.monitors.models import Anomaly
from metricloop.monitors.service import run_monitor
from metricloop.notify.models import Notification

DROP = [Effect(date(2026, 11, 16), date(2026, 11, 16), 0.6, {"store": "SH-1"})]
LOOP = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
routes:
  - {name: everyone, matchers: ["monitor=shop_sales"], assignee: boss@shop.test, channels: [hook]}
"""
THEN = "2026-11-17T09:00:00+08:00"  # judges 2026-11-16, the day SH-1 dropped


@pytest.fixture
def api(shop):
    ws = shop(effects=DROP, extra=MONITOR + LOOP)
    with ws.db.session() as s:
        token = create_token(s, name="ops", role="operator", user="zhang.wei@shop.test")
    client = TestClient(create_app(ws), headers={"Authorization": f"Bearer {token}"})
    client.ws = ws
    return client


def nothing_written(ws) -> None:
    assert incidents(ws) == []
    assert count(ws, Alert) == 0 and count(ws, Anomaly) == 0 and count(ws, Notification) == 0


def test_a_back_dated_api_run_is_a_backtest_unless_told_to_notify(api):
    r = api.post("/api/monitors/shop_sales/run", json={"at": THEN})
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["trigger"] == "backtest" and run["status"] == "ok" and run["details"]["backtest"] is True
    assert run["anomalies"] >= 1 and run["alerts"] == 0
    assert "store=SH-1" in {p["slice"].split(",")[-1] for p in run["details"]["would_flag"]}
    nothing_written(api.ws)
    assert api.get(f"/api/runs/{run['id']}").json()["trigger"] == "backtest"

    r = api.post("/api/monitors/shop_sales/run", json={"at": THEN, "notify": True})
    assert r.status_code == 200 and r.json()["trigger"] == "manual"
    (inc,) = incidents(api.ws)
    assert inc.slices == ["region=East,store=SH-1"]
    assert count(api.ws, Notification) >= 1


def test_a_backtest_does_not_move_where_the_scheduler_goes_on_from(api):
    from metricloop.monitors.service import _last_until

    assert api.post("/api/monitors/shop_sales/run", json={"at": THEN}).json()["trigger"] == "backtest"
    with api.ws.db.session() as s:
        assert _last_until(s, "shop_sales") is None


@pytest.mark.parametrize(
    ("at", "says"),
    [
        (0, "is before the data of metric sales"),  # 0 is read as 1970-01-01T00:00Z
        ("2026-08-01T09:00:00+08:00", "its first row is at 2026-08-03 00:30"),
        ("2100-01-01T00:00:00Z", "is in the future"),
    ],
)
def test_a_meaningless_at_is_refused_and_names_at(api, at, says):
    r = api.post("/api/monitors/shop_sales/run", json={"at": at})
    assert r.status_code == 422, r.text
    assert r.json()["where"] == "at" and says in r.json()["error"], r.json()
    assert runs(api.ws) == []
    nothing_written(api.ws)


@pytest.fixture
def cli(shop, monkeypatch):
    ws = shop(effects=DROP, extra=MONITOR + LOOP)
    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    if ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", ws.settings.db)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    run.ws = ws
    return run


def test_a_back_dated_cli_run_is_a_backtest_unless_told_to_notify(cli):
    code, out = cli("run", "--monitor", "shop_sales", "--force", "--at", THEN, "--no-dispatch")
    assert code == 0, out
    assert "is a backtest" in out and "nothing was sent" in out
    (run,) = runs(cli.ws)
    assert run.trigger == "backtest" and run.anomalies >= 1
    nothing_written(cli.ws)
    code, out = cli("run", "--monitor", "shop_sales", "--force", "--at", THEN, "--notify", "--no-dispatch")
    assert code == 0, out
    assert len(incidents(cli.ws)) == 1


def test_a_meaningless_cli_at_is_refused(cli):
    for at, says in (("1970-01-01T00:00Z", "is before the data"), ("2100-01-01T00:00Z", "is in the future")):
        for args in (["--force"], []):
            code, out = cli("run", "--monitor", "shop_sales", *args, "--at", at, "--no-dispatch")
            assert code == 2 and "--at" in out and says in out, out
    assert runs(cli.ws) == []


def test_two_forced_runs_at_once_end_clearly(shop):
    """Two threads run the same monitor as of the same moment, together, against the real database: one judges,
    the other is skipped (or, if the first had ended, finds nothing new). Never a failed run, never twice."""
    ws = shop(effects=DROP, extra=MONITOR + LOOP)
    start = threading.Barrier(2)
    done: list = []

    def go():
        start.wait()
        done.append(run_monitor(ws, "shop_sales", at=morning("2026-11-17"), trigger="manual"))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(done) == 2
    assert [r.status for r in done if r.status not in ("ok", "skipped")] == [], [r.error for r in done]
    by_status = sorted(r.status for r in done)
    if by_status == ["ok", "skipped"]:
        ok, skipped = sorted(done, key=lambda r: r.status)
        assert f"run #{ok.id} of monitor shop_sales is in progress" in skipped.details["skipped"]
    assert count(ws, Anomaly) == 1 and len(incidents(ws)) == 1


def test_a_run_that_meets_one_in_progress_is_skipped_or_left_due(shop):
    from metricloop.monitors.service import run_lock

    ws = shop(effects=DROP, extra=MONITOR + LOOP)
    with run_lock(ws, "shop_sales") as held:  # what a run in another process holds
        assert held
        skipped = run_monitor(ws, "shop_sales", at=morning("2026-11-17"), trigger="manual")
        assert skipped.status == "skipped" and "is in progress" in skipped.details["skipped"]
        scheduled = run_monitor(
            ws, "shop_sales", at=morning("2026-11-17"), trigger="schedule", scheduled_for=morning("2026-11-17"),
            claim=True,
        )
        assert scheduled is None  # the slot stays due: the next tick runs it
        with run_lock(ws, "other_monitor") as other:
            assert other  # one lock per monitor
    nothing_written(ws)
    assert run_monitor(ws, "shop_sales", at=morning("2026-11-17"), trigger="manual").status == "ok"
