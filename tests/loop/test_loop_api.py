"""The loop's HTTP API through an in-process client on a real workspace (SQLite and PostgreSQL state)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from loop_helpers import FOUR_DROPS as DROPS
from loop_helpers import FOUR_DROPS_LOOP as LOOP
from loop_helpers import STORES, monitor_yaml, morning, timeline

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.monitors.service import run_monitor


@pytest.fixture
def api(shop):
    monitor = monitor_yaml(
        detector={"detector": "change", "offset": "last_week", "max_pct": 0.05, "direction": "down"},
        slicing={"dimensions": ["store"], "total": False},
        group="none",
    )
    ws = shop(effects=DROPS, extra=monitor + LOOP)
    at = morning("2026-11-17")
    assert run_monitor(ws, "shop_sales", at=at).status == "ok"
    with ws.db.session() as s:
        operator = create_token(s, name="ops", role="operator", user="zhang.wei@shop.test")
        viewer = create_token(s, name="boss", role="viewer")
    client = TestClient(create_app(ws), headers={"Authorization": f"Bearer {viewer}"})  # reads need a token
    client.ws = ws
    client.op = {"Authorization": f"Bearer {operator}"}
    client.viewer = {"Authorization": f"Bearer {viewer}"}
    client.ids = {i["slices"][0].removeprefix("store="): i["id"] for i in client.get("/api/incidents").json()}
    return client


def test_list_incidents_with_filters(api):
    every = api.get("/api/incidents").json()
    assert len(every) == 4
    assert {i["slices"][0] for i in every} == {f"store={s}" for s in STORES}
    assert {i["severity"] for i in api.get("/api/incidents", params={"severity": "P1"}).json()} == {"P1"}
    assert len(api.get("/api/incidents", params={"severity": "P1"}).json()) == 2
    assert len(api.get("/api/incidents", params={"severity": "P2,P3"}).json()) == 2
    mine = api.get("/api/incidents", params={"assignee": STORES["SH-1"][1]}).json()
    assert [i["id"] for i in mine] == [api.ids["SH-1"]]
    assert len(api.get("/api/incidents", params={"metric": "sales"}).json()) == 4
    assert api.get("/api/incidents", params={"metric": "gmv"}).json() == []
    api.post(f"/api/incidents/{api.ids['SH-2']}/ack", headers=api.op)
    acked = api.get("/api/incidents", params={"state": "acknowledged"}).json()
    assert [i["id"] for i in acked] == [api.ids["SH-2"]]
    assert len(api.get("/api/incidents", params={"state": "triggered"}).json()) == 3
    assert len(api.get("/api/incidents", params={"state": "triggered", "severity": "P1"}).json()) == 2
    assert api.get("/api/incidents", params={"limit": 0}).status_code == 422


def test_incident_detail_has_the_timeline(api):
    d = api.get(f"/api/incidents/{api.ids['SH-1']}").json()
    assert d["state"] == "triggered" and d["assignee"] == STORES["SH-1"][1] and d["team"] == "store operations"
    assert d["severity"] == "P1" and d["colour"] == "red"
    assert [e["kind"] for e in d["timeline"]] == ["created", "assigned", "rca"]  # rca: its root causes
    assert all(e["actor"] == "metricloop" and e["at"] for e in d["timeline"])
    assert d["created_at"].endswith("+00:00")  # UTC, with its offset, on SQLite too
    assert [a["slice"] for a in d["alerts"]] == ["store=SH-1"]
    assert [n["channel"] for n in d["notifications"]] == ["hook"]
    assert d["summary"]["explanation_en"]
    missing = api.get("/api/incidents/9999")
    assert missing.status_code == 404 and missing.json()["error"] == "no incident #9999"


def test_incident_flows(api):
    i = api.ids["SH-1"]
    r = api.post(f"/api/incidents/{i}/ack", headers=api.op)
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    r = api.post(f"/api/incidents/{i}/assign", json={"assignee": "li.lei@shop.test", "team": "east"}, headers=api.op)
    assert r.status_code == 200, r.text
    assert r.json()["assignee"] == "li.lei@shop.test" and r.json()["team"] == "east"
    r = api.post(
        f"/api/incidents/{i}/comment", json={"text": "Fresh is out of stock, restock on the way"}, headers=api.op
    )
    assert r.status_code == 200
    r = api.post(
        f"/api/incidents/{i}/resolve",
        json={"root_cause": "stock-out of Fresh at SH-1", "note": "restocked at 14:00"},
        headers=api.op,
    )
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    assert r.json()["root_cause"] == "stock-out of Fresh at SH-1" and r.json()["resolution"] == "restocked at 14:00"
    r = api.post(f"/api/incidents/{i}/reopen", json={"reason": "sales fell again"}, headers=api.op)
    assert r.status_code == 200 and r.json()["state"] == "triggered"
    events = api.get(f"/api/incidents/{i}").json()["timeline"]
    mine = [(e["kind"], e["actor"]) for e in events if e["actor"] != "metricloop"]
    assert mine == [
        ("acknowledged", "zhang.wei@shop.test"),
        ("reassigned", "zhang.wei@shop.test"),
        ("commented", "zhang.wei@shop.test"),
        ("resolved", "zhang.wei@shop.test"),
        ("reopened", "zhang.wei@shop.test"),
    ]
    by_kind = {e["kind"]: e for e in events}
    assert by_kind["commented"]["message"] == "Fresh is out of stock, restock on the way"
    assert by_kind["resolved"]["data"]["root_cause"] == "stock-out of Fresh at SH-1"
    assert by_kind["reopened"]["message"] == "sales fell again"
    assert by_kind["reassigned"]["message"] == f"{STORES['SH-1'][1]} → li.lei@shop.test"
    outbox_events = [n["event"] for n in api.get("/api/outbox", params={"incident": i}).json()]
    assert sorted(outbox_events) == ["created", "reassigned", "reopened", "resolved"]


def test_refused_flows_change_nothing(api):
    i = api.ids["BJ-1"]
    api.post(f"/api/incidents/{i}/resolve", json={"root_cause": "a data glitch"}, headers=api.op)
    before = api.get(f"/api/incidents/{i}").json()
    ack = api.post(f"/api/incidents/{i}/ack", headers=api.op)
    assert ack.status_code == 409
    assert ack.json()["error"] == f"incident #{i} is resolved: only a triggered incident can be acknowledged"
    twice = api.post(f"/api/incidents/{i}/resolve", json={"root_cause": "again"}, headers=api.op)
    assert twice.status_code == 409 and "already resolved" in twice.json()["error"]
    assign = api.post(f"/api/incidents/{i}/assign", json={"assignee": "x@shop.test"}, headers=api.op)
    assert assign.status_code == 409 and "reopen it" in assign.json()["error"]
    assert api.get(f"/api/incidents/{i}").json() == before


def test_payloads_of_the_wrong_type_are_422_naming_the_field(api):
    i = api.ids["SH-1"]
    before = api.get(f"/api/incidents/{i}").json()
    for path, body, where in (
        ("assign", {"assignee": 42}, "body.assignee"),
        ("assign", {"assignee": ""}, "body.assignee"),
        ("comment", {"text": ["not", "text"]}, "body.text"),
        ("resolve", {"root_cause": {"why": "?"}}, "body.root_cause"),
        ("resolve", {"note": "no root cause"}, "body.root_cause"),
        ("comment", {"text": "hi", "when": "now"}, "body.when"),
    ):
        r = api.post(f"/api/incidents/{i}/{path}", json=body, headers=api.op)
        assert r.status_code == 422, (path, body, r.text)
        assert r.json()["error"].startswith("invalid request: ")
        assert where in [p["where"] for p in r.json()["problems"]], r.json()
    r = api.post("/api/incidents/not-a-number/ack", headers=api.op)
    assert r.status_code == 422 and r.json()["problems"][0]["where"] == "path.incident_id"
    assert api.get(f"/api/incidents/{i}").json() == before


def test_writes_need_an_operator_token(api):
    i = api.ids["SH-1"]
    anonymous = TestClient(api.app)
    for method, path, body in (
        ("post", f"/api/incidents/{i}/ack", None),
        ("post", f"/api/incidents/{i}/comment", {"text": "x"}),
        ("post", f"/api/incidents/{i}/resolve", {"root_cause": "x"}),
        ("post", "/api/silences", {"matchers": ["store=SH-1"], "reason": "x", "duration_minutes": 5}),
        ("post", "/api/monitors/shop_sales/run", None),
    ):
        nobody = getattr(anonymous, method)(path, json=body)
        assert nobody.status_code == 401 and "needs an API token" in nobody.json()["error"]
        bad = getattr(api, method)(path, json=body, headers={"Authorization": "Bearer ml_forged"})
        assert bad.status_code == 401 and "not valid" in bad.json()["error"]
        viewer = getattr(api, method)(path, json=body, headers=api.viewer)
        assert viewer.status_code == 403 and "needs operator" in viewer.json()["error"]
    d = api.get(f"/api/incidents/{i}").json()
    assert d["state"] == "triggered" and [e["kind"] for e in d["timeline"]] == ["created", "assigned", "rca"]
    assert api.get("/api/silences").json() == []


def test_a_signed_ack_link_asks_on_get_acts_on_post_once_and_a_tampered_token_fails(api):
    from metricloop.notify.signing import secret_key_for, sign_action

    ws = api.ws
    i, other = api.ids["SH-1"], api.ids["SH-2"]
    key = secret_key_for(ws)
    token = sign_action(i, "ack", key=key)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for method in ("get", "post"):  # refused alike whether opened or confirmed
        r = getattr(api, method)(f"/api/incidents/{i}/ack", params={"token": tampered})
        assert r.status_code == 400 and "signature is not valid" in r.text and "链接的签名无效" in r.text
        r = getattr(api, method)(f"/api/incidents/{other}/ack", params={"token": token})
        assert r.status_code == 400 and "belongs to another incident" in r.text
        r = getattr(api, method)(f"/api/incidents/{i}/ack", params={"token": sign_action(i, "resolve", key=key)})
        assert r.status_code == 400 and "is for &#39;resolve&#39;" in r.text
        expired = sign_action(i, "ack", key=key, ttl_seconds=-1)
        r = getattr(api, method)(f"/api/incidents/{i}/ack", params={"token": expired})
        assert r.status_code == 400 and "expired" in r.text
    assert api.get(f"/api/incidents/{i}").json()["state"] == "triggered"
    r = api.get(f"/api/incidents/{i}/ack", params={"token": token})  # what a mail scanner does: nothing changes
    assert r.status_code == 200 and "认领这个工单？" in r.text and r.headers["content-type"].startswith("text/html")
    assert api.get(f"/api/incidents/{i}").json()["state"] == "triggered"
    r = api.post(f"/api/incidents/{i}/ack", params={"token": token})
    assert r.status_code == 200 and f"工单 #{i} 已认领" in r.text
    assert api.get(f"/api/incidents/{i}").json()["state"] == "acknowledged"
    r = api.post(f"/api/incidents/{i}/ack", params={"token": token})  # a link acts once
    assert r.status_code == 410 and "这个链接已经用过了" in r.text
    r = api.post(f"/api/incidents/{i}/ack", params={"token": sign_action(i, "ack", key=key)})  # another: too late
    assert r.status_code == 409 and "不能再认领" in r.text
    assert [e.actor for e in timeline(ws, i) if e.kind == "acknowledged"] == ["link"]
    resolve = sign_action(i, "resolve", key=key)
    r = api.post(f"/api/incidents/{i}/resolve", params={"token": resolve, "lang": "en"},
                 data={"root_cause": "stock-out of Drinks", "note": "restocked"})  # fmt: skip
    assert r.status_code == 200 and f"Incident #{i} resolved" in r.text
    d = api.get(f"/api/incidents/{i}").json()
    assert (d["state"], d["root_cause"], d["resolution"]) == ("resolved", "stock-out of Drinks", "restocked")


def test_runs_and_outbox(api):
    (run,) = api.get("/api/runs").json()
    assert run["monitor"] == "shop_sales" and run["status"] == "ok" and run["anomalies"] == 4
    assert run["series_evaluated"] == 4 and run["started_at"] and run["finished_at"]
    assert api.get("/api/runs", params={"status": "failed"}).json() == []
    assert api.get("/api/runs", params={"monitor": "nope"}).json() == []
    detail = api.get(f"/api/runs/{run['id']}").json()
    assert sorted(a["slice"] for a in detail["anomalies_found"]) == sorted(f"store={s}" for s in STORES)
    assert api.get("/api/runs/999").status_code == 404
    rows = api.get("/api/outbox").json()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"pending"} and {r["event"] for r in rows} == {"created"}
    assert all(r["idempotency_key"].startswith("incident:") for r in rows)
    assert api.get("/api/outbox", params={"status": "pending"}).json() == rows
    bad = api.get("/api/outbox", params={"status": "lost"})
    assert bad.status_code == 400 and "unknown outbox status 'lost'" in bad.json()["error"]
    one = api.get(f"/api/outbox/{rows[0]['id']}").json()
    assert one["payload"]["incident"]["id"] == rows[0]["incident_id"]
    assert api.get("/api/outbox/counts").json()["pending"] == 4


def test_silences_crud(api):
    r = api.post(
        "/api/silences",
        json={"matchers": ["store=~BJ-.*", "severity=P1"], "reason": "refit", "duration_minutes": 90},
        headers=api.op,
    )
    assert r.status_code == 201
    sid = r.json()["id"]
    assert r.json()["created_by"] == "zhang.wei@shop.test" and r.json()["reason"] == "refit"
    assert [s["id"] for s in api.get("/api/silences", params={"active": True}).json()] == [sid]
    bad = api.post(
        "/api/silences", json={"matchers": ["store=~("], "reason": "x", "duration_minutes": 5}, headers=api.op
    )
    assert bad.status_code == 422 and "invalid regular expression" in bad.json()["error"]
    assert bad.json()["where"] == "matchers"
    none = api.post("/api/silences", json={"matchers": [], "reason": "x", "duration_minutes": 5}, headers=api.op)
    assert none.status_code == 422
    forever = api.post("/api/silences", json={"matchers": ["store=SH-1"], "reason": "x"}, headers=api.op)
    assert forever.status_code == 400 and "ends_at or a duration" in forever.json()["error"]
    gone = api.delete(f"/api/silences/{sid}", headers=api.op)
    assert gone.status_code == 200 and gone.json()["expired_early_at"]
    assert api.get("/api/silences", params={"active": True}).json() == []
    assert len(api.get("/api/silences").json()) == 1
    assert api.delete("/api/silences/999", headers=api.op).status_code == 404


def test_routes_test_and_kpis(api):
    r = api.post("/api/routes/test", json={"labels": {"monitor": "shop_sales", "store": "BJ-1", "severity": "P1"}})
    assert r.status_code == 200
    d = r.json()
    assert d["routes"] == ["store_managers"] and d["assignee"] == STORES["BJ-1"][1]
    assert d["team"] == "store operations" and d["channels"] == ["hook"]
    assert "manager_email of store=BJ-1 in stores" in d["reasons"][0]
    nobody = api.post("/api/routes/test", json={"labels": {"monitor": "other"}}).json()
    assert nobody["routes"] == [] and nobody["channels"] == [] and "no route matched" in nobody["reasons"][0]
    assert api.post("/api/routes/test", json={"labels": {"store": 3}}).status_code == 422
    api.post(f"/api/incidents/{api.ids['SH-1']}/ack", headers=api.op)
    k = api.get("/api/incidents/kpis").json()
    assert k["incidents"] == 4 and k["by_state"] == {"triggered": 3, "acknowledged": 1}
    assert k["mtta_seconds"] is not None and k["mttr_seconds"] is None
