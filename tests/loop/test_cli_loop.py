"""The loop's commands on a real workspace: incidents, silences, tokens, monitors."""

from __future__ import annotations

import json
from datetime import date

import pytest
from loop_helpers import MONITOR, Effect, incidents, morning, timeline
from typer.testing import CliRunner

from metricloop.cli import app
from metricloop.monitors.service import run_monitor


@pytest.fixture
def cli(shop, monkeypatch):
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.6, {"store": "SH-1"})], extra=MONITOR)
    run_monitor(ws, "shop_sales", at=morning("2026-11-17"))
    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    if ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", ws.settings.db)
    monkeypatch.setenv("METRICLOOP_USER", "wang.fang@shop.test")
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    run.ws = ws
    return run


def test_incident_commands(cli):
    code, out = cli("incidents", "list", "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    i = str(row["id"])
    assert row["state"] == "triggered" and row["slices"] == ["region=East,store=SH-1"]
    code, out = cli("incidents", "show", i)
    assert code == 0 and "timeline" in out and "created" in out and "store=SH-1" in out
    assert cli("incidents", "ack", i)[0] == 0
    code, out = cli("incidents", "ack", i)
    assert code != 0 and "already acknowledged" in out
    assert cli("incidents", "comment", i, "looking at the tills")[0] == 0
    assert cli("incidents", "assign", i, "li.lei@shop.test", "--team", "east")[0] == 0
    code, out = cli("incidents", "resolve", i, "--root-cause", "stock-out", "--note", "restocked")
    assert code == 0 and "resolved" in out
    code, out = cli("incidents", "resolve", i, "--root-cause", "again")
    assert code != 0 and "already resolved" in out
    assert cli("incidents", "review", i, "--note", "ok")[0] == 0
    code, out = cli("incidents", "kpis")
    assert code == 0 and "MTTA" in out and "MTTR" in out
    (inc,) = incidents(cli.ws)
    assert inc.state == "reviewed" and inc.root_cause == "stock-out" and inc.assignee == "li.lei@shop.test"
    kinds = [(e.kind, e.actor) for e in timeline(cli.ws, inc.id) if e.actor != "metricloop"]
    assert kinds == [
        ("acknowledged", "wang.fang@shop.test"),
        ("commented", "wang.fang@shop.test"),
        ("reassigned", "wang.fang@shop.test"),
        ("resolved", "wang.fang@shop.test"),
        ("reviewed", "wang.fang@shop.test"),
    ]
    code, out = cli("incidents", "ack", "999")
    assert code != 0 and "no incident #999" in out


def test_silence_token_and_monitor_commands(cli):
    code, out = cli("silences", "add", "store=~SH-.*", "--reason", "refit", "--duration", "3h")
    assert code == 0 and "silence #1" in out
    code, out = cli("silences", "list")
    assert code == 0 and "store=~SH-.*" in out and "refit" in out
    code, out = cli("silences", "add", "store=~(", "--reason", "x")
    assert code != 0 and "invalid regular expression" in out
    code, out = cli("silences", "add", "store=A", "--reason", "x", "--duration", "soon")
    assert code != 0 and "--duration" in out
    assert cli("silences", "expire", "1")[0] == 0
    code, out = cli("silences", "list")
    assert "refit" not in out
    code, out = cli("tokens", "create", "bot", "--role", "viewer")
    assert code == 0 and out.strip().splitlines()[-1].startswith("ml_")
    code, out = cli("tokens", "create", "bot2", "--role", "king")
    assert code != 0 and "role must be one of" in out
    code, out = cli("monitors", "list")
    assert code == 0 and "shop_sales" in out and "0 9 * * *" in out
    code, out = cli("monitors", "runs")
    assert code == 0 and "shop_sales" in out and "ok" in out


def test_pause_and_resume_a_monitor(cli):
    from metricloop.monitors.service import run_due

    code, out = cli("monitors", "pause", "shop_sales", "--reason", "数据迁移")
    assert code == 0 and "paused" in out
    code, out = cli("monitors", "pause", "shop_sales")
    assert code != 0 and "already paused" in out
    assert run_due(cli.ws, now=morning("2026-11-18")) == []
    code, out = cli("monitors", "pauses", "shop_sales")
    assert code == 0 and "数据迁移" in out and "wang.fang@shop.test" in out
    assert cli("monitors", "resume", "shop_sales")[0] == 0
    assert [r.monitor for r in run_due(cli.ws, now=morning("2026-11-18"))] == ["shop_sales"]
    code, out = cli("monitors", "pause", "nope")
    assert code != 0 and "no monitor named 'nope'" in out
