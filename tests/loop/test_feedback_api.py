"""Feedback over HTTP (in-process client, SQLite and PostgreSQL): giving labels, listing them, quality KPIs, roles,
domains and bad input."""

from __future__ import annotations

import pytest
from loop_helpers import timeline
from test_loop_api import api as api  # the fixture: four stores, four incidents, tokens of a viewer and an operator

from metricloop.auth import users
from metricloop.auth.service import create_token


@pytest.fixture
def fb(api):
    """test_loop_api's shop (four stores, four incidents) with an operator's token by default, a second operator,
    and an operator of another domain."""
    with api.ws.db.session() as s:
        ops2 = create_token(s, name="ops2", role="operator", user="li.lei@shop.test")
        outsider = users.add_user(s, name="lou", password="correct horse 1", role="operator", domains=["fulfilment"])
        s.flush()
        lou = create_token(s, name="lou", user_id=outsider.id)
    api.headers.update(api.op)
    api.ops2 = {"Authorization": f"Bearer {ops2}"}
    api.lou = {"Authorization": f"Bearer {lou}"}
    api.alerts = {store: api.get(f"/api/incidents/{i}").json()["alerts"][0]["id"] for store, i in api.ids.items()}
    return api


def test_false_alarm_on_an_incident_is_stored_listed_and_on_the_timeline(fb):
    i = fb.ids["SH-2"]
    r = fb.post(f"/api/incidents/{i}/feedback", json={"label": "false_alarm", "note": "stocktake day"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [lab["label"] for lab in body["labels"]] == ["false_alarm"]
    assert body["labels"][0]["created_by"] == "zhang.wei@shop.test" and body["labels"][0]["slice"] == "store=SH-2"
    assert body["effects"][0]["kind"] == "tuning" and "tuning" in body["effects"][0]["message_en"]
    events = [e for e in timeline(fb.ws, i) if e.kind == "feedback"]
    assert events and "误报 / false alarm" in events[0].message and "stocktake day" in events[0].message
    d = fb.get(f"/api/incidents/{i}").json()
    assert "feedback" in [e["kind"] for e in d["timeline"]]
    listed = fb.get("/api/feedback", params={"incident_id": i}).json()
    assert [(x["label"], x["via"], x["standing"]) for x in listed] == [("false_alarm", "api", True)]


def test_conflicting_labels_from_two_people_the_later_stands_and_both_are_kept(fb):
    a = fb.alerts["SH-1"]
    assert fb.post("/api/feedback", json={"alert_id": a, "label": "false_alarm"}).status_code == 200
    r = fb.post("/api/feedback", json={"alert_id": a, "label": "confirmed"}, headers=fb.ops2)
    assert r.status_code == 200
    assert [x["created_by"] for x in r.json()["replaced"]] == ["zhang.wei@shop.test"]
    listed = fb.get("/api/feedback", params={"alert_id": a}).json()
    assert [(x["label"], x["created_by"], x["standing"]) for x in listed] == [
        ("confirmed", "li.lei@shop.test", True),
        ("false_alarm", "zhang.wei@shop.test", False),
    ]
    feedback_events = [e for e in timeline(fb.ws, fb.ids["SH-1"]) if e.kind == "feedback"]
    assert len(feedback_events) == 2 and "replaces zhang.wei@shop.test's false alarm" in feedback_events[1].message
    q = fb.get("/api/quality").json()["rows"][0]
    assert q["monitor"] == "shop_sales" and q["confirmed"] == 1 and q["false_alarm"] == 0 and q["labelled"] == 1


def test_a_point_with_no_alert_becomes_a_missed_or_confirmed_range(fb):
    for day, label in (("2026-11-02", "missed"), ("2026-11-03", "confirmed")):
        r = fb.post(
            "/api/feedback",
            json={"monitor": "shop_sales", "slice": "store=SH-1", "start": day, "label": label},
        )
        assert r.status_code == 200, r.text
        lab = r.json()["labels"][0]
        assert lab["alert_id"] is None and lab["start"] == lab["end"] == f"{day}T00:00:00"
    r = fb.post(
        "/api/feedback",
        json={"monitor": "shop_sales", "slice": "store=SH-1", "start": "2026-11-02", "label": "false_alarm"},
    )
    assert r.status_code == 422 and "nothing to call a false alarm" in r.json()["error"]
    # a range over an alerted day attaches to that alert
    r = fb.post(
        "/api/feedback",
        json={
            "monitor": "shop_sales",
            "slice": "store=BJ-2",
            "start": "2026-11-15",
            "end": "2026-11-16",
            "label": "confirmed",
        },
    )
    assert r.json()["labels"][0]["alert_id"] == fb.alerts["BJ-2"]
    q = fb.get("/api/quality", params={"by": "metric"}).json()["rows"][0]
    assert q["metric"] == "sales" and q["missed"] == 2 and q["confirmed"] == 1 and q["precision"] == 1.0


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"alert_id": 99999, "label": "confirmed"}, 404, "no alert #99999"),
        ({"incident_id": 99999, "label": "confirmed"}, 404, "no incident #99999"),
        ({"alert_id": "A", "label": "wrong"}, 422, "alert_id"),
        ({"monitor": "shop_sales", "start": "2026-11-02", "label": "wrong"}, 422, "unknown label 'wrong'"),
        (
            {"monitor": "shop_sales", "start": "2026-11-02", "label": "expected", "cause": "weather"},
            422,
            "unknown cause 'weather'; choose one of: holiday, promotion",
        ),
        (
            {"monitor": "shop_sales", "start": "2026-11-02", "label": "missed", "cause": "holiday"},
            422,
            "a cause goes with the label expected only",
        ),
        ({"monitor": "nope", "start": "2026-11-02", "label": "missed"}, 404, "no monitor named 'nope'"),
        (
            {"monitor": "shop_sales", "slice": "colour=red", "start": "2026-11-02", "label": "missed"},
            422,
            "no dimension colour",
        ),
        (
            {"monitor": "shop_sales", "start": "2026-11-05", "end": "2026-11-01", "label": "missed"},
            422,
            "before it starts",
        ),
        (
            {"monitor": "shop_sales", "slice": "store=SH-1", "since": "2027-01-01", "label": "new_normal"},
            422,
            "is in the future",
        ),
        ({"label": "missed"}, 422, "say what the label is about"),
        ({"alert_id": 1, "monitor": "shop_sales", "label": "confirmed"}, 422, "not alert and range"),
    ],
)
def test_bad_feedback_is_refused_with_what_and_where(fb, body, status, words):
    r = fb.post("/api/feedback", json=body)
    assert r.status_code == status, r.text
    assert words in r.text
    assert fb.get("/api/feedback").json() == []  # nothing stored


def test_viewers_cannot_label_and_other_domains_do_not_exist(fb):
    i = fb.ids["SH-1"]
    assert fb.post(f"/api/incidents/{i}/feedback", json={"label": "confirmed"}, headers=fb.viewer).status_code == 403
    assert fb.post("/api/feedback", json={"alert_id": 1, "label": "confirmed"}, headers=fb.viewer).status_code == 403
    assert fb.get("/api/feedback", headers=fb.viewer).status_code == 403
    assert fb.post(f"/api/incidents/{i}/feedback", json={"label": "confirmed"}, headers=fb.lou).status_code == 404
    r = fb.post("/api/feedback", json={"alert_id": fb.alerts["SH-1"], "label": "confirmed"}, headers=fb.lou)
    assert r.status_code == 404
    assert fb.get("/api/quality", headers=fb.viewer).status_code == 200
    assert fb.get("/api/quality", headers=fb.lou).json()["rows"] == []
    assert fb.get("/api/quality", params={"by": "colour"}).status_code == 422


def test_quality_kpis_by_team_and_owner(fb):
    fb.post(f"/api/incidents/{fb.ids['SH-1']}/ack")
    fb.post(f"/api/incidents/{fb.ids['SH-1']}/feedback", json={"label": "confirmed"})
    fb.post(f"/api/incidents/{fb.ids['SH-2']}/feedback", json={"label": "false_alarm"})
    team = fb.get("/api/quality", params={"by": "team"}).json()["rows"]
    assert [r["team"] for r in team] == ["store operations"]
    row = team[0]
    assert row["alerts"] == 4 and row["labelled"] == 2 and row["labelled_share"] == 0.5 and row["precision"] == 0.5
    assert row["series"] == 4 and row["alerts_per_series_month"] == pytest.approx(4 / 4 / (90 / 30.44))
    assert row["incidents"] == 4 and row["mtta_seconds"] is not None and row["ack_within_sla"] == 1.0
    owner = fb.get("/api/quality", params={"by": "owner"}).json()["rows"]
    assert [r["owner"] for r in owner] == ["sales.owner@shop.test"]
