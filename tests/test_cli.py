"""The `metricloop` command, run in-process on a real workspace."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from metricloop.cli import app

SECRET = "cli-s3cret-pw"


# METRICLOOP_* from the caller's shell must not leak in: None removes a variable for the run
RUNNER = CliRunner(env={"NO_COLOR": "1", "METRICLOOP_DB": None, "METRICLOOP_HOME": None})


def run_cli(*args, code: int | None = 0):
    result = RUNNER.invoke(app, [str(a) for a in args])
    if code is not None:
        assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich fixes the width when the console is made (80 columns when output is not a terminal, as under
    xdist); make it wide so that table cells and error lines are not cut or wrapped."""
    import metricloop.cli as cli_module

    for console in (cli_module.console, cli_module.err_console):
        # the private field, so that the original (usually None: size found at each print) comes back after
        monkeypatch.setattr(console, "_width", 1000)


def make_home(path, helpers, data_files):
    """A workspace made with `metricloop init`, with the shop definitions applied by `metricloop apply`."""
    run_cli("init", path)
    (path / "defs" / "shop.yaml").write_text(
        helpers.defs_yaml([helpers.duckdb_source(data_files)], helpers.shop_metrics())
    )
    run_cli("-w", path, "apply", path / "defs", "--author", "ana")
    return path


@pytest.fixture
def home(tmp_path, helpers, data_files):
    """A workspace of this test's own, for tests that change definitions."""
    return make_home(tmp_path / "ws", helpers, data_files)


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory, helpers, data_files):
    """One workspace for the tests that only read."""
    return make_home(tmp_path_factory.mktemp("cli") / "ws", helpers, data_files)


def export(cli, home) -> str:
    return cli("-w", home, "export").stdout


def test_init(cli, tmp_path):
    result = cli("init", tmp_path / "new")
    assert "workspace at" in result.stdout
    for name in ("metricloop.yaml", "defs", "data", "state.db"):
        assert (tmp_path / "new" / name).exists()
    config = yaml.safe_load((tmp_path / "new" / "metricloop.yaml").read_text())
    assert config["name"] == "new"
    cli("init", tmp_path / "new")  # again: harmless


def test_no_workspace_is_a_clear_error(cli, tmp_path):
    result = cli("-w", tmp_path / "nowhere", "metrics", "list", code=2)
    assert "no workspace at" in result.stderr and "metricloop init" in result.stderr


def test_apply_reports_what_changed(cli, home, helpers):
    out = cli("-w", home, "apply", home / "defs").stdout
    assert "0 created, 0 updated, 12 unchanged" in out
    metric = {**helpers.shop_metrics()[0], "owner": "bo@example.com"}
    (home / "defs" / "gmv.yaml").write_text(helpers.defs_yaml(metrics=[metric]))
    dry = cli("-w", home, "apply", home / "defs" / "gmv.yaml", "--dry-run").stdout
    assert "metric gmv would be updated (v2)" in dry and "dry run: nothing written" in dry
    assert "owner: ana" in export(cli, home)
    out = cli("-w", home, "apply", home / "defs" / "gmv.yaml", "--author", "bo").stdout
    assert re.search(r"metric gmv\s+updated \(v2\)", out)
    assert "0 created, 1 updated, 0 unchanged" in out
    assert "owner: bo@example.com" in export(cli, home)


def test_apply_a_bad_file_exits_2_and_writes_nothing(cli, home, helpers):
    before = export(cli, home)
    metrics = helpers.shop_metrics()
    metrics[0] = {**metrics[0], "owner": "changed@example.com"}
    metrics[2] = {**metrics[2], "measure": {"agg": "count_distinct", "column": "customer"}}
    bad = home / "bad.yaml"
    bad.write_text(helpers.defs_yaml(metrics=metrics))
    result = cli("-w", home, "apply", bad, code=2)
    assert "error:" in result.stderr
    assert "1 problem found, nothing was changed" in result.stderr
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "column: customer" in text)
    assert f"bad.yaml:{line} metrics[2] (customers).measure.column: unknown column 'customer'" in result.stderr
    assert "Traceback" not in result.output
    assert export(cli, home) == before


def test_apply_malformed_yaml(cli, home):
    before = export(cli, home)
    bad = home / "broken.yaml"
    bad.write_text("metrics:\n  - name: x\n    title: [unclosed\n")
    result = cli("-w", home, "apply", bad, code=2)
    assert "broken.yaml:4: malformed YAML" in result.stderr
    assert export(cli, home) == before


def test_export_round_trips(cli, home, tmp_path):
    text = export(cli, home)
    doc = yaml.safe_load(text)
    assert len(doc["metrics"]) == 11 and doc["sources"][0]["name"] == "shop"
    out = tmp_path / "exported.yaml"
    assert "wrote" in cli("-w", home, "export", "--out", out).stdout
    assert out.read_text() == text
    assert "0 created, 0 updated, 12 unchanged" in cli("-w", home, "apply", out).stdout
    only = yaml.safe_load(cli("-w", home, "export", "--kind", "source").stdout)
    assert list(only) == ["sources"]


def test_history_and_rollback(cli, home, helpers):
    metric = {**helpers.shop_metrics()[0], "owner": "bo@example.com"}
    (home / "gmv.yaml").write_text(helpers.defs_yaml(metrics=[metric]))
    cli("-w", home, "apply", home / "gmv.yaml", "--author", "bo")
    out = cli("-w", home, "history", "metric", "gmv", "--diff").stdout
    assert "│ 1 " in out and "│ 2 " in out and " ana " in out and " bo " in out
    assert "+owner: bo@example.com" in out
    out = cli("-w", home, "rollback", "metric", "gmv", "1", "--author", "carol").stdout
    assert "metric gmv is now v3 (restored from v1)" in out
    assert yaml.safe_load(export(cli, home))["metrics"][3]["owner"] == "ana@example.com"  # sorted: gmv is 4th
    assert "already equals version 1" in cli("-w", home, "rollback", "metric", "gmv", "1").stdout
    assert "rollback to version 1" in cli("-w", home, "history", "metric", "gmv").stdout
    result = cli("-w", home, "rollback", "metric", "gmv", "7", code=2)
    assert "has no version 7" in result.stderr
    assert "no history for metric 'nope'" in cli("-w", home, "history", "metric", "nope", code=2).stderr


def test_metrics_list_and_show(cli, shared_home):
    out = cli("-w", shared_home, "metrics", "list").stdout
    for name in ("gmv", "conversion_rate", "web_return_rate"):
        assert name in out
    listed = json.loads(cli("-w", shared_home, "metrics", "list", "--format", "json").stdout)
    assert {m["name"] for m in listed} >= {"gmv", "aov"}
    traffic = json.loads(cli("-w", shared_home, "metrics", "list", "--domain", "traffic", "--format", "json").stdout)
    assert {m["name"] for m in traffic} == {"visitors", "conversion_rate"}
    shown = cli("-w", shared_home, "metrics", "show", "aov").stdout
    assert "name: aov" in shown and "SQL (duckdb)" in shown and "DATE_TRUNC" in shown
    assert "name: conversion_rate" in cli("-w", shared_home, "metrics", "show", "conversion_rate").stdout


def test_metrics_query_formats(cli, shared_home, orders_df):
    window = ["--from", "2024-01-08", "--to", "2024-01-10"]
    args = ["-w", shared_home, "metrics", "query", "gmv", "--by", "region", *window]
    df = pd.read_csv(io.StringIO(cli(*args, "--format", "csv").stdout))
    assert list(df.columns) == ["time", "region", "value", "row_count", "flag"]
    assert len(df) == 8
    rows = orders_df[(orders_df["order_time"] >= "2024-01-08") & (orders_df["order_time"] < "2024-01-10")]
    assert df["value"].sum() == pytest.approx(rows.loc[rows["status"] != "cancelled", "amount"].sum())
    records = json.loads(cli(*args, "--format", "json").stdout)
    assert len(records) == 8 and records[0]["time"].startswith("2024-01-08T00:00:00")
    table = cli(*args, "--format", "table").stdout
    assert "East" in table and "8 rows" in table
    result = cli(*args, "--format", "csv", "--sql", "--where", "region=East", "--grain", "week")
    assert "DATE_TRUNC('WEEK'" in result.stderr and "'East'" in result.stderr
    assert len(pd.read_csv(io.StringIO(result.stdout))) == 1
    bad = cli(*args, "--format", "xml", code=2)
    assert "--format must be table, csv or json" in bad.stderr


def test_metrics_query_shows_missing_and_flags(cli, shared_home):
    out = cli("-w", shared_home, "metrics", "query", "web_return_rate", "--from", "2024-01-20", "--to", "2024-01-21",
              "--format", "csv").stdout  # fmt: skip
    df = pd.read_csv(io.StringIO(out))
    assert df["flag"].tolist() == ["zero_denominator"] and df["value"].isna().all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["metrics", "query", "gvm"], "no metric named 'gvm'. Did you mean gmv?"),
        (["metrics", "query", "gmv", "--by", "regoin"], "cannot be sliced by 'regoin'"),
        (["metrics", "query", "gmv", "--where", "region;drop table orders=x"], "cannot be sliced by"),
        (["metrics", "query", "gmv", "--from", "soon"], "'soon' is not a date or time"),
        (["metrics", "show", "nope"], "no metric named 'nope'"),
        (["metrics", "slices", "gmv", "--by", "store"], "cannot be sliced by 'store'"),
        (["metrics", "check", "nope"], "no metric named 'nope'"),
        (["sources", "test", "nope"], "no source named 'nope'"),
    ],
)
def test_user_errors_exit_2_with_one_clear_line(cli, shared_home, args, message):
    result = cli("-w", shared_home, *args, code=2)
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_where_injection_returns_nothing(cli, shared_home):
    out = cli("-w", shared_home, "metrics", "query", "gmv", "--where", "region=East' OR 1=1 --", "--from", "2024-01-08",
              "--to", "2024-01-09", "--format", "csv").stdout  # fmt: skip
    df = pd.read_csv(io.StringIO(out))
    assert df["row_count"].tolist() == [0] and df["flag"].tolist() == ["missing"]


def test_metrics_slices(cli, shared_home):
    args = ["-w", shared_home, "metrics", "slices", "orders", "--by", "region,channel", "--from", "2024-01-08", "--to",
            "2024-01-15"]  # fmt: skip
    out = cli(*args).stdout
    assert "20 slices × 7 buckets" in out
    df = pd.read_csv(io.StringIO(cli(*args, "--format", "csv").stdout))
    assert df["slice"].nunique() == 20 and len(df) == 140
    top = cli(*args, "--combos", "each", "--top", "1").stdout
    assert "3 slices × 7 buckets" in top


def test_metrics_check(cli, shared_home):
    ok = cli("-w", shared_home, "metrics", "check", "gmv", "--at", "2024-02-15T12:00")
    assert "freshness" in ok.stdout and "completeness" in ok.stdout
    failed = cli("-w", shared_home, "metrics", "check", "gmv", "--at", "2024-02-21T12:00", "--format", "json", code=1)
    checks = json.loads(failed.stdout)
    assert [c["slice"] for c in checks if c["status"] == "fail"] == ["region=North"]


def test_sources_list_and_test(cli, home, monkeypatch):
    monkeypatch.setenv("ML_TEST_CLI_PASSWORD", SECRET)
    (home / "down.yaml").write_text(
        "sources:\n  - name: down\n    type: sql\n"
        "    url: postgresql+psycopg://postgres:${ML_TEST_CLI_PASSWORD}@127.0.0.1:1/test\n"
    )
    cli("-w", home, "apply", home / "down.yaml")
    listed = cli("-w", home, "sources", "list").stdout
    assert "shop" in listed and "${ML_TEST_CLI_PASSWORD}" in listed and SECRET not in listed
    assert SECRET not in export(cli, home)
    ok = cli("-w", home, "sources", "test", "shop").stdout
    assert "source shop is reachable" in ok and "orders" in ok and "visitors" in ok
    down = cli("-w", home, "sources", "test", "down", code=2)
    assert "source 'down': cannot connect" in down.stderr
    assert SECRET not in down.output
