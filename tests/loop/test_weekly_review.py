"""The weekly review (周报) on a small fixture whose figures are worked out by hand below.

Incidents are opened, acknowledged and resolved through the real incident service (and one by a real monitor
run), on SQLite and PostgreSQL; the SLA timers are fired by the real timer loop. Week 2026-W47 is Monday
2026-11-16 to Sunday 2026-11-22, Beijing time. Default SLAs (no escalation policy): P1 ack 15m / resolve 4h,
P2 1h / 1d, P3 4h / 3d.

Team logistics (metric deliveries, domain fulfilment):
  A  P1 opened Mon 11-16 10:00, ack 10:10 (10m), resolved 12:00 (2h)    cause "Carrier late"
  B  P2 opened Tue 11-17 09:00, ack 10:30 (90m: 30m late), resolved Wed 11-18 12:00 (27h: 3h late)
                                                                          cause "carrier  LATE" (same, once tidied)
  C  P3 opened Fri 11-20 09:00, never acknowledged (ack due 13:00: breached), resolve due next week
  D  P1 opened Sun 11-15 23:00 (W46), ack 23:05 (W46), resolved Mon 11-16 01:00 (2h)   cause "Warehouse system down"
  F  P2 opened Tue 11-24 (W48): not in W47
Hence for W47: opened 3 (A B C), resolved 3 (A B D), open at the end 1 (C); MTTA over A B = 50m, 1/2 within SLA;
MTTR over A B D = (2h + 27h + 2h) / 3 = 10h20m, 2/3 within SLA; breaches: B ack, B resolve, C ack.
Team store operations (metric sales, domain sales): the monitor's P1 on 2026-11-17 09:00, never acknowledged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from console_helpers import console_extra, open_sales_incident
from fastapi.testclient import TestClient
from loop_helpers import SH
from sqlalchemy import select

from metricloop.app import create_app
from metricloop.auth import users
from metricloop.auth.service import create_token
from metricloop.incidents import service
from metricloop.review.report import build
from metricloop.review.weeks import ReportInputError, parse_week

LOGISTICS = """  - {name: logistics, order: 1, matchers: ["domain=fulfilment"], team: logistics, channels: [hook]}
"""
PASSWORD = "correct horse battery"


def at(day: str, hm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hm}").replace(tzinfo=SH)


def _open(ws, severity: str, when: datetime, title: str):
    catalog = ws.catalog()
    with ws.db.session() as s:
        inc = service.open_incident(
            s, ws, catalog, title=title, severity=severity, kind="metric", monitor="deliveries_drop",
            metric="deliveries", group_key=title, slices=["region=East"],
            labels={"monitor": "deliveries_drop", "metric": "deliveries", "domain": "fulfilment"},
            summary={"explanation_en": title, "explanation_zh": title}, now=when,
        )  # fmt: skip
        return inc.id


def _ack(ws, incident_id: int, when: datetime) -> None:
    with ws.db.session() as s:
        service.acknowledge(s, ws, ws.catalog(), incident_id=incident_id, actor="zhou.qiang", now=when)


def _resolve(ws, incident_id: int, when: datetime, cause: str, category: str) -> None:
    with ws.db.session() as s:
        service.resolve(s, ws, ws.catalog(), incident_id=incident_id, actor="zhou.qiang", root_cause=cause,
                        category=category, now=when)  # fmt: skip


def _label(ws, label: str, *, by: str, when: datetime, incident_id=None, alert_id=None, day="2026-11-16", **kw):
    """A person's label, as the feedback table keeps it (metric-local bucket times)."""
    from metricloop.feedback.models import Feedback

    with ws.db.session() as s:
        if alert_id is not None:
            from metricloop.alerting.models import Alert

            a = s.get(Alert, alert_id)
            kw = {"monitor": a.monitor, "metric": a.metric, "slice": a.slice} | kw
        kw = {"monitor": "deliveries_drop", "metric": "deliveries", "slice": "region=East"} | kw
        bucket = datetime.fromisoformat(day)
        s.add(Feedback(label=label, start=bucket, end=bucket, incident_id=incident_id, alert_id=alert_id,
                       created_by=by, created_at=when.astimezone(UTC), **kw))  # fmt: skip


@pytest.fixture
def week47(shop):
    ws, sales_incident = open_sales_incident(ws=shop(extra=console_extra() + LOGISTICS, effects=_sales_drop()))
    ids = {}
    ids["D"] = _open(ws, "P1", at("2026-11-15", "23:00"), "D deliveries down")
    _ack(ws, ids["D"], at("2026-11-15", "23:05"))
    _resolve(ws, ids["D"], at("2026-11-16", "01:00"), "Warehouse system down", "outage")
    ids["A"] = _open(ws, "P1", at("2026-11-16", "10:00"), "A deliveries down")
    _ack(ws, ids["A"], at("2026-11-16", "10:10"))
    _resolve(ws, ids["A"], at("2026-11-16", "12:00"), "Carrier late", "supplier_carrier")
    ids["B"] = _open(ws, "P2", at("2026-11-17", "09:00"), "B deliveries down")
    _ack(ws, ids["B"], at("2026-11-17", "10:30"))
    _resolve(ws, ids["B"], at("2026-11-18", "12:00"), "  carrier  LATE ", "supplier_carrier")
    ids["C"] = _open(ws, "P3", at("2026-11-20", "09:00"), "C deliveries down")
    service.process_timers(ws, now=at("2026-11-20", "13:01"))  # C's ack SLA (and the sales incident's) fire
    ids["F"] = _open(ws, "P2", at("2026-11-24", "09:00"), "F deliveries down")
    ids["sales"] = sales_incident.id
    # labels: A confirmed, B false alarm, C false alarm then (later, standing) expected, D (W46) false alarm,
    # a missed range on 2026-11-19, and the sales alert a false alarm
    t = at("2026-11-21", "10:00")
    _label(ws, "confirmed", by="ann", when=t, incident_id=ids["A"])
    _label(ws, "false_alarm", by="ann", when=t, incident_id=ids["B"])
    _label(ws, "false_alarm", by="ann", when=t, incident_id=ids["C"])
    _label(ws, "expected", by="bob", when=t + timedelta(hours=1), incident_id=ids["C"], cause="promotion")
    _label(ws, "false_alarm", by="ann", when=t, incident_id=ids["D"], day="2026-11-15")
    _label(ws, "missed", by="ann", when=t, day="2026-11-19", slice="region=North")
    with ws.db.session() as s:
        from metricloop.alerting.models import Alert

        ids["sales_alerts"] = sorted(s.scalars(select(Alert.id).where(Alert.incident_id == ids["sales"])))
    _label(ws, "false_alarm", by="ann", when=t, alert_id=ids["sales_alerts"][0])
    return ws, ids


def _sales_drop():
    from datetime import date

    from loop_helpers import Effect

    return [Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "SH-1"})]


NOW = at("2026-11-25", "12:00")  # Wednesday of W48: the last full week is W47


def report(ws, **kw):
    kw.setdefault("now", NOW)
    with ws.db.session() as s:
        return build(s, ws.catalog(), tz="Asia/Shanghai", **kw)


def test_the_figures_of_a_team_week_match_the_hand_count(week47):
    ws, ids = week47
    r = report(ws, team="logistics")  # no week: the last full ISO week
    assert (r.week, r.first_day, r.last_day, r.in_progress) == ("2026-W47", "2026-11-16", "2026-11-22", False)
    assert (r.opened, r.resolved, r.open_at_end) == (3, 3, 1)
    assert r.acknowledged == 2 and r.mtta_seconds == 50 * 60 and r.acked_in_sla == 1
    assert r.mttr_seconds == (2 + 27 + 2) * 3600 / 3 and r.resolved_in_sla == 2
    assert (r.ack_breaches, r.resolve_breaches) == (2, 1)
    assert [(b.incident_id, b.sla, b.late_seconds) for b in r.breaches] == [
        (ids["B"], "ack", 30 * 60),
        (ids["B"], "resolve", 3 * 3600),
        (ids["C"], "ack", None),  # still waiting
    ]
    p1, p2, p3 = r.by_severity
    assert (p1.opened, p1.resolved, p1.mtta_seconds, p1.ack_sla_seconds, p1.mttr_seconds) == (1, 2, 600, 900, 7200)
    assert (p2.opened, p2.resolved, p2.mtta_seconds, p2.ack_sla_seconds) == (1, 1, 5400, 3600)
    assert (p2.mttr_seconds, p2.resolve_sla_seconds, p2.ack_breaches, p2.resolve_breaches) == (97200, 86400, 1, 1)
    assert (p3.opened, p3.resolved, p3.ack_breaches, p3.mtta_seconds) == (1, 0, 1, None)
    assert r.causes_from == "knowledge"
    assert [(c.key, c.en, c.this_week, sorted(c.incidents)) for c in r.causes] == [
        ("supplier_carrier", "supplier or carrier", 2, sorted([ids["A"], ids["B"]])),
        ("outage", "channel or system outage", 1, [ids["D"]]),
    ]
    # feedback: A confirmed, B false alarm, C expected (the later label stands): 1 of 3 each; the missed range apart
    assert r.labels == {"confirmed": 1, "false_alarm": 1, "expected": 1, "new_normal": 0, "missed": 1}
    assert r.false_alarm_rate == 1 / 3 and r.precision == 1 / 3
    assert r.labelled_share is None  # the team's incidents came without alerts: no share to give
    (m,) = r.monitors
    assert (m.monitor, m.incidents, m.breaches, m.labelled, m.false_alarms, m.precision) == (
        "deliveries_drop", 3, 3, 3, 1, 1 / 3)  # fmt: skip
    w46, w47 = r.trend[-2:]
    assert (w46.week, w46.opened, w46.labelled, w46.false_alarms, w46.false_alarm_rate) == ("2026-W46", 1, 1, 1, 1.0)
    assert (w47.week, w47.opened, w47.labelled, w47.false_alarm_rate) == ("2026-W47", 3, 3, 1 / 3)
    assert all(t.labelled == 0 and t.false_alarm_rate is None for t in r.trend[:-2])  # no labels: no rate


def test_a_domain_report_counts_the_monitors_alerts_and_nothing_of_other_domains(week47):
    ws, ids = week47
    r = report(ws, domain="sales", week="2026-W47")
    assert (r.opened, r.resolved, r.open_at_end) == (1, 0, 1)
    assert {(b.incident_id, b.sla) for b in r.breaches} == {(ids["sales"], "ack"), (ids["sales"], "resolve")}
    (m,) = r.monitors
    n = len(ids["sales_alerts"])
    assert (m.monitor, m.alerts, m.incidents, m.breaches, m.labelled, m.precision) == ("shop_sales", n, 1, 2, 1, 0.0)
    assert r.false_alarm_rate == 1.0 and r.labelled_share == 1 / n
    both = report(ws, week="2026-W47")  # neither: everything the reader may see
    assert both.opened == 4 and both.resolved == 3


def test_open_tuning_suggestions_of_the_scope_are_listed(week47):
    from metricloop.tuning.models import TuningSuggestion

    ws, _ = week47
    summary = {"changes": [{"knob": "sensitivity", "before": 5, "after": 3}],
               "before": {"alerts_per_month": 12.0}, "after": {"alerts_per_month": 4.0, "false_alarms_removed": 2,
                                                                "false_alarms": 3}}  # fmt: skip
    with ws.db.session() as s:
        for monitor, status in (("shop_sales", "open"), ("shop_sales", "rejected"), ("elsewhere", "open")):
            s.add(TuningSuggestion(monitor=monitor, status=status, base_version=1, base_spec={}, proposed_spec={},
                                   budget=2.0, summary=summary, created_at=at("2026-11-23", "09:00")))  # fmt: skip
    r = report(ws, domain="sales", week="2026-W47")
    assert r.tuning_available and [t["monitor"] for t in r.tuning] == ["shop_sales"]  # open, and of the scope only
    (t,) = r.tuning
    assert t["summary_en"] == "sensitivity 5 → 3; alerts per month 12.0 → 4.0; false alarms removed 2/3"
    assert "每月告警 12.0 → 4.0" in t["summary_zh"]
    assert report(ws, team="logistics", week="2026-W47").tuning == []


def test_a_part_that_is_not_there_says_not_available_and_shows_no_number(week47):
    from dataclasses import replace

    from metricloop.knowledge.models import KnowledgeEntry
    from metricloop.review import inputs, render

    ws, ids = week47
    assert inputs._optional("metricloop.not_merged_yet", "labels_for_monitor") is None
    r = replace(report(ws, team="logistics", week="2026-W47"), feedback_available=False, labels=None,
                false_alarm_rate=None, precision=None, tuning_available=False, tuning=None)  # fmt: skip
    for lang, words in (("en", "Not available yet"), ("zh", "暂不可用")):
        assert words in render.feedback_line(r, lang) and words in render.tuning_line(r, lang)
        assert "%" not in render.feedback_line(r, lang)
    # a resolution from before the knowledge base (no entry): its written cause is grouped as text beside categories
    with ws.db.session() as s:
        s.delete(s.scalar(select(KnowledgeEntry).where(KnowledgeEntry.incident_id == ids["D"])))
    r = report(ws, team="logistics", week="2026-W47")
    assert [(c.key, c.this_week) for c in r.causes] == [("supplier_carrier", 2), ("text:warehouse system down", 1)]


def test_bad_input_is_refused_with_what_and_where(week47):
    ws, _ = week47
    with pytest.raises(ReportInputError) as e:
        report(ws, team="logistix")
    assert e.value.where == "team" and e.value.status_code == 404 and "logistics" in e.value.message
    assert "没有团队" in e.value.text("zh")
    with pytest.raises(ReportInputError) as e:
        report(ws, domain="nope")
    assert e.value.where == "domain" and "fulfilment" in e.value.message
    for bad, words in (("2026-48", "not an ISO week"), ("2026-W54", "weeks 1 to 53"), ("W47", "not an ISO week")):
        with pytest.raises(ReportInputError, match=words) as e:
            report(ws, week=bad)
        assert e.value.where == "week" and e.value.status_code == 400
    with pytest.raises(ReportInputError, match="has not begun yet") as e:
        report(ws, week="2026-W49")
    assert "2026-W48" in e.value.message  # says which week it is now


def test_a_week_without_incidents_and_the_current_week(week47):
    ws, ids = week47
    empty = report(ws, team="logistics", week="2026-W40")
    assert (empty.opened, empty.resolved, empty.open_at_end) == (0, 0, 0)
    assert empty.mtta_seconds is None and empty.mttr_seconds is None
    assert empty.breaches == [] and empty.causes == [] and empty.monitors == []
    from metricloop.review import render

    assert render.feedback_line(empty, "en") == "no labels this week." and "本周没有标注" in render.text(empty, "zh")
    assert "MTTA — · MTTR —" in render.text(empty, "en")  # no figure, not 0
    current = report(ws, team="logistics", week="2026-W48")
    assert current.in_progress and current.opened == 1  # F
    assert parse_week("2026w48", "Asia/Shanghai", now=NOW).label == "2026-W48"


def test_the_week_is_the_workspace_timezones():
    week = parse_week("2026-W47", "Asia/Shanghai", now=NOW)
    assert week.start == datetime(2026, 11, 15, 16, 0, tzinfo=UTC)
    assert week.end == datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
    # on Monday 2026-11-23 at 07:00 Beijing time (still Sunday in UTC) the last full week is already W47
    assert parse_week("", "Asia/Shanghai", now=datetime(2026, 11, 22, 23, 0, tzinfo=UTC)).label == "2026-W47"
    assert parse_week("", "UTC", now=datetime(2026, 11, 22, 23, 0, tzinfo=UTC)).label == "2026-W46"


# ------------------------------------------------------------------ over HTTP


def _people(ws):
    with ws.db.session() as s:
        users.add_user(s, name="lou", password=PASSWORD, role="viewer", domains=["fulfilment"], email="lou@shop.test")
        users.add_user(s, name="boss", password=PASSWORD, role="admin", domains=[], email="boss@shop.test")
        user = users.get_user(s, "lou")
        return create_token(s, name="lou-script", role="viewer", user_id=user.id)


def _login(ws, name: str) -> TestClient:
    import re
    from html import unescape

    from metricloop.web.console import routes

    routes.limiter.__init__()
    c = TestClient(create_app(ws), base_url="http://127.0.0.1")
    page = c.get("/login")
    csrf = unescape(re.search(r'name="csrf" value="([^"]+)"', page.text).group(1))
    r = c.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf, "next": "/console"},
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    return c


def test_the_page_for_a_logged_in_person_keeps_to_their_domains(week47):
    ws, ids = week47
    _people(ws)
    anonymous = TestClient(create_app(ws), base_url="http://127.0.0.1")
    r = anonymous.get("/reports/weekly?team=logistics", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/reports/weekly")
    c = _login(ws, "lou")
    home = c.get("/console")
    assert 'href="/reports/weekly"' in home.text  # the nav links it
    page = c.get("/reports/weekly?team=logistics&week=2026-W47&lang=zh")
    assert page.status_code == 200 and "周报 / 复盘 2026-W47" in page.text and 'id="nav-weekly"' in page.text
    assert f"#{ids['B']}" in page.text and "认领超时" in page.text and "误报率 33.3%" in page.text
    assert "供应商或承运商" in page.text and "没有待处理的调优建议" in page.text
    en = c.get("/reports/weekly?team=logistics&week=2026-W47&lang=en").text
    assert "Weekly review 2026-W47" in en and "10h 20m" in en and "50m" in en and "supplier or carrier" in en
    # lou sees fulfilment only: the sales domain does not exist for them, and the whole report leaves sales out
    r = c.get("/reports/weekly?domain=sales&week=2026-W47&lang=en")
    assert r.status_code == 404 and "unknown domain &#39;sales&#39; (known: fulfilment)" in r.text
    assert c.get("/reports/weekly?week=2026-W47&format=json").json()["opened"] == 3
    boss = _login(ws, "boss")
    assert boss.get("/reports/weekly?week=2026-W47&format=json").json()["opened"] == 4


def test_the_page_with_a_token_and_bad_input_over_http(week47):
    ws, _ = week47
    token = _people(ws)
    c = TestClient(create_app(ws), base_url="http://127.0.0.1")
    h = {"Authorization": f"Bearer {token}"}
    body = c.get("/reports/weekly?team=logistics&week=2026-W47&format=json", headers=h).json()
    assert body["opened"] == 3 and body["mttr_seconds"] == 37200 and body["feedback_available"] in (True, False)
    assert c.get("/reports/weekly?week=2026-W47", headers={"Authorization": "Bearer ml_wrong"}).status_code == 401
    for query, where, status in (
        ("week=2026-W99", "week", 400),
        ("week=yesterday", "week", 400),
        ("week=2027-W01", "week", 400),
        ("team=nobody", "team", 404),
    ):
        r = c.get(f"/reports/weekly?{query}&format=json", headers=h)
        assert r.status_code == status and r.json()["where"] == where, (query, r.text)
        page = c.get(f"/reports/weekly?{query}&lang=zh", headers=h)
        assert page.status_code == status and 'class="error"' in page.text


# ------------------------------------------------------------------ the CLI


@pytest.fixture
def cli(week47, monkeypatch):
    from typer.testing import CliRunner

    from metricloop.cli import app

    ws, ids = week47
    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    if ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", ws.settings.db)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, ["report", "weekly", *args, "--at", "2026-11-25T12:00+08:00"])
        return result.exit_code, result.output

    return run


def test_the_cli_prints_the_report_as_text_json_and_html(cli):
    import json

    code, out = cli("--team", "logistics", "--lang", "en")
    assert code == 0, out
    assert out.startswith("Weekly review 2026-W47 (2026-11-16 – 2026-11-22) · Team logistics")
    assert "opened 3 · resolved 3 · open 1 · MTTA 50m · MTTR 10h 20m · breaches 3" in out
    assert "false-alarm rate 33.3% (last week 100.0%), precision 33.3%" in out and "supplier or carrier: 2" in out
    code, out = cli("--team", "logistics", "--lang", "zh", "--week", "2026-W47")
    assert code == 0 and "周报 / 复盘 2026-W47" in out and "MTTR 10小时20分钟" in out and "工单：新开 3" in out
    code, out = cli("--team", "logistics", "--format", "json")
    assert code == 0 and json.loads(out)["resolve_breaches"] == 1
    code, out = cli("--domain", "fulfilment", "--format", "html", "--lang", "en")
    assert code == 0 and out.startswith("<!doctype html>") and "<style>" in out and "Weekly review 2026-W47" in out
    assert "&lt;" not in out.split("</style>")[0]  # the stylesheet is inlined as is, not escaped


def test_the_cli_says_what_is_wrong_and_where(cli):
    code, out = cli("--team", "logistix", "--lang", "en")
    assert code == 2 and "--team" in out and "unknown team 'logistix'" in out and "logistics" in out
    code, out = cli("--week", "2026-48")
    assert code == 2 and "--week" in out and "2026-W48" in out
    code, out = cli("--week", "2026-W52", "--lang", "en")
    assert code == 2 and "has not begun yet" in out
    code, out = cli("--format", "pdf")
    assert code == 2 and "--format" in out


# ------------------------------------------------------------------ the digest sent to channels


def _weekly_report_definition(ws, url: str, **fields):
    import yaml
    from loop_helpers import apply_yaml

    report = {"name": "logistics_weekly", "team": "logistics", "channels": ["weekly_hook"], **fields}
    doc = {"channels": [{"name": "weekly_hook", "type": "webhook", "url": url, "language": "en"}], "reports": [report]}
    return apply_yaml(ws, yaml.safe_dump(doc, allow_unicode=True), file="reports.yaml")


def test_the_digest_is_queued_once_per_report_and_week_and_sent_by_the_outbox(week47, receiver):
    from metricloop.notify.dispatcher import dispatch_once
    from metricloop.notify.models import Notification
    from metricloop.review.digest import send_due
    from metricloop.workspace import Workspace

    ws, _ = week47
    _weekly_report_definition(ws, receiver.url + "/weekly")
    # Monday 2026-11-23 08:59: the slot of Monday 11-16 has passed, so W46's digest is due (it was never sent)
    assert send_due(ws, now=at("2026-11-23", "08:59")) == [("logistics_weekly", "2026-W46", 1)]
    assert send_due(ws, now=at("2026-11-23", "09:00")) == [("logistics_weekly", "2026-W47", 1)]
    # a restart (a new process on the same state) and later ticks of the same week queue nothing again
    again = Workspace(ws.home, ws.settings)
    try:
        for when in (at("2026-11-23", "09:00"), at("2026-11-25", "12:00"), at("2026-11-30", "08:59")):
            assert send_due(again, now=when) == []
    finally:
        again.close()
    with ws.db.session() as s:
        rows = list(s.scalars(select(Notification).where(Notification.event == "weekly_report")
                              .order_by(Notification.id)))  # fmt: skip
        assert [r.idempotency_key for r in rows] == [
            "report:logistics_weekly:2026-W46:weekly_hook:weekly_hook",
            "report:logistics_weekly:2026-W47:weekly_hook:weekly_hook",
        ]
        w47 = rows[1]
        assert w47.incident_id is None and w47.language == "en"
        assert w47.subject == "[metricloop] Weekly review 2026-W47 (2026-11-16 – 2026-11-22) · Team logistics"
        assert "opened 3 · resolved 3 · open 1 · MTTA 50m · MTTR 10h 20m · breaches 3" in w47.body
        assert "/reports/weekly?team=logistics&week=2026-W47&lang=en" in w47.body
    dispatch_once(ws)  # the outbox row was queued at the real clock: deliver it now
    got = [r for r in receiver.accepted() if r.path == "/weekly"]
    assert sorted(r.key for r in got) == [row.idempotency_key for row in rows]
    body = next(r.json() for r in got if r.key.endswith(":2026-W47:weekly_hook:weekly_hook"))
    assert body["kind"] == "weekly_report" and body["report_name"] == "logistics_weekly"
    assert body["report"]["week"] == "2026-W47" and body["report"]["mttr_seconds"] == 37200


def test_the_scheduler_queues_the_due_digest_once(week47):
    from datetime import UTC, datetime

    from metricloop.monitors.service import last_slot
    from metricloop.notify.models import Notification
    from metricloop.review.weeks import last_full_week
    from metricloop.scheduler import Background

    ws, _ = week47
    _weekly_report_definition(ws, "http://127.0.0.1:9/weekly")
    worker = Background(ws)
    worker.tick_once()
    worker.tick_once()  # the next tick finds the week queued
    spec = ws.catalog().all("report")["logistics_weekly"]
    due = last_full_week("Asia/Shanghai", last_slot(spec, datetime.now(UTC))).label
    with ws.db.session() as s:
        keys = list(s.scalars(select(Notification.idempotency_key).where(Notification.event == "weekly_report")))
    assert keys == [f"report:logistics_weekly:{due}:weekly_hook:weekly_hook"]


def test_a_report_definition_is_checked_when_applied(week47):
    from metricloop.errors import DefinitionError

    ws, _ = week47
    for fields, words in (
        ({"team": "logistix"}, "no route names team 'logistix'"),
        ({"channels": ["nowhere"]}, "unknown channel 'nowhere'"),
        ({"team": None, "domain": "nope"}, "unknown domain 'nope'"),
        ({"team": None}, "needs a team or a domain"),
        ({"schedule": {"cron": "61 9 * * 1"}}, "not a valid cron"),
    ):
        with pytest.raises(DefinitionError, match=words):
            _weekly_report_definition(ws, "http://127.0.0.1:9/weekly", **fields)
