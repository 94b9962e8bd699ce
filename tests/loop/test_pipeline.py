"""The alert path on a shop whose data we control: dedup, grouping, silences, maintenance, inhibition, severity,
auto-resolve (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

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
    outbox,
    timeline,
    utc,
)
from sqlalchemy import select

from metricloop.alerting import silences
from metricloop.alerting.models import Alert
from metricloop.monitors.models import Anomaly
from metricloop.monitors.service import run_monitor

NORTH_DOWN = Effect(date(2026, 11, 16), date(2026, 11, 17), 0.2, {"region": "North"})
NORTH_SLICES = ["*", "region=North", "region=North,store=BJ-1", "region=North,store=BJ-2"]
# two unrelated stores: each store fires, no region and not the total
TWO_STORES = [
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.6, {"store": "SH-1"}),
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "BJ-2"}),
]
HOOK = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
routes:
  - {name: all, matchers: ["monitor=shop_sales"], channels: [hook]}
"""


def run(ws, day: str, monitor: str = "shop_sales", **kw):
    at = morning(day)
    r = run_monitor(ws, monitor, at=at, now=at, **kw)
    assert r.status == "ok", r.error
    return r


def alerts(ws) -> list[Alert]:
    with ws.db.session() as s:
        return list(s.scalars(select(Alert).order_by(Alert.id)))


# ------------------------------------------------------------------ dedup


def test_an_open_incident_absorbs_repeats_and_renotifies_after_the_interval(shop):
    ws = shop(effects=[NORTH_DOWN], extra=MONITOR + HOOK)
    first = run(ws, "2026-11-17")
    assert first.anomalies == 4 and first.details["incidents_opened"] == 1
    second = run(ws, "2026-11-18")  # the drop goes on: same four series
    assert second.anomalies == 4 and second.details["incidents_opened"] == 0
    assert second.details["alerts_repeat"] == 4 and second.alerts == 0
    (inc,) = incidents(ws)
    assert inc.slices == NORTH_SLICES
    assert {a.count for a in alerts(ws)} == {2} and len(alerts(ws)) == 4
    assert [e.kind for e in timeline(ws, inc.id)].count("absorbed") == 1
    # 24 h later is past the 4 h repeat interval: one reminder
    assert [n.event for n in outbox(ws, incident_id=inc.id)] == ["created", "repeat"]
    again = run(ws, "2026-11-18")  # the same bucket once more: nothing new at all
    assert again.anomalies == 0
    assert [n.event for n in outbox(ws, incident_id=inc.id)] == ["created", "repeat"]


def test_repeats_within_the_interval_are_not_renotified(shop):
    ws = shop(effects=[NORTH_DOWN], extra=monitor_yaml(repeat_interval="2d") + HOOK)
    run(ws, "2026-11-17")
    run(ws, "2026-11-18")
    (inc,) = incidents(ws)
    assert [n.event for n in outbox(ws, incident_id=inc.id)] == ["created"]
    assert [e.kind for e in timeline(ws, inc.id)].count("absorbed") == 1


# ------------------------------------------------------------------ grouping


def test_a_total_and_its_child_slices_become_one_incident(shop):
    ws = shop(effects=[NORTH_DOWN], extra=MONITOR)
    run(ws, "2026-11-17")
    (inc,) = incidents(ws)
    assert inc.slices == NORTH_SLICES  # the parent first
    assert inc.title.startswith("销售额 低于预期")  # led by the total
    members = [m["slice"] for m in inc.summary["members"]]
    assert members == NORTH_SLICES
    assert {a.incident_id for a in alerts(ws)} == {inc.id}


def test_unrelated_slices_are_separate_incidents_under_hierarchy(shop):
    ws = shop(effects=TWO_STORES, extra=MONITOR)
    run(ws, "2026-11-17")
    assert sorted(i.slices[0] for i in incidents(ws)) == ["region=East,store=SH-1", "region=North,store=BJ-2"]


def test_group_monitor_puts_everything_of_the_monitor_in_one_incident(shop):
    ws = shop(effects=TWO_STORES, extra=monitor_yaml(group="monitor"))
    run(ws, "2026-11-17")
    (inc,) = incidents(ws)
    assert sorted(inc.slices) == ["region=East,store=SH-1", "region=North,store=BJ-2"]


def test_group_none_is_one_incident_per_slice(shop):
    ws = shop(effects=[NORTH_DOWN], extra=monitor_yaml(group="none"))
    run(ws, "2026-11-17")
    assert sorted(i.slices[0] for i in incidents(ws)) == sorted(NORTH_SLICES)


def test_a_child_firing_later_joins_the_open_parent_incident(shop):
    late_child = Effect(date(2026, 11, 17), date(2026, 11, 17), 0.5, {"store": "BJ-2"})
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.2, {"region": "North"}), late_child],
              extra=MONITOR)  # fmt: skip
    run(ws, "2026-11-17")
    run(ws, "2026-11-18")
    (inc,) = incidents(ws)
    assert "region=North,store=BJ-2" in inc.slices


# ------------------------------------------------------------------ silences


def test_a_silence_mutes_matching_alerts_with_its_reason(shop):
    ws = shop(effects=TWO_STORES, extra=MONITOR)
    with ws.db.session() as s:
        sil = silences.create(
            s,
            matchers=["store=~BJ-.*"],
            reason="BJ stores are being refitted",
            created_by="ops@shop.test",
            starts_at=morning("2026-11-16"),
            ends_at=morning("2026-11-20"),
        )
        sid = sil.id
    r = run(ws, "2026-11-17")
    assert r.details["muted"] == 1
    (inc,) = incidents(ws)
    assert inc.slices == ["region=East,store=SH-1"]
    muted = [a for a in alerts(ws) if a.status == "muted"]
    assert [(a.slice, a.muted_by) for a in muted] == [
        ("region=North,store=BJ-2", f"silence #{sid}: BJ stores are being refitted")
    ]
    assert muted[0].incident_id is None


def test_an_expired_or_ended_silence_mutes_nothing(shop):
    ws = shop(effects=TWO_STORES, extra=MONITOR)
    with ws.db.session() as s:
        silences.create(
            s, matchers=["store=BJ-2"], reason="over", created_by="a", starts_at=morning("2026-11-10"),
            ends_at=morning("2026-11-12"),
        )  # fmt: skip
        early = silences.create(
            s, matchers=["store=SH-1"], reason="ended early", created_by="a", starts_at=morning("2026-11-10"),
            ends_at=morning("2026-12-01"),
        )  # fmt: skip
        silences.expire(s, silence_id=early.id)
    run(ws, "2026-11-17")
    assert len(incidents(ws)) == 2
    assert all(a.status == "firing" for a in alerts(ws))


def test_a_silence_can_match_the_severity(shop):
    """Severity is one of the labels a silence may match (docs/loop.md), so it is known before muting."""
    ws = shop(
        effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.85, {"store": "SH-1"})],
        extra=monitor_yaml(detector={"detector": "change", "offset": "last_week", "max_pct": 0.05, "direction": "down"},
                           slicing={"dimensions": ["store"], "total": False}),
    )  # fmt: skip
    with ws.db.session() as s:
        silences.create(s, matchers=["severity=P2"], reason="P2 is for business hours", created_by="a",
                        starts_at=morning("2026-11-16"), ends_at=morning("2026-11-20"))  # fmt: skip
    run(ws, "2026-11-17")
    (alert,) = alerts(ws)
    assert alert.severity == "P2" and alert.status == "muted" and "P2 is for business hours" in alert.muted_by
    assert incidents(ws) == []


def test_silences_need_matchers_a_reason_and_an_end(shop):
    ws = shop(extra=MONITOR)
    from metricloop.errors import MetricloopError

    with ws.db.session() as s:
        for kwargs, message in (
            ({"matchers": [], "reason": "x", "duration": timedelta(hours=1)}, "at least one matcher"),
            ({"matchers": ["store=~("], "reason": "x", "duration": timedelta(hours=1)}, "invalid regular"),
            ({"matchers": ["store=A"], "reason": " ", "duration": timedelta(hours=1)}, "reason"),
            ({"matchers": ["store=A"], "reason": "x"}, "ends_at or a duration"),
            ({"matchers": ["store=A"], "reason": "x", "ends_at": datetime(2020, 1, 1, tzinfo=UTC)}, "before it starts"),
        ):
            with pytest.raises(MetricloopError, match=message):
                silences.create(s, created_by="a", **kwargs)
    with ws.db.session() as s:
        assert silences.list_silences(s) == []


# ------------------------------------------------------------------ maintenance


def test_a_maintenance_window_mutes_the_days_it_covers(shop):
    maintenance = """
maintenance:
  - name: bj_refit
    matchers: ["region=North"]
    windows: [{start: 2026-11-15T20:00:00, end: 2026-11-17T08:00:00}]
    reason: refit of the North tills
"""
    ws = shop(effects=TWO_STORES, extra=MONITOR + maintenance)
    run(ws, "2026-11-17")
    (inc,) = incidents(ws)
    assert inc.slices == ["region=East,store=SH-1"]
    (muted,) = [a for a in alerts(ws) if a.status == "muted"]
    assert muted.slice == "region=North,store=BJ-2"
    assert muted.muted_by == "maintenance bj_refit: refit of the North tills"


def test_a_few_hours_of_maintenance_do_not_mute_the_day(shop):
    """A nightly 02:00-04:00 window (or a 4-hour one on that date) covers 2 or 4 of the bucket's 24 hours: the day's
    sales are still judged. Muting every day it touches would mute a daily monitor for ever."""
    maintenance = """
maintenance:
  - name: nightly
    matchers: ["region=North"]
    daily: [["02:00", "04:00"]]
  - name: bj_refit
    matchers: ["region=North"]
    windows: [{start: 2026-11-16T02:00:00, end: 2026-11-16T06:00:00}]
"""
    ws = shop(effects=TWO_STORES, extra=MONITOR + maintenance)
    run(ws, "2026-11-17")
    assert len(incidents(ws)) == 2
    assert {a.status for a in alerts(ws)} == {"firing"}


def test_a_nightly_window_mutes_the_hours_inside_it(shop):
    """An hourly monitor: the hour 02:00-03:00 lies inside the nightly window and is muted; 04:00-05:00 is not."""
    maintenance = """
maintenance:
  - name: nightly
    matchers: ["store=SH-1"]
    daily: [["02:00", "04:00"]]
    reason: till software update
"""
    hourly = monitor_yaml(grain="hour", slicing={"dimensions": ["store"], "total": False}, schedule={"every": "1h"})
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "SH-1"})],
              extra=hourly + maintenance)  # fmt: skip
    at = morning("2026-11-16", 3)  # judges 02:00-03:00
    assert run_monitor(ws, "shop_sales", at=at, now=at).status == "ok"
    (alert,) = alerts(ws)
    assert (alert.status, alert.muted_by, alert.first_seen) == (
        "muted", "maintenance nightly: till software update", datetime(2026, 11, 16, 2)
    )  # fmt: skip
    assert incidents(ws) == []
    at = morning("2026-11-16", 5)  # catches up 03:00-04:00 (muted) and 04:00-05:00: the newest bucket decides
    assert run_monitor(ws, "shop_sales", at=at, now=at).status == "ok"
    (inc,) = incidents(ws)
    assert inc.slices == ["store=SH-1"] and alerts(ws)[0].status == "firing"


# ------------------------------------------------------------------ inhibition by data quality


def test_missing_data_raises_one_data_quality_incident_and_no_metric_incident(shop):
    """North's rows for 11-16 never arrive: the data owner hears of it once; nobody gets a sales-drop alert."""
    ws = shop(missing=[(date(2026, 11, 16), {"region": "North"})], extra=MONITOR)
    r = run(ws, "2026-11-17")
    assert r.details["data_quality"] == ["sales:completeness:region=North"]
    # North's own series have no value that day; the total dropped by North's share, and that is held back
    (total,) = [a for a in alerts(ws) if a.kind == "metric"]
    assert total.slice == "*" and total.status == "muted" and total.incident_id is None
    assert total.muted_by.startswith("inhibited: data quality (completeness)")
    for day in ("2026-11-18", "2026-11-19"):
        run(ws, day)
    (inc,) = incidents(ws)
    assert inc.kind == "data_quality" and inc.assignee == SOURCE_OWNER
    assert inc.slices == ["region=North"] and inc.labels["check"] == "completeness"
    assert "region=North" in inc.summary["explanation_en"]
    assert [a.incident_id for a in alerts(ws) if a.kind == "metric"] == [None]
    (dq,) = [a for a in alerts(ws) if a.kind == "data_quality"]
    assert dq.count == 3 and dq.incident_id == inc.id  # repeats absorbed: one alert, one incident
    assert (dq.first_seen, dq.last_seen) == (datetime(2026, 11, 17, 9), datetime(2026, 11, 19, 9))  # run clock


def test_an_unreachable_source_fails_the_run_and_tells_the_data_owner_once(shop):
    ws = shop(extra=MONITOR)
    (ws.home / "data" / "sales.parquet").unlink()
    for day in ("2026-11-17", "2026-11-18", "2026-11-19"):
        at = morning(day)
        r = run_monitor(ws, "shop_sales", at=at, now=at)
        assert r.status == "failed" and "sales.parquet" in r.error
    (inc,) = incidents(ws)
    assert inc.kind == "data_quality" and inc.assignee == SOURCE_OWNER and inc.labels["check"] == "source"
    (dq,) = alerts(ws)
    assert dq.count == 3
    # titled in the workspace's language, with both kept for the other language's pages
    assert inc.title == inc.summary["title_zh"] and inc.title.startswith("数据源故障：")
    assert inc.summary["title_en"].startswith("Source down: ")


# ------------------------------------------------------------------ severity

SEVERITY_SHOP = [
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.3, {"store": "BJ-2"}),  # -70 %
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.7, {"store": "SH-1"}),  # -30 %
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.88, {"store": "SH-2"}),  # -12 %
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.93, {"store": "BJ-1"}),  # -7 %
]


def severity_monitor(**overrides) -> str:
    fields = {
        "detector": {"detector": "change", "offset": "last_week", "max_pct": 0.05, "direction": "down"},
        "slicing": {"dimensions": ["store"], "total": False},
        "group": "none",
    }
    return monitor_yaml(**(fields | overrides))


def severities(ws) -> dict[str, str]:
    return {i.slices[0].removeprefix("store="): i.severity for i in incidents(ws)}


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        ("core", {"BJ-2": "P1", "SH-1": "P1", "SH-2": "P2", "BJ-1": "P3"}),  # P1 from 25 %, P2 from 10 %
        ("important", {"BJ-2": "P1", "SH-1": "P2", "SH-2": "P3", "BJ-1": "P3"}),  # 40 % / 15 %
        ("normal", {"BJ-2": "P2", "SH-1": "P3", "SH-2": "P3", "BJ-1": "P3"}),  # never P1 / 60 %
    ],
)
def test_severity_from_deviation_and_tier(shop, tier, expected):
    from loop_helpers import SHOP_DEFS

    ws = shop(effects=SEVERITY_SHOP, extra=severity_monitor())
    apply_yaml(ws, SHOP_DEFS.replace("tier: core", f"tier: {tier}"))
    run(ws, "2026-11-17")
    assert severities(ws) == expected
    colours = {"P1": "red", "P2": "orange", "P3": "yellow"}
    from metricloop.incidents.views import incident_dict

    assert {incident_dict(i)["colour"] for i in incidents(ws)} == {colours[p] for p in expected.values()}


def test_severity_rules_override_the_default(shop):
    rules = [
        {"matchers": ["store=BJ-1"], "severity": "P1"},
        {"matchers": ["store=~SH-.*"], "min_deviation_pct": 20, "severity": "P2"},
        {"matchers": [], "min_impact": 100, "severity": "P3"},
    ]
    ws = shop(effects=SEVERITY_SHOP, extra=severity_monitor(severity=rules))
    run(ws, "2026-11-17")
    # BJ-1 by name; SH-1 (-30 %) by the deviation rule; SH-2 (-12 %, 96 CNY below) by no rule: default P2;
    # BJ-2 (-70 %, 420 CNY below) by the impact rule
    assert severities(ws) == {"BJ-2": "P3", "SH-1": "P2", "SH-2": "P2", "BJ-1": "P1"}
    assert {a.slice.removeprefix("store="): a.labels["severity"] for a in alerts(ws)} == severities(ws)


def test_a_region_losing_a_large_share_of_the_business_is_raised(shop):
    """East (5/9 of the shop) 20 % down: by its deviation a P2 (core: P2 from 10 %), but 11 % of the whole shop's
    sales are at stake (core: P1 from 10 %). Its stores, 6.7 % and 4.4 % of the whole, stay P2."""
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.8, {"region": "East"})],
              extra=monitor_yaml(detector={"detector": "change", "offset": "last_week", "max_pct": 0.05,
                                           "direction": "down"}))  # fmt: skip
    run(ws, "2026-11-17")
    by_slice = {a.slice: a.severity for a in alerts(ws)}
    assert by_slice == {"*": "P1", "region=East": "P1", "region=East,store=SH-1": "P2", "region=East,store=SH-2": "P2"}
    (inc,) = incidents(ws)
    assert inc.severity == "P1" and inc.summary["severity_slice"] == "*"
    assert inc.summary["severity_reason_en"] == (
        "P1: 400 CNY at stake, 11% of the total (core metric: P1 from 10%, P2 from 3% of the total); 11% below expected"
    )
    assert inc.summary["severity_reason_zh"].startswith("P1：涉及 400 CNY，占总量 11%")
    assert inc.summary["impact"] == {"by": "share", "amount": pytest.approx(400, rel=1e-4),
                                     "share": pytest.approx(1 / 9, rel=1e-4), "whole": pytest.approx(3600)}  # fmt: skip
    assert [m["severity"] for m in inc.summary["members"]] == ["P1", "P1", "P2", "P2"]


def ticket_metric() -> str:
    """The shop's sales metric as an average ticket: the same rows, not a share of anything."""
    import yaml
    from loop_helpers import SHOP_DEFS

    (sales,) = yaml.safe_load(SHOP_DEFS)["metrics"]
    ticket = sales | {
        "name": "ticket",
        "title": {"zh": "客单价", "en": "Ticket"},
        "measure": {"agg": "avg", "column": "amount"},
    }
    return yaml.safe_dump({"metrics": [ticket]}, allow_unicode=True)


def test_a_big_drop_on_a_tiny_store_is_lowered_but_not_for_an_average(shop):
    """BJ-2 sells 12 CNY a day (0.4 % of the shop) and loses 70 %: P1 by its deviation, one level milder because
    0.3 % of the shop's sales are at stake. Its average ticket, which is no share of anything, stays P1."""
    tiny = Effect(date(2026, 8, 3), date(2026, 11, 20), 0.02, {"store": "BJ-2"})
    ws = shop(effects=[tiny, *SEVERITY_SHOP[:2]], extra=severity_monitor())
    apply_yaml(ws, ticket_metric() + severity_monitor(name="shop_ticket", metric="ticket"))
    run(ws, "2026-11-17")
    run(ws, "2026-11-17", monitor="shop_ticket")
    sales = {i.slices[0].removeprefix("store="): i for i in incidents(ws, monitor="shop_sales")}
    assert {k: i.severity for k, i in sales.items()} == {"BJ-2": "P2", "SH-1": "P1"}
    reason = sales["BJ-2"].summary["severity_reason_en"]
    assert reason.startswith("P2: 70% below expected would be P1 (core metric), but only 8.4 CNY at stake, 0.28%")
    assert reason.endswith("(under 1%): one level milder")
    (alert,) = [a for a in alerts(ws) if a.monitor == "shop_sales" and a.slice == "store=BJ-2"]
    assert alert.summary_en.splitlines()[1] == reason and alert.summary_zh.splitlines()[1].endswith("降一级")
    tickets = {i.slices[0].removeprefix("store="): i.severity for i in incidents(ws, monitor="shop_ticket")}
    assert tickets == {"BJ-2": "P1", "SH-1": "P1"}


def test_amounts_on_the_monitor_raise_the_severity(shop):
    ws = shop(effects=SEVERITY_SHOP, extra=severity_monitor(impact={"P1": 300, "P2": 60}))
    run(ws, "2026-11-17")
    # BJ-1 (-7 %, 70 CNY below, 1.9 % of the shop) is raised by the amount; the rest are as by default
    assert severities(ws) == {"BJ-2": "P1", "SH-1": "P1", "SH-2": "P2", "BJ-1": "P2"}
    (bj1,) = [i for i in incidents(ws) if i.slices == ["store=BJ-1"]]
    assert bj1.summary["severity_reason_en"].startswith(
        "P2: 70 CNY at stake, 1.9% of the total (this monitor: P1 from 300 CNY, P2 from 60 CNY)"
    )


# ------------------------------------------------------------------ auto-resolve


def test_auto_resolve_after_n_normal_points_is_on_the_timeline(shop):
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.6, {"store": "SH-1"})],
              extra=monitor_yaml(auto_resolve_after=2))  # fmt: skip
    run(ws, "2026-11-17")
    run(ws, "2026-11-18")  # 11-17 normal: 1 point
    (inc,) = incidents(ws)
    assert inc.state == "triggered"
    run(ws, "2026-11-19")  # 11-18 normal: 2 points
    (inc,) = incidents(ws)
    assert inc.state == "resolved"
    last = timeline(ws, inc.id)[-1]
    assert last.kind == "auto_resolved" and last.actor == "metricloop"
    assert last.message == "auto-resolved: back to normal for 2 points"
    assert {a.status for a in alerts(ws)} == {"resolved"}


def test_auto_resolve_zero_never_resolves(shop):
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.6, {"store": "SH-1"})],
              extra=monitor_yaml(auto_resolve_after=0))  # fmt: skip
    for day in ("2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"):
        run(ws, day)
    (inc,) = incidents(ws)
    assert inc.state == "triggered"


def test_a_resolved_incident_is_not_reused_when_the_series_fires_again(shop):
    ws = shop(effects=[Effect(date(2026, 11, 10), date(2026, 11, 10), 0.6, {"store": "SH-1"}),
                       Effect(date(2026, 11, 18), date(2026, 11, 18), 0.6, {"store": "SH-1"})],
              extra=MONITOR)  # fmt: skip
    for day in ("2026-11-11", "2026-11-12", "2026-11-13", "2026-11-19"):
        run(ws, day)
    first, second = incidents(ws)
    assert first.state == "resolved" and second.state == "triggered"
    assert first.slices == second.slices == ["region=East,store=SH-1"]


def test_anomaly_rows_are_unique_per_series_and_time(shop):
    ws = shop(effects=[NORTH_DOWN], extra=MONITOR)
    run(ws, "2026-11-17")
    run(ws, "2026-11-17", trigger="manual")
    with ws.db.session() as s:
        rows = list(s.scalars(select(Anomaly)))
    assert len(rows) == 4 and all(a.alert_id is not None for a in rows)
    assert {a.explanation_zh != "" and a.explanation_en != "" for a in rows} == {True}


def test_auto_resolve_counts_points_not_runs(shop):
    """Running the same bucket again (a manual run) is not a second normal point; a catch-up run of two normal
    buckets is two."""
    drop = Effect(date(2026, 11, 16), date(2026, 11, 16), 0.6, {"store": "SH-1"})
    ws = shop(effects=[drop], extra=monitor_yaml(auto_resolve_after=2))
    run(ws, "2026-11-17")
    run(ws, "2026-11-18")  # 11-17 normal: 1 point
    run(ws, "2026-11-18", trigger="manual")  # the same point again
    assert incidents(ws)[0].state == "triggered"
    (alert,) = alerts(ws)
    assert alert.normal_streak == 1

    ws2 = shop(effects=[drop], extra=monitor_yaml(name="catch_up", auto_resolve_after=2))
    from metricloop.monitors.service import run_due

    run_due(ws2, now=morning("2026-11-17", 9, 1), only="catch_up")
    (caught,) = run_due(ws2, now=morning("2026-11-19", 9, 1), only="catch_up")  # judges 11-17 and 11-18
    assert caught.trigger == "catchup"
    (inc,) = [i for i in incidents(ws2) if i.monitor == "catch_up"]
    assert inc.state == "resolved"


def test_an_open_incident_that_grows_worse_takes_the_worse_severity_once(shop):
    from metricloop.incidents import service

    effects = [
        Effect(date(2026, 11, 16), date(2026, 11, 16), 0.88, {"store": "SH-2"}),  # -12 %: P2
        Effect(date(2026, 11, 17), date(2026, 11, 17), 0.3, {"store": "BJ-2"}),  # -70 %: P1, the next day
    ]
    ws = shop(effects=effects, extra=severity_monitor(group="monitor") + HOOK)
    run(ws, "2026-11-17")
    (inc,) = incidents(ws)
    assert inc.severity == "P2"
    run(ws, "2026-11-18")
    (inc,) = incidents(ws)
    assert inc.severity == "P1" and inc.slices == ["store=SH-2", "store=BJ-2"]
    raised = [e for e in timeline(ws, inc.id) if e.kind == "severity_raised"]
    assert [(e.data["before"], e.data["after"]) for e in raised] == [("P2", "P1")]
    assert raised[0].message.startswith("P2 → P1: store=BJ-2: 70% below expected (core metric: P1 from 25%")
    assert [n.event for n in outbox(ws, incident_id=inc.id)] == ["created", "severity_raised"]  # told it is worse
    assert inc.summary["severity_slice"] == "store=BJ-2"  # the reason now is the slice that made it worse
    assert inc.summary["severity_reason_en"].startswith("P1: 70% below expected (core metric: P1 from 25%")
    opened = morning("2026-11-17")
    assert aware(inc.ack_due_at) == utc(opened + timedelta(minutes=15))  # P1's SLA from when it opened
    fired = service.process_timers(ws, now=morning("2026-11-18", 10))
    assert fired["sla_breached"] == 2  # once each, though the P2 and the P1 timers were all due
    assert [e.data["sla"] for e in timeline(ws, inc.id) if e.kind == "sla_breached"] == ["ack", "resolve"]


def test_a_rise_is_told_at_once_and_a_same_severity_repeat_waits_for_the_interval(shop):
    effects = [
        Effect(date(2026, 11, 16), date(2026, 11, 16), 0.88, {"store": "SH-2"}),  # -12 %: P2
        Effect(date(2026, 11, 17), date(2026, 11, 19), 0.3, {"store": "BJ-2"}),  # -70 %: P1 for three days
    ]
    ws = shop(effects=effects, extra=severity_monitor(group="monitor", repeat_interval="2d") + HOOK)
    run(ws, "2026-11-17")  # P2 opens
    run(ws, "2026-11-18")  # P1 a day later: within the 2 d interval, yet told at once
    (inc,) = incidents(ws)
    sent = outbox(ws, incident_id=inc.id)
    assert [(n.event, n.recipient) for n in sent] == [("created", "hook"), ("severity_raised", "hook")]
    assert sent[1].subject.startswith("[P1 红] 严重程度升级")
    # why, and which slice did it: the incident is headed by store=SH-2, its P1 came from store=BJ-2
    assert "定为 P1 的原因：store=BJ-2：比预期低 70%（核心指标：偏离 25% 起为 P1" in sent[1].body
    run(ws, "2026-11-19")  # still P1, a day after it was told: nothing
    assert [n.event for n in outbox(ws, incident_id=inc.id)] == ["created", "severity_raised"]
    run(ws, "2026-11-20")  # still P1, 2 d after it was told: the reminder
    assert [n.event for n in outbox(ws, incident_id=inc.id)] == ["created", "severity_raised", "repeat"]
    kinds = [e.kind for e in timeline(ws, inc.id)]
    assert kinds.count("severity_raised") == 1 and kinds.count("absorbed") == 3


P1_ROUTE = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
  - {name: pager, type: webhook, url: "http://127.0.0.1:9/pager"}
routes:
  - {name: p1_pager, order: 10, matchers: ["severity=P1"], assignee: duty@shop.test, channels: [pager]}
  - {name: all, order: 20, matchers: ["monitor=shop_sales"], channels: [hook]}
"""


def test_a_raised_incident_also_goes_where_the_new_severity_routes(shop):
    """A route that matches severity=P1 only did not match the P2 incident; once the incident is P1 its channel
    hears it and keeps hearing it, and its assignee is told. The owner stays."""
    effects = [
        Effect(date(2026, 11, 16), date(2026, 11, 16), 0.88, {"store": "SH-2"}),  # -12 %: P2
        Effect(date(2026, 11, 17), date(2026, 11, 17), 0.3, {"store": "BJ-2"}),  # -70 %: P1
    ]
    ws = shop(effects=effects, extra=severity_monitor(group="monitor") + P1_ROUTE)
    run(ws, "2026-11-17")
    (inc,) = incidents(ws)
    assert (inc.route, inc.channels) == ("all", ["hook"])
    owner = inc.assignee
    run(ws, "2026-11-18")
    (inc,) = incidents(ws)
    assert inc.severity == "P1" and inc.route == "all,p1_pager" and inc.channels == ["hook", "pager"]
    assert inc.assignee == owner
    raised = [n for n in outbox(ws, incident_id=inc.id) if n.event == "severity_raised"]
    assert sorted(n.channel for n in raised) == ["hook", "pager"]
    (event,) = [e for e in timeline(ws, inc.id) if e.kind == "severity_raised"]
    assert event.message.endswith("; now also routed by p1_pager")
    told = {"routes": ["p1_pager"], "channels": ["pager"], "told": "duty@shop.test"}
    assert {k: event.data[k] for k in told} == told
