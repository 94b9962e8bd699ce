"""Routing: first match and `continue`, matchers, assignee lookup in master data, on-call rotations, and
`metricloop routes test`."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta

import pytest
from loop_helpers import METRIC_OWNER, MONITOR, STORES, Effect, incidents, morning, outbox, timeline
from typer.testing import CliRunner

from metricloop.alerting.matchers import parse_matcher
from metricloop.incidents import service
from metricloop.monitors.service import run_monitor
from metricloop.routing.schemas import RotationSpec
from metricloop.routing.service import on_call, resolve_route

ROUTES = """
channels:
  - {name: east_chat, type: webhook, url: "http://127.0.0.1:9/east"}
  - {name: ops_chat, type: webhook, url: "http://127.0.0.1:9/ops"}
  - {name: audit, type: webhook, url: "http://127.0.0.1:9/audit"}
  - {name: never, type: webhook, url: "http://127.0.0.1:9/never"}
rotations:
  - name: ops_rota
    members: [ann@shop.test, bob@shop.test, cat@shop.test]
    period: daily
    start: 2026-11-16T09:00:00
escalations:
  - {name: east_policy, levels: [{after: 0m, notify: [assignee]}]}
  - {name: ops_policy, levels: [{after: 0m, notify: [assignee]}, {after: 30m, notify: ["oncall:ops_rota"]}]}
routes:
  - name: east_stores
    order: 10
    matchers: ["region=East", "store=~SH-.*"]
    assignee_lookup: {source: shop, table: stores, key: store, column: manager_email}
    team: east
    channels: [east_chat]
    escalation: east_policy
    continue: true
  - name: audit_p1
    order: 15
    matchers: ["severity=P1", "region=East"]
    assignee: auditor@shop.test
    channels: [audit]
    continue: true
  - name: ops
    order: 20
    matchers: ["monitor=shop_sales", "store!~BJ-2"]
    rotation: ops_rota
    team: operations
    channels: [ops_chat]
    escalation: ops_policy
  - name: everything_else
    order: 30
    matchers: []
    assignee: nobody@shop.test
    channels: [never]
"""
AT = datetime(2026, 11, 17, 3, 0, tzinfo=UTC)  # 11:00 in Beijing: day 1 of the rotation → bob


@pytest.fixture
def routed(shop):
    return shop(extra=MONITOR + ROUTES)


def route(ws, at=AT, **labels):
    return resolve_route(ws, ws.catalog(), labels, at=at, fallback=METRIC_OWNER)


def test_first_match_decides_and_continue_adds_channels(routed):
    d = route(routed, monitor="shop_sales", region="East", store="SH-1", severity="P1")
    assert d.routes == ["east_stores", "audit_p1", "ops"]  # ops has no `continue`: everything_else is not tried
    assert d.assignee == STORES["SH-1"][1] and d.team == "east" and d.escalation == "east_policy"
    assert d.channels == ["east_chat", "audit", "ops_chat"]
    assert "also matched (continue)" in d.reasons[1]


def test_a_route_without_continue_stops(routed):
    d = route(routed, monitor="shop_sales", region="North", store="BJ-1", severity="P2")
    assert d.routes == ["ops"]
    assert d.assignee == "bob@shop.test" and d.team == "operations" and d.escalation == "ops_policy"
    assert d.channels == ["ops_chat"]
    assert "on call in ops_rota: bob@shop.test" in d.reasons[0]


def test_negative_regex_and_catch_all(routed):
    d = route(routed, monitor="shop_sales", region="North", store="BJ-2", severity="P3")
    assert d.routes == ["everything_else"] and d.assignee == "nobody@shop.test" and d.channels == ["never"]


def test_lookup_misses_fall_back_to_the_metric_owner(routed):
    d = route(routed, monitor="shop_sales", region="East", store="SH-9", severity="P3")
    assert d.routes[0] == "east_stores" and d.assignee == METRIC_OWNER
    assert "falls back to" in d.reasons[-1]


def test_no_route_means_the_metric_owner_and_no_channels(shop):
    ws = shop(extra=MONITOR)
    d = route(ws, monitor="shop_sales", store="SH-1")
    assert d.routes == [] and d.channels == [] and d.assignee == METRIC_OWNER
    assert d.reasons == ["no route matched: assigned to the metric's owner, no channels"]


def test_lookup_values_are_literals_not_sql(routed):
    d = route(routed, monitor="shop_sales", region="East", store="SH-1' OR '1'='1", severity="P3")
    assert d.assignee == METRIC_OWNER  # no such store; nothing was spliced into the query


def test_matchers():
    labels = {"region": "East", "store": "SH-1", "severity": "P1"}
    assert parse_matcher("region=East").matches(labels)
    assert not parse_matcher("region!=East").matches(labels)
    assert parse_matcher("store=~SH-[0-9]+").matches(labels)
    assert not parse_matcher("store=~SH").matches(labels)  # anchored, like Alertmanager
    assert parse_matcher("store!~BJ-.*").matches(labels)
    assert parse_matcher("city!=Chengdu").matches(labels)  # a missing label is ""
    assert parse_matcher('region="East"').matches(labels)
    with pytest.raises(ValueError, match="invalid regular expression"):
        parse_matcher("store=~SH-(")
    with pytest.raises(ValueError, match="is not a matcher"):
        parse_matcher("store is SH-1")


def rotation(**kw) -> RotationSpec:
    return RotationSpec.model_validate({"name": "r", "members": ["ann", "bob", "cat"], **kw})


def test_daily_rotation_hands_over_at_the_start_time():
    r = rotation(period="daily", start="2026-11-16T09:00:00")  # Beijing time
    sh = lambda d, h, m=0: datetime(2026, 11, d, h, m, tzinfo=UTC) - timedelta(hours=8)  # noqa: E731
    assert on_call(r, sh(16, 8, 59)) == "cat"  # before the start: the previous turn
    assert on_call(r, sh(16, 9)) == "ann"
    assert on_call(r, sh(17, 8, 59)) == "ann"
    assert on_call(r, sh(17, 9)) == "bob"
    assert on_call(r, sh(18, 9)) == "cat"
    assert on_call(r, sh(19, 9)) == "ann"
    assert on_call(r, datetime(2026, 11, 17, 9, 30)) == "bob"  # naive: the rotation's own time


def test_weekly_rotation_with_override_and_timezone():
    r = rotation(
        period="weekly",
        start="2026-03-23T09:00:00",
        timezone="Europe/London",
        overrides=[{"member": "dan", "start": "2026-04-08T00:00:00", "end": "2026-04-09T00:00:00"}],
    )
    # London moves to summer time on 29 March; the hand-over stays at 09:00 London time
    assert on_call(r, datetime(2026, 3, 30, 7, 59, tzinfo=UTC)) == "ann"  # 08:59 BST
    assert on_call(r, datetime(2026, 3, 30, 8, 0, tzinfo=UTC)) == "bob"  # 09:00 BST
    assert on_call(r, datetime(2026, 4, 7, 23, 30, tzinfo=UTC)) == "dan"  # 00:30 BST on the 8th: override
    assert on_call(r, datetime(2026, 4, 8, 23, 30, tzinfo=UTC)) == "cat"  # the override is over
    with pytest.raises(ValueError, match="unknown timezone"):
        rotation(start="2026-03-23T09:00:00", timezone="Mars/Olympus")


def test_an_incident_is_routed_and_escalates_to_whoever_is_on_call(shop):
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "BJ-1"})], extra=MONITOR + ROUTES)
    opened = morning("2026-11-17")  # 09:00: bob's day starts
    assert run_monitor(ws, "shop_sales", at=opened, now=opened).status == "ok"
    (inc,) = incidents(ws)
    assert inc.route == "ops" and inc.assignee == "bob@shop.test" and inc.team == "operations"
    assert inc.channels == ["ops_chat"] and inc.escalation_policy == "ops_policy"
    created = timeline(ws, inc.id)[0]
    assert created.data["route"] == ["ops"] and "on call in ops_rota" in created.data["reasons"][0]
    service.process_timers(ws, now=opened + timedelta(minutes=31))
    (escalated,) = [e for e in timeline(ws, inc.id) if e.kind == "escalated"]
    assert escalated.data["people"] == ["bob@shop.test"]
    assert [n.recipient for n in outbox(ws, incident_id=inc.id) if n.event == "escalated"] == ["ops_chat"]


def test_routes_test_cli_on_the_demo(demo, monkeypatch):
    from metricloop.cli import app

    ws = demo()
    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    with (ws.home / "data" / "stores.csv").open(encoding="utf-8") as f:
        manager = next(r["manager_email"] for r in csv.DictReader(f) if r["store"] == "SH-003")
    result = CliRunner().invoke(app, ["routes", "test", "--labels", "monitor=store_sales,store=SH-003,severity=P1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["assignee:", manager, "(team", "store", "operations)"]
    assert lines[1].split() == ["channels:", "ops_webhook,", "ops_im"]
    assert lines[2].split() == ["escalation:", "store_ops"]
    assert "manager_email of store=SH-003 in stores" in result.output
    bad = CliRunner().invoke(app, ["routes", "test", "--labels", "monitor"])
    assert bad.exit_code != 0 and "'monitor' is not k=v" in bad.output
