"""`metricloop knowledge` and `incidents resolve --category/--actions` on a real workspace."""

from __future__ import annotations

import csv
import json

import pytest
from loop_helpers import cli_runner, morning
from test_knowledge import MONITOR, PAST, REPEAT

from metricloop.limits import MAX_TEXT
from metricloop.monitors.service import run_monitor


@pytest.fixture
def cli(shop, monkeypatch):
    ws = shop(effects=[PAST, REPEAT], extra=MONITOR)
    at = morning("2026-11-03")
    run_monitor(ws, "shop_sales", at=at, now=at)
    return cli_runner(ws, monkeypatch, user="wang.fang@shop.test")


def _resolved(cli) -> str:
    code, out = cli("incidents", "list", "--format", "json")
    i = str(json.loads(out)[0]["id"])
    code, out = cli("incidents", "resolve", i, "--root-cause", "SH-1 生鲜断货", "--category", "stock_out",
                    "--actions", "紧急补货 / restocked")
    assert code == 0, out
    return i


def test_resolve_search_show_edit_export(cli, tmp_path):
    i = _resolved(cli)
    code, out = cli("knowledge", "search", "断货")
    assert code == 0 and "SH-1 生鲜断货" in out and "断货 (stock_out)" in out and "紧急补货" in out
    code, out = cli("knowledge", "search", "restock", "--format", "json")
    (row,) = json.loads(out)
    assert row["incident_id"] == int(i) and row["category"] == "stock_out" and row["score"] > 0
    assert row["resolved_by"] == "wang.fang@shop.test"
    code, out = cli("knowledge", "search", "台风")
    assert code == 0 and "nothing found" in out
    entry = str(row["id"])
    code, out = cli("knowledge", "edit", entry, "--actions", "紧急补货，上调安全库存", "--reason", "补充")
    assert code == 0 and "is now version 2" in out
    code, out = cli("knowledge", "show", entry)
    assert code == 0 and "紧急补货，上调安全库存" in out and "earlier versions" in out and "补充" in out
    code, out = cli("knowledge", "show", entry, "--format", "json")
    assert json.loads(out)["versions"][0]["actions"] == "紧急补货 / restocked"
    code, out = cli("knowledge", "list", "--category", "stock_out", "--format", "json")
    assert [r["id"] for r in json.loads(out)] == [int(entry)]
    code, out = cli("knowledge", "export", "--output", str(tmp_path / "kb.csv"))
    assert code == 0 and "1 knowledge entry written" in out
    with (tmp_path / "kb.csv").open(encoding="utf-8-sig") as f:
        assert list(csv.DictReader(f))[0]["actions"] == "紧急补货，上调安全库存"
    code, out = cli("knowledge", "export", "-o", str(tmp_path / "kb.json"))
    assert json.loads((tmp_path / "kb.json").read_text(encoding="utf-8"))["entries"][0]["version"] == 2
    code, out = cli("knowledge", "categories")
    assert code == 0 and "stock_out" in out and "供应商或承运商" in out


def test_the_repeat_shows_the_past_incident(cli):
    i = _resolved(cli)
    at = morning("2026-11-17")
    run_monitor(cli.ws, "shop_sales", at=at, now=at)
    code, out = cli("incidents", "list", "--state", "triggered", "--format", "json")
    (new,) = json.loads(out)
    code, out = cli("incidents", "show", str(new["id"]), "--format", "json")
    (first, *_) = json.loads(out)["similar"]
    assert code == 0 and first["incident_id"] == int(i) and first["summary_zh"].startswith("上次类似：2026-11-03 SH-1")
    code, out = cli("incidents", "show", str(new["id"]))
    assert code == 0 and "上次类似：2026-11-03 SH-1 断货，紧急补货后 " in out and f"(#{i}, " in out


def test_bad_input(cli, tmp_path):
    code, out = cli("incidents", "list", "--format", "json")
    i = str(json.loads(out)[0]["id"])
    code, out = cli("incidents", "resolve", i, "--root-cause", "x", "--category", "gremlins")
    assert code == 2 and "'gremlins' is not a root-cause category" in out
    code, out = cli("knowledge", "search", "")
    assert code == 2 and "QUERY: the query is empty" in out
    code, out = cli("knowledge", "search", "x" * (MAX_TEXT + 1))
    assert code == 2 and "too long" in out
    code, out = cli("knowledge", "search", "断货", "--category", "nope")
    assert code == 2 and "--category" in out
    code, out = cli("knowledge", "edit", "999", "--cause", "x")
    assert code == 2 and "no knowledge entry #999" in out
    code, out = cli("knowledge", "export", "--output", str(tmp_path / "kb.xlsx"))
    assert code == 2 and "cannot export as 'xlsx'" in out
    code, out = cli("knowledge", "search", "断货", "--format", "yaml")
    assert code == 2 and "--format" in out
