"""Data quality per metric: freshness (is the newest row late?) and completeness (is a bucket thin?)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from metricloop.metrics.quality import check_metric


def by_check(checks, name):
    return [c for c in checks if c.check == name]


def test_freshness_ok_and_late(shared_shop_ws, orders_df):
    newest = orders_df["order_time"].max()
    (ok,) = by_check(check_metric(shared_shop_ws, "gmv", at="2024-03-01T06:00"), "freshness")
    assert ok.status == "ok"
    assert ok.time == newest.to_pydatetime()
    assert ok.details["max_lag"] == "1d6h"  # the default for a daily metric
    (late,) = by_check(check_metric(shared_shop_ws, "gmv", at="2024-03-03"), "freshness")
    assert late.status == "fail"
    assert f"newest row {newest:%Y-%m-%d %H:%M}" in late.message
    assert "later than the allowed 1d6h" in late.message
    assert late.details["lag_seconds"] == int((pd.Timestamp("2024-03-03") - newest).total_seconds())


def test_freshness_as_of_a_time_ignores_later_rows(shared_shop_ws):
    """Checked as of 2024-01-10 12:00, rows after that time do not exist yet."""
    (check,) = by_check(check_metric(shared_shop_ws, "gmv", at="2024-01-10T12:00"), "freshness")
    assert check.status == "ok"
    assert check.time < pd.Timestamp("2024-01-10 12:00")


def test_freshness_with_a_max_lag_and_an_aware_at(make_ws, helpers, data_files):
    ws = make_ws()
    metric = {**helpers.shop_metrics()[1], "quality": {"max_lag": "2h"}}
    helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files)], [metric]))
    (late,) = by_check(check_metric(ws, "orders", at="2024-03-01T06:00"), "freshness")
    assert late.status == "fail" and "later than the allowed 2h" in late.message
    # 2024-02-29T16:30Z is 2024-03-01 00:30 in Shanghai: an hour after the last order at most
    (ok,) = by_check(check_metric(ws, "orders", at="2024-02-29T16:30:00Z"), "freshness")
    assert ok.status == "ok"


def test_completeness_fails_for_a_slice_missing_its_rows(shared_shop_ws):
    """North has no orders on 2024-02-20; the day after, the check names that slice and bucket."""
    checks = by_check(check_metric(shared_shop_ws, "gmv", at="2024-02-21T12:00"), "completeness")
    failed = [c for c in checks if c.status == "fail"]
    assert len(failed) == 1, [c.to_dict() for c in checks]
    (north,) = failed
    assert north.slice == "region=North"
    assert north.time == pd.Timestamp("2024-02-20")
    assert north.details["rows"] == 0 and north.details["usual"] > 5
    assert "has 0 rows, 0% of the usual" in north.message


def test_completeness_ok_otherwise(shared_shop_ws):
    checks = by_check(check_metric(shared_shop_ws, "gmv", at="2024-02-15T12:00"), "completeness")
    assert [c.status for c in checks] == ["ok"]
    assert "the last 3 day buckets have their usual row counts" in checks[0].message


def test_a_derived_metric_checks_both_tables(shared_shop_ws):
    checks = check_metric(shared_shop_ws, "conversion_rate", at="2024-02-15T12:00")
    assert {(c.metric, c.check) for c in checks} == {
        ("orders", "freshness"),
        ("orders", "completeness"),
        ("visitors", "freshness"),
        ("visitors", "completeness"),
    }
    assert all(c.status == "ok" for c in checks)
    json.dumps([c.to_dict() for c in checks])  # ready for the API and `--format json`


@pytest.mark.postgres
def test_an_unreachable_source_is_an_error_result_not_a_crash(make_ws, helpers):
    ws = make_ws()
    source = {"name": "down", "type": "sql", "url": "postgresql+psycopg://postgres@127.0.0.1:1/test"}
    helpers.apply_text(ws, helpers.defs_yaml([source], [helpers.shop_metrics("down")[0]]), check=False)
    checks = check_metric(ws, "gmv", at="2024-02-15")
    assert [(c.check, c.status) for c in checks] == [("freshness", "error"), ("completeness", "error")]
    assert all("cannot connect" in c.message for c in checks)


def test_freshness_of_a_column_with_a_time_zone(make_ws, helpers, tmp_path):
    events = pd.DataFrame({"t": pd.to_datetime(["2024-01-01 15:30"]).tz_localize("UTC"), "v": [1]})
    events.to_parquet(tmp_path / "ev.parquet", index=False)
    ws = make_ws()
    source = {"name": "s", "type": "duckdb", "tables": {"ev": str(tmp_path / "ev.parquet")}}
    metric = {"name": "v", "title": {"en": "v"}, "owner": "a", "domain": "d", "source": "s", "table": "ev",
              "time_column": "t", "grain": "hour", "measure": {"agg": "sum", "column": "v"}}  # fmt: skip
    helpers.apply_text(ws, helpers.defs_yaml([source], [metric]))
    (check,) = by_check(check_metric(ws, "v", at="2024-01-02T01:00"), "freshness")
    assert check.status == "ok"
    assert check.time == pd.Timestamp("2024-01-01 23:30")  # Shanghai time
    assert check.details["lag_seconds"] == 90 * 60
