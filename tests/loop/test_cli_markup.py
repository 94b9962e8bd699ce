"""The CLI prints people's text as written: square brackets are not Rich markup.

A name-pattern error printed `'^{0,62}$'` for `'^[a-z][a-z0-9_]{0,62}$'`: `[a-z]` was read as a style tag.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from loop_helpers import MONITOR, Effect, morning
from typer.testing import CliRunner

from metricloop.cli import app
from metricloop.monitors.service import run_monitor


@pytest.fixture
def cli(shop, monkeypatch):
    import metricloop.cli as cli_module

    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.6, {"store": "SH-1"})], extra=MONITOR)
    run_monitor(ws, "shop_sales", at=morning("2026-11-17"))
    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    if ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", ws.settings.db)
    monkeypatch.setenv("METRICLOOP_USER", "wang.fang@shop.test")
    for console in (cli_module.console, cli_module.err_console):
        monkeypatch.setattr(console, "_width", 1000)  # no wrapping: each value on one line
    runner = CliRunner(env={"NO_COLOR": "1"})

    def run(*args: str):
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    run.ws = ws
    return run


def test_a_validation_error_keeps_the_whole_pattern(cli):
    bad = cli.ws.home / "bad.yaml"
    bad.write_text("sources:\n  - name: Bad-Name\n    type: duckdb\n    tables: {t: x.csv}\n")
    code, out = cli("apply", str(bad))
    assert code == 2
    assert "String should match pattern '^[a-z][a-z0-9_]{0,62}$'" in out


def test_matchers_reasons_and_comments_are_shown_as_written(cli):
    reason = "[bold]refit[/bold] of [SH-1]"
    code, out = cli("silences", "add", "store=~[A-Z]{2}-1", "--reason", reason, "--duration", "1h")
    assert code == 0 and "store=~[A-Z]{2}-1" in out
    code, out = cli("silences", "list")
    assert "store=~[A-Z]{2}-1" in out and reason in out
    code, out = cli("incidents", "list", "--format", "json")
    (row,) = json.loads(out)
    assert cli("incidents", "comment", str(row["id"]), "tills [red]down[/red] at [SH-1]")[0] == 0
    assert cli("incidents", "resolve", str(row["id"]), "--root-cause", "stock [i]out[/i]")[0] == 0
    code, out = cli("incidents", "show", str(row["id"]))
    assert code == 0
    assert "tills [red]down[/red] at [SH-1]" in out and "root cause: stock [i]out[/i]" in out


def test_an_error_with_brackets_is_shown_whole(cli):
    code, out = cli("silences", "add", "store=~[unclosed", "--reason", "x", "--duration", "1h")
    assert code == 2 and "'store=~[unclosed'" in out and "missing ]" in out
