"""Feedback's immediate effects on a real monitor run (SQLite and PostgreSQL): new_normal re-baselines a shifted
series so the next run stops alerting on the new level; expected + promotion goes into the calendar in one step."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from loop_helpers import MONITOR, Effect, morning, timeline
from sqlalchemy import select

from metricloop.alerting.models import Alert
from metricloop.feedback import flows
from metricloop.monitors.models import Anomaly
from metricloop.monitors.service import run_monitor

BJ2 = "region=North,store=BJ-2"
# BJ-2 sells 45 % less from 10 November on, and stays there: a new level, not an incident
SHIFT = Effect(date(2026, 11, 10), date(2026, 11, 20), 0.55, {"store": "BJ-2"})


CONTROL = MONITOR.replace("monitors:\n", "").replace("name: shop_sales", "name: control")


def run(ws, day: str, monitor: str = "shop_sales"):
    at = morning(day)
    r = run_monitor(ws, monitor, at=at, now=at)
    assert r.status == "ok", r.error
    return r


def bj2_anomalies(ws, *, run_ids) -> list:
    with ws.db.session() as s:
        return list(s.scalars(select(Anomaly).where(Anomaly.slice == BJ2, Anomaly.run_id.in_(run_ids))))


def give(ws, **kw):
    with ws.db.session() as s:
        got = flows.give(s, ws, ws.catalog(), actor="ann@shop.test", **kw)
        s.commit()
        return got


def test_new_normal_stops_repeat_alerts_from_the_next_run_on(shop):
    # the same rule twice on the same data: feedback goes to shop_sales, the control run shows what it changed
    shifted = shop(effects=[SHIFT], extra=MONITOR + CONTROL)
    for day in ("2026-11-11", "2026-11-12"):
        run(shifted, day), run(shifted, day, "control")
    with shifted.db.session() as s:
        alert = s.scalar(select(Alert).where(Alert.slice == BJ2))
        assert alert is not None and alert.incident_id, "the shift alerts first"
        alert_id, incident_id = alert.id, alert.incident_id
    got = give(
        shifted,
        label="new_normal",
        alert_id=alert_id,
        start=datetime(2026, 11, 10),
        via="cli",
        now=morning("2026-11-12", 10),
    )
    assert got.effects[0]["kind"] == "rebaseline" and "2026-11-10" in got.effects[0]["message_en"]
    later = ("2026-11-13", "2026-11-14", "2026-11-15", "2026-11-16")
    after = [run(shifted, d).id for d in later]
    without = [run(shifted, d, "control").id for d in later]
    assert bj2_anomalies(shifted, run_ids=without), "without feedback the old level keeps alerting"
    assert bj2_anomalies(shifted, run_ids=after) == []
    with shifted.db.session() as s:
        from metricloop.monitors.models import MonitorRun

        details = s.get(MonitorRun, after[0]).details
    assert details["rebaselined"] == {BJ2: "2026-11-10T00:00:00"}
    events = [e for e in timeline(shifted, incident_id) if e.kind == "feedback"]
    assert len(events) == 1 and events[0].actor == "ann@shop.test"
    assert "new normal" in events[0].message and events[0].data["effects"][0]["kind"] == "rebaseline"


def test_new_normal_in_the_future_is_refused(shop):
    ws = shop(extra=MONITOR)
    with ws.db.session() as s, pytest.raises(flows.FeedbackError) as err:
        flows.give(
            s,
            ws,
            ws.catalog(),
            actor="ann",
            label="new_normal",
            monitor="shop_sales",
            slice_=BJ2,
            start=datetime(2026, 11, 25),
            now=morning("2026-11-20"),
        )
    assert err.value.where == "since" and "in the future" in err.value.message


def test_expected_promotion_goes_into_the_calendar_in_one_step(shop):
    ws = shop(effects=[Effect(date(2026, 11, 11), date(2026, 11, 11), 0.4, {"store": "BJ-2"})], extra=MONITOR)
    run(ws, "2026-11-12")
    with ws.db.session() as s:
        alert = s.scalar(select(Alert).where(Alert.slice == BJ2))
    got = give(
        ws,
        label="expected",
        cause="promotion",
        alert_id=alert.id,
        add_to_calendar=True,
        event_name="Double 11",
        now=morning("2026-11-12", 10),
    )
    cal = next(e for e in got.effects if e["kind"] == "calendar_event")
    assert cal["file"] == "calendar/feedback.csv" and cal["monitor_version"] == 2
    text = (ws.home / "calendar" / "feedback.csv").read_text()
    assert "Double 11,2026-11-11,2026-11-11,store,BJ-2" in text
    spec = ws.catalog().get("monitor", "shop_sales")
    assert spec.calendar.events == ["calendar/feedback.csv"]
    from metricloop.monitors.service import build_calendar

    events = build_calendar(ws, spec).events
    assert any(e.name == "Double 11" and e.scope == {"store": "BJ-2"} for e in events)
