"""The knowledge bar on the demo: with the demo's past seeded (as `metricloop demo` does before its replayed week),
a repeat of a past incident type finds a past incident of that type in its top 3."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from loop_helpers import incidents, morning

from metricloop.demo.history import seed_history
from metricloop.knowledge.similar import similar_for
from metricloop.monitors.service import run_monitor

DEMO_LAST = date(2026, 11, 20)
WEEK = [date(2026, 11, 14) + timedelta(days=k) for k in range(7)]  # the replayed mornings (judge 11-13 … 11-19)


def rank_of_kind(ws, inc, category: str) -> int | None:
    with ws.db.session() as s:
        found = similar_for(s, ws.catalog(), inc)
        return next((n for n, (e, _score, _why) in enumerate(found, 1) if e.category == category), None)


@pytest.fixture(scope="module")
def replayed_week(tmp_path_factory, demo_template):
    import shutil

    from loop_helpers import BASE_URL

    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    home = tmp_path_factory.mktemp("knowledge_demo") / "demo"
    shutil.copytree(demo_template, home, ignore=shutil.ignore_patterns("data"))
    (home / "data").symlink_to(demo_template / "data", target_is_directory=True)
    ws = Workspace(home, Settings(home=home, user="tester", base_url=BASE_URL))
    ws.seeded = seed_history(ws, before=DEMO_LAST - timedelta(days=7))
    for day in WEEK:
        for monitor in ("store_sales", "fulfilment"):
            at = morning(day)
            assert run_monitor(ws, monitor, at=at, now=at).status == "ok"
    yield ws
    ws.close()


def test_the_demo_past_is_seeded_once_with_categories_causes_and_actions(replayed_week):
    ws = replayed_week
    past = [i for i in incidents(ws) if i.labels.get("history") == "demo"]
    assert ws.seeded == len(past) >= 8
    assert {i.state for i in past} == {"reviewed"}
    assert seed_history(ws, before=DEMO_LAST - timedelta(days=7)) == 0  # installing again adds none
    from metricloop.knowledge.service import list_entries

    with ws.db.session() as s:
        ids = {i.id for i in past}
        entries = [e for e in list_entries(s, limit=1000) if e.incident_id in ids]
        assert len(entries) == len(past)
        assert {e.category for e in entries} >= {"stock_out", "supplier_carrier", "outage"}
        assert all(e.cause and e.actions and e.resolved_by for e in entries)


def test_the_stockout_at_sh003_finds_a_past_stockout_in_its_top_3(replayed_week):
    ws = replayed_week
    (inc,) = [i for i in incidents(ws, monitor="store_sales") if i.slices == ["store=SH-003"]]
    rank = rank_of_kind(ws, inc, "stock_out")
    assert rank is not None and rank <= 3
    from metricloop.knowledge.similar import summary_line

    with ws.db.session() as s:
        e, _score, _why = similar_for(s, ws.catalog(), inc)[rank - 1]
        line = summary_line(ws.catalog(), e, "zh")
    assert line.startswith("上次类似：") and "断货，紧急补货（区域仓调拨）后 " in line and line.endswith("天恢复")


def test_the_zto_delay_finds_a_past_carrier_delay_in_its_top_3(replayed_week):
    ws = replayed_week
    (inc,) = [i for i in incidents(ws, monitor="fulfilment") if "carrier=ZTO,region=South" in i.slices
              and i.labels.get("history") != "demo"]
    rank = rank_of_kind(ws, inc, "supplier_carrier")
    assert rank is not None and rank <= 3
