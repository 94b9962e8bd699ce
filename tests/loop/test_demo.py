"""End to end on the demo (scale 0.1, seed 42, ending 2026-11-20): its labelled incidents, the grouping ratio,
ownership and delivery.

The demo's incidents: SH-003 out of Fresh 11-15..18 (gmv by store about -45 %), ZTO late in South 11-17..19
(fulfilment), a complaint surge in Chengdu 10-27..28, the miniapp outage 10-29 11:00-17:00, the North visitors
feed missing on 11-20 (a data problem), and the Dairy promotion 10-23..25 (expected: must not alert).
"""

from __future__ import annotations

import csv
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from loop_helpers import (
    BASE_URL,
    apply_yaml,
    aware,
    drain,
    grouping_ratio,
    incidents,
    morning,
    outbox,
    runs,
)
from sqlalchemy import select

from loopback import verify_signature
from metricloop.monitors.models import Anomaly
from metricloop.monitors.service import run_monitor
from metricloop.settings import Settings
from metricloop.workspace import Workspace

LAST_40_MORNINGS = [date(2026, 10, 13) + timedelta(days=k) for k in range(40)]  # judge 10-12 … 11-20
STOCKOUT_MORNINGS = [date(2026, 11, d) for d in range(15, 21)]


def manager_of(ws, store: str) -> str:
    with (ws.home / "data" / "stores.csv").open(encoding="utf-8") as f:
        return next(r["manager_email"] for r in csv.DictReader(f) if r["store"] == store)


def anomalies(ws, monitor: str) -> list[Anomaly]:
    with ws.db.session() as s:
        return list(s.scalars(select(Anomaly).where(Anomaly.monitor == monitor).order_by(Anomaly.time)))


def created_on(inc, day: date) -> bool:
    """Opened by the run of that morning (09:00 Beijing = 01:00 UTC)."""
    return aware(inc.created_at) == datetime(day.year, day.month, day.day, 1, 0, tzinfo=UTC)


# ------------------------------------------------------------------ the replay: 40 mornings, every monitor


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, demo_template):
    """Every demo monitor run as the scheduler would have, each morning at 09:00 for the last 40 days."""
    home = tmp_path_factory.mktemp("replayed") / "demo"
    shutil.copytree(demo_template, home, ignore=shutil.ignore_patterns("data"))
    (home / "data").symlink_to(demo_template / "data", target_is_directory=True)
    ws = Workspace(home, Settings(home=home, user="tester", base_url=BASE_URL))
    ratio = grouping_ratio(ws, LAST_40_MORNINGS, processes=2)
    ws.ratio = ratio
    yield ws
    ws.close()


@pytest.mark.slow
def test_grouping_ratio_over_the_last_40_days(replayed, capsys):
    r = replayed.ratio
    with capsys.disabled():
        print(f"\n[demo, last 40 mornings] {r}")
    assert r.runs == 40 * 6 and r.failed_runs == 0
    assert r.incidents >= 1 and r.anomalies >= r.alerts >= r.incidents
    assert r.ratio > 1  # grouping and dedup do fold anomalies together


@pytest.mark.slow
def test_carrier_delay_is_one_incident_listing_its_slices(replayed):
    (inc,) = [i for i in incidents(replayed, monitor="fulfilment") if "carrier=ZTO,region=South" in i.slices]
    assert created_on(inc, date(2026, 11, 18))  # the first morning after the first late day
    assert set(inc.slices) >= {"*", "region=South", "carrier=ZTO", "carrier=ZTO,region=South"}
    assert inc.severity == "P1"  # the rule: any region slice ≥ 3 % below
    assert inc.assignee == "zhou.qiang@demo.metricloop.dev" and inc.team == "logistics"
    later = [i for i in incidents(replayed, monitor="fulfilment") if i.created_at > inc.created_at]
    assert later == []  # the next days are absorbed (group: monitor)


@pytest.mark.slow
def test_miniapp_outage_is_caught_by_the_hourly_monitor(replayed):
    found = [i for i in incidents(replayed, monitor="channel_orders") if "channel=miniapp" in i.slices]
    assert len(found) == 1
    hours = sorted(a.time.hour for a in anomalies(replayed, "channel_orders") if a.slice == "channel=miniapp"
                   and a.time.date() == date(2026, 10, 29))  # fmt: skip
    assert hours and all(11 <= h < 17 for h in hours)


@pytest.mark.slow
def test_complaint_surge_in_chengdu(replayed):
    assert any("city=Chengdu" in i.slices for i in incidents(replayed, monitor="city_complaints"))


@pytest.mark.slow
def test_late_visitors_feed_is_a_data_problem_not_a_conversion_alert(replayed):
    day = date(2026, 11, 21)  # the morning that judges 11-20, when North's visitors never arrived
    dq = [i for i in incidents(replayed, kind="data_quality") if "region=North" in i.slices]
    assert len(dq) == 1 and created_on(dq[0], day)
    assert dq[0].labels["table"] == "visitors" and dq[0].labels["check"] == "completeness"
    assert dq[0].route == "data_quality" and dq[0].team == "data platform"
    metric = [i for i in incidents(replayed, monitor="regional_conversion", kind="metric") if created_on(i, day)]
    assert metric == []  # neither region=North nor the total above it
    muted = [a for a in anomalies(replayed, "regional_conversion") if a.time.date() == date(2026, 11, 20)]
    from metricloop.alerting.models import Alert

    with replayed.db.session() as s:
        held = [s.get(Alert, a.alert_id) for a in muted]
    assert all(a is not None and a.muted_by.startswith("inhibited: data quality") for a in held)


@pytest.mark.slow
def test_the_dairy_promotion_does_not_alert(replayed):
    promo = [a for a in anomalies(replayed, "category_sales")
             if a.slice == "category=Dairy" and date(2026, 10, 23) <= a.time.date() <= date(2026, 10, 25)]  # fmt: skip
    assert promo == []
    opened = [i for i in incidents(replayed, monitor="category_sales")
              if "category=Dairy" in i.slices and date(2026, 10, 24) <= aware(i.created_at).date() <= date(2026, 10, 26)]  # fmt: skip  # noqa: E501
    assert opened == []


@pytest.mark.slow
def test_every_run_is_a_row(replayed):
    rows = runs(replayed)
    assert len(rows) == 240 and {r.status for r in rows} == {"ok"}
    empty = [(r.monitor, r.data_until, r.series_evaluated, r.details) for r in rows
             if r.finished_at is None or r.series_evaluated == 0]  # fmt: skip
    assert empty == []
    assert sum(r.anomalies for r in rows) == replayed.ratio.anomalies


# ------------------------------------------------------------------ the stock-out: one incident, one owner


def test_store_stockout_opens_no_incident_for_other_stores(demo):
    ws = demo()
    for day in STOCKOUT_MORNINGS:
        run = run_monitor(ws, "store_sales", at=morning(day), now=morning(day))
        assert run.status == "ok", run.error
        assert run.series_evaluated >= 30
    others = [i for i in incidents(ws, monitor="store_sales") if i.slices != ["store=SH-003"]]
    assert others == [], [(i.slices, i.summary.get("explanation_en")) for i in others]


def test_store_stockout_opens_one_incident_owned_by_the_store_manager(demo):
    ws = demo()
    for day in STOCKOUT_MORNINGS:
        run_monitor(ws, "store_sales", at=morning(day), now=morning(day))
    found = [i for i in incidents(ws, monitor="store_sales") if i.slices == ["store=SH-003"]]
    assert len(found) == 1
    assert found[0].assignee == manager_of(ws, "SH-003") and found[0].route == "store_managers"


WEEKLY_STORE_MONITOR = """
monitors:
  - name: store_sales_weekly
    title: {zh: 门店销售（同比上周同日）, en: Store sales against the same weekday}
    metric: gmv
    slicing: {dimensions: [store], total: false, min_volume: 5}
    detector: {detector: change, offset: same_weekday_mean, max_pct: 0.45, direction: down, min_duration: 2}
    schedule: {cron: "0 9 * * *"}
    calendar: {events: [data/promotions.csv]}
    labels: {team: store_ops}
"""


def delivery_routes(mail_port: int, hook_url: str) -> str:
    return f"""
channels:
  - {{name: store_mail, type: email, host: 127.0.0.1, port: {mail_port}, from: metricloop@demo.test, language: zh}}
  - {{name: store_hook, type: webhook, url: "{hook_url}", secret: "${{DEMO_HOOK_SECRET}}", language: zh}}
routes:
  - name: store_managers
    order: 10
    matchers: ["monitor=~store_sales.*"]
    assignee_lookup: {{source: demo, table: stores, key: store, column: manager_email}}
    team: store operations
    channels: [store_mail, store_hook]
    escalation: store_ops
"""


@pytest.mark.parametrize("where", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_stockout_reaches_the_store_manager_by_email_and_signed_webhook(
    where, request, demo_on, mailbox, receiver, monkeypatch
):
    """The loop end to end on the demo data, with a monitor that flags SH-003 (the shipped one does not, above)."""
    from fastapi.testclient import TestClient

    from metricloop.app import create_app

    monkeypatch.setenv("DEMO_HOOK_SECRET", "demo-secret")
    ws = demo_on(request.getfixturevalue("pg_url") if where == "postgres" else None)
    apply_yaml(ws, WEEKLY_STORE_MONITOR + delivery_routes(mailbox.port, receiver.url + "/stores"))
    for day in STOCKOUT_MORNINGS[:3]:  # (later mornings would auto-resolve it: another message)
        run = run_monitor(ws, "store_sales_weekly", at=morning(day), now=morning(day))
        assert run.status == "ok", run.error
    (inc,) = incidents(ws)
    manager = manager_of(ws, "SH-003")
    assert inc.slices == ["store=SH-003"] and inc.assignee == manager and inc.team == "store operations"
    assert created_on(inc, date(2026, 11, 17))  # two low days in a row (min_duration 2)
    drain(ws)
    assert {n.status for n in outbox(ws)} == {"sent"}
    (mail,) = mailbox.to(manager)
    assert len(mailbox.messages) == 1
    body = mail.get_content()
    assert inc.summary["explanation_zh"] in body
    assert f"{BASE_URL}/api/incidents/{inc.id}/ack?token=" in body
    assert mail["Subject"].startswith("[P1 红] 新工单：")
    (hook,) = receiver.accepted()
    assert len(receiver.requests) == 1 and verify_signature("demo-secret", hook)
    assert hook.json()["incident"]["assignee"] == manager
    # the manager acknowledges from the email; escalation stops
    url = urlsplit(re.search(r"http://\S+/ack\?token=[\w.-]+", body).group(0))
    client = TestClient(create_app(ws))
    assert client.get(f"{url.path}?{url.query}").status_code == 200  # asks to confirm
    assert client.post(f"{url.path}?{url.query}").status_code == 200  # the confirmation acknowledges
    assert incidents(ws)[0].state == "acknowledged"
    from metricloop.incidents.service import process_timers

    assert process_timers(ws, now=morning("2026-11-17") + timedelta(hours=3))["escalated"] == 0
    assert [n.event for n in outbox(ws, incident_id=inc.id)] == ["created", "created"]


def test_the_set_up_replay_keeps_each_morning_s_clock(demo):
    """Incidents of the replayed mornings say when they were opened (Thursday 09:00), not when set-up ran, so
    their SLA clocks and escalations tell the story a new user should see."""
    from metricloop.demo.setup import replay

    ws = demo()
    end = date(2026, 11, 20)  # the demo's last day of data
    replay(ws, last=end, days=3)
    opened = incidents(ws)
    assert opened
    mornings = {datetime(d.year, d.month, d.day, 1, 0, tzinfo=UTC)  # 09:00 Beijing time
                for d in (end - timedelta(days=1), end, end + timedelta(days=1))}
    assert {aware(i.created_at) for i in opened} <= mornings


def test_a_replay_set_up_before_nine_in_shanghai_runs_its_last_morning_now_not_later(demo):
    from metricloop.demo.setup import replay

    ws = demo()
    end = date(2026, 11, 20)
    now = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # 07:30 on 11-21 in Shanghai, before the 09:00 run
    runs = replay(ws, last=end, days=2, now=now)
    assert runs and max(aware(r.scheduled_for) for r in runs) == now
    assert all(aware(i.created_at) <= now for i in incidents(ws))


def test_the_demo_ends_yesterday_in_shanghai_whatever_the_machine_clock():
    from metricloop.demo.setup import default_end

    # 22:55 UTC on 12-07 is 06:55 on 12-08 in Shanghai: the data end on 12-07, not 12-06
    assert default_end(datetime(2026, 12, 7, 22, 55, tzinfo=UTC)) == date(2026, 12, 7)
    assert default_end(datetime(2026, 12, 7, 8, 0, tzinfo=UTC)) == date(2026, 12, 6)
