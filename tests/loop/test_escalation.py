"""Escalation, acknowledgement, SLA timers and KPIs, driven by the clock we pass in (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, timedelta

import pytest
from loop_helpers import MONITOR, Effect, aware, incidents, morning, outbox, timeline, utc
from sqlalchemy import select

from metricloop.errors import MetricloopError
from metricloop.incidents import service
from metricloop.incidents.models import Timer
from metricloop.monitors.service import run_monitor
from metricloop.settings import Settings
from metricloop.workspace import Workspace

DROP = Effect(date(2026, 11, 16), date(2026, 11, 16), 0.2, {"region": "North"})
OPENED = morning("2026-11-17")  # the run that judges 11-16 opens the incident

ROUTING = """
channels:
  - {name: mail, type: email, host: 127.0.0.1, port: 9, language: en}
escalations:
  - name: ops
    levels:
      - {after: 0m, notify: [assignee]}
      - {after: 30m, notify: [lead@shop.test]}
      - {after: 2h, notify: [head@shop.test]}
    sla:
      P1: {ack: 15m, resolve: 4h}
routes:
  - name: stores
    matchers: ["monitor=shop_sales"]
    assignee: owner@shop.test
    team: store ops
    channels: [mail]
    escalation: ops
"""


def open_one(shop):
    ws = shop(effects=[DROP], extra=MONITOR + ROUTING)
    run = run_monitor(ws, "shop_sales", at=OPENED, now=OPENED)
    assert run.status == "ok", run.error
    (inc,) = incidents(ws)
    return ws, inc


def escalation_rows(ws, inc_id):
    return [n for n in outbox(ws, incident_id=inc_id) if n.event == "escalated"]


def test_unacknowledged_incident_escalates_level_by_level(shop):
    ws, inc = open_one(shop)
    assert inc.severity == "P1" and inc.escalation_policy == "ops" and inc.assignee == "owner@shop.test"
    assert [(n.event, n.recipient) for n in outbox(ws, incident_id=inc.id)] == [("created", "owner@shop.test")]

    assert service.process_timers(ws, now=OPENED + timedelta(minutes=29))["escalated"] == 0
    assert escalation_rows(ws, inc.id) == []

    fired = service.process_timers(ws, now=OPENED + timedelta(minutes=31))
    assert fired["escalated"] == 1
    assert [n.recipient for n in escalation_rows(ws, inc.id)] == ["lead@shop.test"]
    escalated = [e for e in timeline(ws, inc.id) if e.kind == "escalated"]
    assert len(escalated) == 1 and escalated[0].actor == "metricloop" and "lead@shop.test" in escalated[0].message
    assert aware(escalated[0].at) == utc(OPENED + timedelta(minutes=31))

    # firing the same moment again does nothing: the timer is done
    assert service.process_timers(ws, now=OPENED + timedelta(minutes=31))["escalated"] == 0
    service.process_timers(ws, now=OPENED + timedelta(hours=2, minutes=1))
    assert [n.recipient for n in escalation_rows(ws, inc.id)] == ["lead@shop.test", "head@shop.test"]
    assert incidents(ws)[0].escalation_level == 2


def test_acknowledge_stops_escalation_at_once(shop):
    ws, inc = open_one(shop)
    service.process_timers(ws, now=OPENED + timedelta(minutes=31))
    assert len(escalation_rows(ws, inc.id)) == 1
    with ws.db.session() as s:
        service.acknowledge(
            s, ws, ws.catalog(), incident_id=inc.id, actor="owner@shop.test", now=OPENED + timedelta(minutes=40)
        )
    with ws.db.session() as s:
        pending = s.scalars(select(Timer).where(Timer.incident_id == inc.id, Timer.kind == "escalate")).all()
        assert {t.status for t in pending} == {"done", "cancelled"}
    for later in (timedelta(hours=2, minutes=1), timedelta(hours=6), timedelta(days=3)):
        fired = service.process_timers(ws, now=OPENED + later)
        assert fired["escalated"] == 0
    assert len(escalation_rows(ws, inc.id)) == 1  # only the one before the ack
    kinds = [e.kind for e in timeline(ws, inc.id)]
    assert kinds.count("escalated") == 1 and "acknowledged" in kinds
    assert kinds.index("acknowledged") > kinds.index("escalated")


def test_timers_are_rows_that_survive_a_restart(shop):
    ws, inc = open_one(shop)
    home, db = ws.home, ws.settings.db
    ws.close()  # the process stops; a new one starts later
    again = Workspace(home, Settings(home=home, db=db, user="tester"))
    try:
        with again.db.session() as s:
            due = sorted(
                aware(t.due_at) for t in s.scalars(select(Timer).where(Timer.incident_id == inc.id))
                if t.kind == "escalate"
            )  # fmt: skip
        assert due == [utc(OPENED + timedelta(minutes=30)), utc(OPENED + timedelta(hours=2))]
        assert service.process_timers(again, now=OPENED + timedelta(minutes=31))["escalated"] == 1
        assert [n.recipient for n in escalation_rows(again, inc.id)] == ["lead@shop.test"]
    finally:
        again.close()


def test_repeat_runs_through_the_levels_again(shop):
    ws = shop(effects=[DROP], extra=MONITOR + ROUTING.replace("    sla:", "    repeat: 1\n    sla:"))
    run_monitor(ws, "shop_sales", at=OPENED, now=OPENED)
    (inc,) = incidents(ws)
    # round 0: 30m, 2h; round 1 starts one step (30m) after the last level: 0m, 30m, 2h after 2h30m
    for minutes in (31, 121, 151, 181, 271):
        service.process_timers(ws, now=OPENED + timedelta(minutes=minutes))
    assert [n.recipient for n in escalation_rows(ws, inc.id)] == [
        "lead@shop.test",
        "head@shop.test",
        "owner@shop.test",
        "lead@shop.test",
        "head@shop.test",
    ]


def test_sla_breaches_are_flagged_by_timers(shop):
    ws, inc = open_one(shop)
    assert aware(inc.ack_due_at) == utc(OPENED + timedelta(minutes=15))
    assert aware(inc.resolve_due_at) == utc(OPENED + timedelta(hours=4))
    assert service.process_timers(ws, now=OPENED + timedelta(minutes=14))["sla_breached"] == 0
    assert service.process_timers(ws, now=OPENED + timedelta(minutes=16))["sla_breached"] == 1
    (inc,) = incidents(ws)
    assert inc.ack_breached and not inc.resolve_breached
    with ws.db.session() as s:
        service.acknowledge(
            s, ws, ws.catalog(), incident_id=inc.id, actor="owner@shop.test", now=OPENED + timedelta(hours=1)
        )
    assert service.process_timers(ws, now=OPENED + timedelta(hours=4, minutes=1))["sla_breached"] == 1
    (inc,) = incidents(ws)
    assert inc.resolve_breached
    breaches = [e for e in timeline(ws, inc.id) if e.kind == "sla_breached"]
    assert [e.data["sla"] for e in breaches] == ["ack", "resolve"]


def test_acknowledged_in_time_is_no_breach(shop):
    ws, inc = open_one(shop)
    with ws.db.session() as s:
        service.acknowledge(
            s, ws, ws.catalog(), incident_id=inc.id, actor="a@shop.test", now=OPENED + timedelta(minutes=5)
        )
        service.resolve(
            s,
            ws,
            ws.catalog(),
            incident_id=inc.id,
            actor="a@shop.test",
            root_cause="x",
            now=OPENED + timedelta(hours=1),
        )
    assert service.process_timers(ws, now=OPENED + timedelta(days=2))["sla_breached"] == 0
    (inc,) = incidents(ws)
    assert not inc.ack_breached and not inc.resolve_breached


def test_a_late_ack_or_an_unacknowledged_resolve_is_a_breach_before_any_timer_fires(shop):
    """The breach is the late act itself: the SLA timer may not have run yet (it is cancelled by the ack)."""
    ws, late = open_one(shop)
    with ws.db.session() as s:
        service.acknowledge(s, ws, ws.catalog(), incident_id=late.id, actor="a@shop.test",
                            now=OPENED + timedelta(minutes=20))  # fmt: skip
        service.resolve(s, ws, ws.catalog(), incident_id=late.id, actor="a@shop.test", root_cause="x",
                        now=OPENED + timedelta(hours=1))  # fmt: skip
    (inc,) = incidents(ws)
    assert inc.ack_breached and not inc.resolve_breached
    with ws.db.session() as s:
        service.reopen(s, ws, ws.catalog(), incident_id=inc.id, actor="a@shop.test", reason="again")
    with ws.db.session() as s:
        inc = s.get(type(inc), inc.id)
        inc.ack_breached, inc.acknowledged_at = False, None  # a fresh episode, never acknowledged
        due = inc.ack_due_at
    with ws.db.session() as s:
        service.resolve(s, ws, ws.catalog(), incident_id=inc.id, actor="a@shop.test", root_cause="x",
                        now=aware(due) + timedelta(minutes=1))  # fmt: skip
    (inc,) = incidents(ws)
    assert inc.ack_breached


def test_mtta_and_mttr(shop):
    ws = shop(
        effects=[DROP, Effect(date(2026, 11, 18), date(2026, 11, 18), 0.6, {"store": "SH-1"})],
        extra=MONITOR + ROUTING,
    )
    run_monitor(ws, "shop_sales", at=OPENED, now=OPENED)
    (first,) = incidents(ws)
    with ws.db.session() as s:
        c = ws.catalog()
        service.acknowledge(s, ws, c, incident_id=first.id, actor="a@shop.test", now=OPENED + timedelta(minutes=10))
        service.resolve(
            s, ws, c, incident_id=first.id, actor="a@shop.test", root_cause="x", now=OPENED + timedelta(hours=2)
        )
    second = morning("2026-11-19")
    run_monitor(ws, "shop_sales", at=second, now=second)
    _, other = incidents(ws)
    assert other.slices == ["region=East,store=SH-1"]
    with ws.db.session() as s:
        service.acknowledge(s, ws, c, incident_id=other.id, actor="a@shop.test", now=second + timedelta(minutes=30))
    with ws.db.session() as s:
        k = service.kpis(s)
    assert k["incidents"] == 2
    assert k["mtta_seconds"] == pytest.approx((10 + 30) / 2 * 60)
    assert k["mttr_seconds"] == pytest.approx(2 * 3600)  # only the resolved one
    assert k["by_state"] == {"resolved": 1, "acknowledged": 1}


def test_times_given_in_any_zone_mean_the_same_moment(shop):
    """SQLite keeps only the wall-clock time it is given; the same moment in +08:00 and in UTC must act alike."""
    ws, inc = open_one(shop)  # opened with now=09:00+08:00
    assert aware(inc.created_at) == utc(OPENED)
    assert service.process_timers(ws, now=utc(OPENED) + timedelta(minutes=29))["escalated"] == 0
    assert service.process_timers(ws, now=(OPENED + timedelta(minutes=31)).astimezone(UTC))["escalated"] == 1
    with ws.db.session() as s:
        service.acknowledge(
            s, ws, ws.catalog(), incident_id=inc.id, actor="a@shop.test", now=OPENED + timedelta(minutes=45)
        )
    with ws.db.session() as s:
        assert service.kpis(s)["mtta_seconds"] == pytest.approx(45 * 60)
        assert service.kpis(s, since=OPENED)["incidents"] == 1
        assert service.kpis(s, since=OPENED + timedelta(seconds=1))["incidents"] == 0


def test_acknowledging_twice_or_after_resolve_is_refused(shop):
    ws, inc = open_one(shop)
    with ws.db.session() as s:
        service.acknowledge(s, ws, ws.catalog(), incident_id=inc.id, actor="a@shop.test")
    with pytest.raises(MetricloopError, match="already acknowledged") as e, ws.db.session() as s:
        service.acknowledge(s, ws, ws.catalog(), incident_id=inc.id, actor="b@shop.test")
    assert e.value.status_code == 409
    (after,) = incidents(ws)
    assert after.state == "acknowledged" and aware(after.acknowledged_at) is not None


def test_a_level_can_name_the_owner_and_its_own_channels(shop):
    from loop_helpers import METRIC_OWNER

    policy = ROUTING.replace(
        "      - {after: 2h, notify: [head@shop.test]}",
        "      - {after: 2h, notify: [owner], channels: [boss_mail]}",
    ).replace(
        "channels:\n",
        "channels:\n  - {name: boss_mail, type: email, host: 127.0.0.1, port: 9, to: [cc@shop.test]}\n",
        1,
    )
    ws = shop(effects=[DROP], extra=MONITOR + policy)
    run_monitor(ws, "shop_sales", at=OPENED, now=OPENED)
    (inc,) = incidents(ws)
    service.process_timers(ws, now=OPENED + timedelta(hours=2, minutes=1))
    last = [e for e in timeline(ws, inc.id) if e.kind == "escalated"][-1]
    assert last.data["people"] == [METRIC_OWNER]
    rows = [(n.channel, n.recipient) for n in escalation_rows(ws, inc.id) if n.channel == "boss_mail"]
    assert rows == [("boss_mail", METRIC_OWNER), ("boss_mail", "cc@shop.test")]


def test_a_reopened_incident_escalates_and_notifies_again(shop):
    ws, inc = open_one(shop)
    service.process_timers(ws, now=OPENED + timedelta(minutes=31))
    c = ws.catalog()
    with ws.db.session() as s:
        service.resolve(
            s, ws, c, incident_id=inc.id, actor="a@shop.test", root_cause="x", now=OPENED + timedelta(hours=1)
        )
    later = OPENED + timedelta(days=1)
    with ws.db.session() as s:
        service.reopen(s, ws, c, incident_id=inc.id, actor="a@shop.test", reason="again", now=later)
    assert service.process_timers(ws, now=later + timedelta(minutes=31))["escalated"] == 1
    with ws.db.session() as s:
        service.resolve(
            s, ws, c, incident_id=inc.id, actor="a@shop.test", root_cause="y", now=later + timedelta(hours=1)
        )
    events = [(n.event, n.recipient) for n in outbox(ws, incident_id=inc.id)]
    assert events == [
        ("created", "owner@shop.test"),
        ("escalated", "lead@shop.test"),
        ("resolved", "owner@shop.test"),
        ("reopened", "owner@shop.test"),
        ("escalated", "lead@shop.test"),  # the same level again, after the reopen: a new message
        ("resolved", "owner@shop.test"),
    ]


def test_an_escalation_queued_but_not_yet_sent_is_cancelled_by_the_ack(shop):
    ws, inc = open_one(shop)
    service.process_timers(ws, now=OPENED + timedelta(minutes=31))
    (queued,) = escalation_rows(ws, inc.id)
    assert queued.status == "pending"  # the dispatcher has not come round yet
    with ws.db.session() as s:
        service.acknowledge(
            s, ws, ws.catalog(), incident_id=inc.id, actor="a@shop.test", now=OPENED + timedelta(minutes=32)
        )
    (row,) = escalation_rows(ws, inc.id)
    assert row.status == "cancelled"  # nobody is paged after someone said "I'm on it"
    assert [n.status for n in outbox(ws, incident_id=inc.id) if n.event == "created"] == ["pending"]


def test_concurrent_acknowledgements_one_wins_the_others_are_refused(shop):
    """Two people click "I'm on it" at the same moment, through different instances."""
    import threading

    from metricloop.incidents.service import StateError

    ws, inc = open_one(shop)
    instances = [Workspace(ws.home, Settings(home=ws.home, db=ws.settings.db)) for _ in range(4)]
    for w in instances:
        _ = w.db
    start = threading.Barrier(len(instances))
    outcomes = []

    def click(w, who):
        start.wait()
        try:
            with w.db.session() as s:
                service.acknowledge(s, w, w.catalog(), incident_id=inc.id, actor=who)
            outcomes.append("ok")
        except StateError:
            outcomes.append("409")
        except Exception as e:  # noqa: BLE001 - anything else is the failure this test looks for
            outcomes.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=click, args=(w, f"p{i}@shop.test")) for i, w in enumerate(instances)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for w in instances:
            w.close()
    assert sorted(outcomes) == ["409", "409", "409", "ok"]
    assert [e.kind for e in timeline(ws, inc.id)].count("acknowledged") == 1


def test_after_downtime_each_level_escalates_once_in_order(shop):
    """The server was down while two rounds of the policy fell due: on restart each level goes out
    once (its latest round), in level order, and the earlier rounds are marked superseded."""
    ws = shop(effects=[DROP], extra=MONITOR + ROUTING.replace("    sla:", "    repeat: 1\n    sla:"))
    run = run_monitor(ws, "shop_sales", at=OPENED, now=OPENED)
    assert run.status == "ok", run.error
    (inc,) = incidents(ws)
    fired = service.process_timers(ws, now=OPENED + timedelta(hours=6))  # both rounds are due
    assert fired["escalated"] == 3
    assert [n.recipient for n in escalation_rows(ws, inc.id)] == ["owner@shop.test", "lead@shop.test",
                                                                   "head@shop.test"]
    levels = [e.message for e in timeline(ws, inc.id) if e.kind == "escalated"]
    assert [m.split(" → ")[0] for m in levels] == [f"not acknowledged: level {i}" for i in (1, 2, 3)]
    with ws.db.session() as s:
        statuses = sorted(t.status for t in s.scalars(select(Timer).where(Timer.kind == "escalate")))
    assert statuses.count("superseded") == 2 and statuses.count("done") == 3
