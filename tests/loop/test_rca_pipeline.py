"""Root causes on the alert path (rca/service.py through alerting/pipeline.py): computed when an incident opens
and again when it grows worse, stored per run, on the timeline and in the messages; and an analysis that fails
never stops the incident from opening (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date

from loop_helpers import Effect, incidents, monitor_yaml, morning, outbox, timeline
from sqlalchemy import select

from metricloop.monitors.service import run_monitor
from metricloop.rca.models import RcaFinding

HOOK = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
routes:
  - {name: all, matchers: ["monitor=shop_sales"], channels: [hook]}
"""
MONITOR = monitor_yaml(
    detector={"detector": "change", "offset": "last_week", "max_pct": 0.05, "direction": "down"},
    slicing={"dimensions": ["store"], "total": False},
    group="monitor",
)


def run(ws, day: str):
    at = morning(day)
    r = run_monitor(ws, "shop_sales", at=at, now=at)
    assert r.status == "ok", r.error
    return r


def runs(ws, incident_id: int) -> dict[int, list[RcaFinding]]:
    with ws.db.session() as s:
        rows = s.scalars(select(RcaFinding).where(RcaFinding.incident_id == incident_id)
                         .order_by(RcaFinding.run, RcaFinding.kind, RcaFinding.rank)).all()
    out: dict[int, list[RcaFinding]] = {}
    for r in rows:
        out.setdefault(r.run, []).append(r)
    return out


def test_causes_when_it_opens_and_again_when_it_grows_worse(shop):
    effects = [
        Effect(date(2026, 11, 16), date(2026, 11, 16), 0.88, {"store": "SH-2"}),  # -12 %: P2
        Effect(date(2026, 11, 17), date(2026, 11, 17), 0.3, {"store": "BJ-2"}),  # -70 %: P1, the next day
    ]
    ws = shop(effects=effects, extra=MONITOR + HOOK)
    run(ws, "2026-11-17")
    (inc,) = incidents(ws)
    first = runs(ws, inc.id)
    assert list(first) == [1]
    assert [r.kind for r in first[1]].count("report") == 1
    run(ws, "2026-11-18")
    (inc,) = incidents(ws)
    assert inc.severity == "P1"
    found = runs(ws, inc.id)
    assert list(found) == [1, 2]  # the first run is kept
    report2 = next(r for r in found[2] if r.kind == "report")
    assert report2.data["why"] == "worse"
    causes2 = [r for r in found[2] if r.kind == "cause"]
    assert causes2 and causes2[0].data["dimensions"] == {"store": "BJ-2"}
    kinds = [e.kind for e in timeline(ws, inc.id)]
    assert kinds.count("rca") == 2 and kinds.index("rca") > kinds.index("created")
    raised = [n for n in outbox(ws, incident_id=inc.id) if n.event == "severity_raised"]
    assert raised and "store=BJ-2" in raised[0].body  # the message that says it is worse names the new cause


def test_an_analysis_that_fails_still_opens_the_incident_and_says_why(shop, monkeypatch):
    from metricloop.rca import report

    def broken(*args, **kwargs):
        raise RuntimeError("the cube fell over")

    monkeypatch.setattr(report, "leaf_cube", broken)
    effects = [Effect(date(2026, 11, 16), date(2026, 11, 16), 0.3, {"store": "BJ-2"})]
    ws = shop(effects=effects, extra=MONITOR + HOOK)
    r = run(ws, "2026-11-17")
    assert r.details["incidents_opened"] == 1
    (inc,) = incidents(ws)
    failed = [e for e in timeline(ws, inc.id) if e.kind == "rca_failed"]
    assert failed and "the cube fell over" in failed[0].message
    assert [n.event for n in outbox(ws, incident_id=inc.id)] == ["created"]  # the message still went out
    (row,) = runs(ws, inc.id)[1]
    assert row.label == "failed" and "the cube fell over" in row.data["error"]
