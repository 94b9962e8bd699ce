"""The scheduler: one run per slot, one catch-up run after downtime, run rows, failing sources (SQLite and
PostgreSQL state)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from loop_helpers import (
    MONITOR,
    SOURCE_OWNER,
    Effect,
    apply_yaml,
    aware,
    incidents,
    monitor_yaml,
    morning,
    runs,
    utc,
)
from sqlalchemy import select

from metricloop.alerting.models import Alert
from metricloop.monitors.schemas import MonitorSpec
from metricloop.monitors.service import last_slot, run_due, run_monitor
from metricloop.scheduler import Background


def alerts(ws, kind: str | None = None) -> list[Alert]:
    with ws.db.session() as s:
        q = select(Alert).order_by(Alert.id)
        if kind:
            q = q.where(Alert.kind == kind)
        return list(s.scalars(q))


def test_each_monitor_runs_once_per_slot(shop):
    ws = shop(extra=MONITOR)
    first = run_due(ws, now=morning("2026-11-17", 9, 5))
    assert [(r.monitor, r.trigger) for r in first] == [("shop_sales", "schedule")]
    assert aware(first[0].scheduled_for) == utc(morning("2026-11-17"))
    assert run_due(ws, now=morning("2026-11-17", 9, 30)) == []
    assert run_due(ws, now=morning("2026-11-17", 23, 59)) == []
    second = run_due(ws, now=morning("2026-11-18", 9, 0))
    assert [(r.trigger, r.data_until) for r in second] == [("schedule", datetime(2026, 11, 18))]
    assert len(runs(ws)) == 2


def test_after_downtime_one_catchup_run_judges_every_missed_bucket(shop):
    outage = Effect(date(2026, 11, 18), date(2026, 11, 19), 0.2, {"region": "North"})
    ws = shop(effects=[outage], extra=MONITOR)
    run_due(ws, now=morning("2026-11-17", 9, 1))  # judges 11-16
    # the service is down from 11-17 09:05 until 11-21 10:00: the 18th, 19th and 20th slots are missed
    caught = run_due(ws, now=morning("2026-11-21", 10, 0))
    assert len(caught) == 1
    run = caught[0]
    assert run.trigger == "catchup" and run.status == "ok", run.error
    assert aware(run.scheduled_for) == utc(morning("2026-11-21"))  # the latest slot only
    assert run.details["evaluate_from"] == "2026-11-17T00:00:00"  # every bucket since the last run
    assert run.data_until == datetime(2026, 11, 21)
    # North was down on two of the caught-up days: one alert per series (count 2), one incident
    assert run.anomalies == 8 and run.alerts == 4
    assert {a.count for a in alerts(ws)} == {2}
    assert {a.first_seen for a in alerts(ws)} == {datetime(2026, 11, 18)}
    assert {a.last_seen for a in alerts(ws)} == {datetime(2026, 11, 19)}
    (inc,) = incidents(ws)
    assert len(inc.slices) == 4
    assert run_due(ws, now=morning("2026-11-21", 11, 0)) == []  # and the slot is done


def test_catchup_after_a_long_downtime_judges_all_of_it(shop):
    ws = shop(extra=MONITOR)
    run_due(ws, now=morning("2026-08-20"))
    run = run_due(ws, now=morning("2026-11-20"))[0]
    assert run.trigger == "catchup"
    assert run.details["evaluate_from"] == "2026-08-20T00:00:00"  # 92 days back: under the cap, all of it


def test_hourly_catchup_is_capped_at_200_buckets(shop):
    hourly = shop(extra=monitor_yaml(grain="hour", schedule={"every": "1h"}, history="20d"))
    run_due(hourly, now=morning("2026-11-01"))
    run = run_due(hourly, now=morning("2026-11-20"))[0]
    assert run.trigger == "catchup" and run.status == "ok", run.error
    assert run.details["evaluate_from"] == "2026-11-12T01:00:00"  # 200 hours before 11-20 09:00


def test_a_run_row_says_what_happened(shop):
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.2, {"region": "North"})], extra=MONITOR)
    (run,) = run_due(ws, now=morning("2026-11-17", 9, 2))
    (row,) = runs(ws)
    assert row.id == run.id and row.monitor == "shop_sales" and row.monitor_version == 1
    assert row.status == "ok" and row.error == ""
    assert aware(row.started_at) == utc(morning("2026-11-17", 9, 2))
    assert aware(row.finished_at) >= aware(row.started_at)
    assert row.series_evaluated == 7  # the total, 2 regions, 4 stores
    assert row.anomalies == 4 and row.alerts == 4
    assert row.details["window"][1] == "2026-11-17T00:00:00"
    assert row.details["incidents"] == [incidents(ws)[0].id]


def test_schedules_in_cron_and_every(shop):
    cron = MonitorSpec.model_validate({"name": "m", "metric": "sales", "schedule": {"cron": "15 * * * *"}})
    assert last_slot(cron, datetime(2026, 11, 17, 3, 14, tzinfo=UTC)) == datetime(2026, 11, 17, 2, 15, tzinfo=UTC)
    assert last_slot(cron, datetime(2026, 11, 17, 3, 15, tzinfo=UTC)) == datetime(2026, 11, 17, 3, 15, tzinfo=UTC)
    daily = MonitorSpec.model_validate({"name": "m", "metric": "sales", "schedule": {"cron": "0 9 * * *"}})
    # 09:00 in Beijing is 01:00 UTC
    assert last_slot(daily, datetime(2026, 11, 17, 0, 59, tzinfo=UTC)) == datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
    every = MonitorSpec.model_validate({"name": "m", "metric": "sales", "schedule": {"every": "15m"}})
    assert last_slot(every, datetime(2026, 11, 17, 3, 44, tzinfo=UTC)) == datetime(2026, 11, 17, 3, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="exactly one"):
        MonitorSpec.model_validate({"name": "m", "metric": "sales", "schedule": {}})
    with pytest.raises(ValueError, match="not a valid cron"):
        MonitorSpec.model_validate({"name": "m", "metric": "sales", "schedule": {"cron": "every day"}})


# ------------------------------------------------------------------ failing sources


def test_a_source_that_fails_marks_runs_failed_and_raises_one_alert_and_the_service_goes_on(shop):
    ws = shop(extra=MONITOR)
    apply_yaml(ws, monitor_yaml(name="other_sales"))
    parquet = ws.home / "data" / "sales.parquet"
    kept = parquet.read_bytes()
    parquet.unlink()
    worker = Background(ws)
    for day in ("2026-11-17", "2026-11-18", "2026-11-19"):
        failed = run_due(ws, now=morning(day, 9, 1))
        assert [(r.monitor, r.status) for r in failed] == [("other_sales", "failed"), ("shop_sales", "failed")]
        assert all("sales.parquet" in r.error for r in failed)
    worker.tick_once()  # what `serve` does each tick (runs both again, for today's slot): it must not raise
    assert [r.status for r in runs(ws)] == ["failed"] * 8
    (dq,) = alerts(ws, "data_quality")
    assert dq.labels["check"] == "source" and dq.count == 8  # two monitors × four slots, one alert
    (inc,) = incidents(ws)
    assert inc.kind == "data_quality" and inc.assignee == SOURCE_OWNER and inc.state == "triggered"
    assert "sales.parquet" in inc.summary["explanation_en"]
    # the file comes back: runs succeed again and the alert resolves itself
    parquet.write_bytes(kept)
    back = [run_monitor(ws, name, at=morning("2026-11-20")) for name in ("other_sales", "shop_sales")]
    assert [r.status for r in back] == ["ok", "ok"]
    assert [a.status for a in alerts(ws, "data_quality")] == ["resolved"]
    assert incidents(ws)[0].state == "resolved"


@pytest.fixture
def pg_sales(pg_admin, pg_schema, tmp_path):
    """The shop's sales table in a fresh PostgreSQL schema; yields the schema name."""
    from loop_helpers import write_shop_data

    write_shop_data(tmp_path / "pgdata")
    df = pd.read_parquet(tmp_path / "pgdata" / "data" / "sales.parquet")
    df.to_sql("sales", pg_admin, schema=pg_schema, index=False)
    return pg_schema


@pytest.mark.postgres
def test_a_database_source_on_a_closed_port_fails_cleanly(shop, pg_sales, closed_port):
    from loop_helpers import PG_URL

    def defs(url: str) -> str:
        return f"""
sources:
  - {{name: warehouse, type: sql, url: "{url}", schema: {pg_sales}, owner: dba@shop.test}}
metrics:
  - name: wh_sales
    title: {{en: Warehouse sales}}
    owner: {SOURCE_OWNER}
    domain: sales
    source: warehouse
    table: sales
    time_column: ts
    measure: {{agg: sum, column: amount}}
    dimensions: [region, store]
monitors:
  - name: wh_sales
    metric: wh_sales
    slicing: {{dimensions: [region]}}
    detector: {{detector: change, offset: last_week, max_pct: 0.3, direction: down}}
    schedule: {{cron: "0 9 * * *"}}
"""

    ws = shop(extra=MONITOR)
    apply_yaml(ws, defs(PG_URL))
    assert [r.status for r in run_due(ws, now=morning("2026-11-17", 9, 1))] == ["ok", "ok"]
    closed = PG_URL.replace(":5432/", f":{closed_port}/")
    from metricloop.definitions import service

    entries, problems = service.read_text(defs(closed))
    with ws.db.session() as s:  # `apply --no-check`: the source cannot be reached to check columns
        service.apply(s, entries=[e for e in entries if e.kind == "source"], problems=problems, author="t")
    for day in ("2026-11-18", "2026-11-19"):
        done = {r.monitor: r for r in run_due(ws, now=morning(day, 9, 1))}
        assert done["shop_sales"].status == "ok"  # the other source is unaffected
        assert done["wh_sales"].status == "failed"
        assert "source 'warehouse'" in done["wh_sales"].error and str(closed_port) in done["wh_sales"].error
    (dq,) = alerts(ws, "data_quality")
    assert dq.labels["check"] == "source" and dq.labels["source"] == "warehouse" and dq.count == 2
    (inc,) = incidents(ws)
    assert inc.assignee == "dba@shop.test"


def test_cli_run_drives_due_monitors_timers_and_outbox(shop, monkeypatch):
    from typer.testing import CliRunner

    from metricloop.cli import app

    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.2, {"region": "North"})], extra=MONITOR)
    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    if ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", ws.settings.db)
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--at", "2026-11-17T09:05+08:00"])
    assert result.exit_code == 0, result.output
    assert "shop_sales" in result.output and "ok" in result.output
    result = runner.invoke(app, ["run", "--at", "2026-11-17T09:35+08:00"])
    assert result.exit_code == 0 and "no monitor was due" in result.output
    result = runner.invoke(app, ["run", "--at", "2026-11-17 09:35"])
    assert result.exit_code != 0 and "offset" in result.output
    assert len(runs(ws)) == 1 and len(incidents(ws)) == 1


def test_instances_sharing_the_state_run_each_slot_once(shop):
    """Several `serve` instances on one database: one runs the slot, the others see it taken (no failed run)."""
    import threading

    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.2, {"region": "North"})], extra=MONITOR)
    instances = [Workspace(ws.home, Settings(home=ws.home, db=ws.settings.db)) for _ in range(3)]
    for w in instances:
        _ = w.db  # each with its own engine, as separate processes would have
    start = threading.Barrier(len(instances))
    results, errors = [], []

    def serve(w):
        try:
            start.wait()
            results.append(run_due(w, now=morning("2026-11-17", 9, 1)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=serve, args=(w,)) for w in instances]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for w in instances:
            w.close()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, 1]
    assert [(r.status, r.anomalies) for r in runs(ws)] == [("ok", 4)]
    assert len(incidents(ws)) == 1


def test_a_manual_run_leaves_the_slot_to_the_scheduler(shop):
    ws = shop(extra=MONITOR)
    run_monitor(ws, "shop_sales", at=morning("2026-11-10"), now=morning("2026-11-17", 9, 30))  # looking at an old day
    (scheduled,) = run_due(ws, now=morning("2026-11-17", 9, 31))
    assert scheduled.trigger == "schedule" and scheduled.data_until == datetime(2026, 11, 17)


def test_buckets_held_back_for_late_data_are_judged_when_it_arrives(shop):
    """The feed stops after 11-17: the 11-20 run judges only what the data reached and the data owner hears of it;
    once the rows arrive, the next run catches up on 11-18 and 11-19 (where a store dropped)."""
    from loop_helpers import write_shop_data

    drop = Effect(date(2026, 11, 19), date(2026, 11, 19), 0.5, {"store": "SH-1"})
    late = [(date(2026, 11, d), {}) for d in (18, 19, 20)]
    ws = shop(effects=[drop], missing=late, extra=MONITOR)
    run_due(ws, now=morning("2026-11-17", 9, 1))
    (held,) = run_due(ws, now=morning("2026-11-20", 9, 1))
    assert held.status == "ok" and held.anomalies == 0
    assert held.data_until == datetime(2026, 11, 18)  # judged up to what the data reached
    (dq,) = incidents(ws)
    assert dq.kind == "data_quality" and dq.labels["check"] == "freshness"
    write_shop_data(ws.home, effects=[drop])  # the rows arrive
    (caught,) = run_due(ws, now=morning("2026-11-21", 9, 1))  # the next slot: no slot missed, buckets were
    assert caught.trigger == "schedule" and caught.details["evaluate_from"] == "2026-11-18T00:00:00"
    metric = [i for i in incidents(ws) if i.kind == "metric"]
    assert [i.slices for i in metric] == [["region=East,store=SH-1"]]
    assert incidents(ws)[0].state == "resolved"  # the data is on time again


def test_sparse_events_are_judged_on_days_without_rows(shop):
    """Complaints, refunds: no row yesterday means zero, not late data (the freshness check says what is late)."""
    refunds = [datetime(2026, 8, 3) + timedelta(days=k, hours=10) for k in range(0, 105, 5)]
    refunds += [datetime(2026, 11, 16, 10, m) for m in range(15)]  # a surge on 11-16
    events = """
sources:
  - name: crm
    type: duckdb
    owner: crm.owner@shop.test
    tables: {refunds: data/refunds.parquet}
metrics:
  - name: refunds
    title: {en: Refunds}
    owner: service@shop.test
    domain: service
    source: crm
    table: refunds
    time_column: ts
    measure: {agg: count}
    fill: zero
    quality: {max_lag: 7d}
monitors:
  - name: refund_surge
    metric: refunds
    slicing: {total: true}
    detector: {detector: change, offset: last_week, max_abs: 5, direction: up}
    schedule: {cron: "0 9 * * *"}
    calendar: {china_holidays: false}
"""
    ws = shop(extra=MONITOR)
    pd.DataFrame({"ts": pd.to_datetime(refunds), "id": range(len(refunds))}).to_parquet(
        ws.home / "data" / "refunds.parquet", index=False
    )
    apply_yaml(ws, events)
    run_due(ws, now=morning("2026-11-16", 9, 1), only="refund_surge")
    (run,) = run_due(ws, now=morning("2026-11-17", 9, 1), only="refund_surge")
    assert run.status == "ok" and run.series_evaluated == 1 and run.anomalies == 1
    (inc,) = [i for i in incidents(ws) if i.monitor == "refund_surge"]
    assert inc.summary["actual"] == 15
    for day in ("2026-11-18", "2026-11-19"):  # days without a single refund: judged, and normal
        (quiet,) = run_due(ws, now=morning(day, 9, 1), only="refund_surge")
        assert quiet.series_evaluated == 1 and quiet.data_until == datetime.fromisoformat(day)


def test_an_hourly_monitor_does_not_read_hours_without_rows_yet_as_zero(shop):
    """The morning after the feed's last row, the hours of today are late data, not '0 sales' (an hourly monitor
    allows 2 h of lateness, a daily one 30 h, unless the metric says otherwise)."""
    hourly = monitor_yaml(
        grain="hour",
        schedule={"every": "1h"},
        history="20d",
        slicing={"dimensions": ["region"], "total": True},
        detector={"detector": "change", "offset": "last_week", "max_pct": 0.3, "direction": "down"},
    )
    ws = shop(extra=hourly)
    from loop_helpers import SHOP_DEFS

    apply_yaml(ws, SHOP_DEFS.replace("    grain: day\n", "    grain: day\n    fill: zero\n"))  # no row: 0
    run_due(ws, now=morning("2026-11-20", 23, 50))
    (run,) = run_due(ws, now=morning("2026-11-21", 10, 1))  # the data ends 11-20 23:30
    assert run.status == "ok" and run.anomalies == 0
    assert run.data_until == datetime(2026, 11, 20, 23)  # the last row (23:30) may not be the hour's last
    assert incidents(ws) == []  # the hours wait for their rows (the daily feed is not late yet: no data alert)
