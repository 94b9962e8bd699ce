"""The knowledge base on a real shop (SQLite and PostgreSQL state): a resolution records its category, cause and
actions; the next incident like it finds it; search, edit (versioned) and export; and the bad input of each."""

from __future__ import annotations

import csv
import json
import re
from datetime import date

import pytest
from fastapi.testclient import TestClient
from loop_helpers import FOUR_DROPS_LOOP, Effect, monitor_yaml, morning, outbox, timeline

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.limits import MAX_TEXT
from metricloop.monitors.service import run_monitor

# SH-1 sells half its usual on 11-02 (judged 11-03) and again on 11-16 (judged 11-17); BJ-2 drops on 11-16 too.
PAST = Effect(date(2026, 11, 2), date(2026, 11, 2), 0.4, {"store": "SH-1"})
REPEAT = Effect(date(2026, 11, 16), date(2026, 11, 16), 0.4, {"store": "SH-1"})
OTHER = Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "BJ-2"})
MONITOR = monitor_yaml(
    detector={"detector": "change", "offset": "last_week", "max_pct": 0.05, "direction": "down"},
    slicing={"dimensions": ["store"], "total": False},
    group="none",
)


@pytest.fixture
def kb(shop):
    ws = shop(effects=[PAST, REPEAT, OTHER], extra=MONITOR + FOUR_DROPS_LOOP)  # a webhook channel: messages
    at = morning("2026-11-03")
    assert run_monitor(ws, "shop_sales", at=at, now=at).status == "ok"  # opened that morning
    with ws.db.session() as s:
        operator = create_token(s, name="ops", role="operator", user="zhang.wei@shop.test")
        viewer = create_token(s, name="boss", role="viewer")
    client = TestClient(create_app(ws), headers={"Authorization": f"Bearer {viewer}"})
    client.ws, client.op = ws, {"Authorization": f"Bearer {operator}"}
    (past,) = client.get("/api/incidents").json()
    assert past["slices"] == ["store=SH-1"]
    client.past = past["id"]
    return client


def _resolve_past(kb, **extra):
    body = {"root_cause": "SH-1 生鲜断货 (Fresh out of stock)", "note": "restocked", **extra}
    r = kb.post(f"/api/incidents/{kb.past}/resolve", json=body, headers=kb.op)
    assert r.status_code == 200, r.text
    return kb.get(f"/api/incidents/{kb.past}").json()["knowledge"]


def test_a_resolution_records_category_cause_actions_and_who(kb):
    entry = _resolve_past(kb, category="stock_out", actions="从华东仓紧急调拨补货 (emergency restock from East)")
    assert entry["category"] == "stock_out" and entry["category_source"] == "given"
    assert entry["category_zh"] == "断货" and entry["category_en"] == "stock-out"
    assert entry["cause"] == "SH-1 生鲜断货 (Fresh out of stock)"
    assert entry["actions"].startswith("从华东仓紧急调拨补货")
    assert entry["resolved_by"] == "zhang.wei@shop.test" and entry["incident_id"] == kb.past
    assert entry["slices"] == ["store=SH-1"] and entry["metric"] == "sales" and entry["version"] == 1
    resolved = [e for e in timeline(kb.ws, kb.past) if e.kind == "resolved"][0]
    assert resolved.data["category"] == "stock_out" and resolved.data["knowledge_entry"] == entry["id"]


def test_an_old_client_without_a_category_still_resolves(kb):
    entry = _resolve_past(kb)  # no category, no actions: the words "断货 … out of stock" point at stock_out
    assert entry["category"] == "stock_out" and entry["category_source"] == "inferred"
    assert entry["actions"] == "restocked"  # the note stands in for the actions
    kb.post(f"/api/incidents/{kb.past}/reopen", json={}, headers=kb.op)
    r = kb.post(f"/api/incidents/{kb.past}/resolve", json={"root_cause": "不知道 unknown", "note": "waited"},
                headers=kb.op)
    again = kb.get(f"/api/incidents/{kb.past}").json()["knowledge"]
    assert r.status_code == 200 and again["category"] == "other" and again["category_source"] == "default"
    assert again["id"] == entry["id"] and again["version"] == 2  # resolved again: a new version, not a new entry
    assert [v["category"] for v in again["versions"]] == ["stock_out"]


def test_an_unknown_category_is_refused_and_changes_nothing(kb):
    r = kb.post(f"/api/incidents/{kb.past}/resolve", json={"root_cause": "x", "category": "gremlins"},
                headers=kb.op)
    assert r.status_code == 400 and r.json()["where"] == "category"
    assert "'gremlins' is not a root-cause category: use one of stock_out, outage" in r.json()["error"]
    assert kb.get(f"/api/incidents/{kb.past}").json()["state"] == "triggered"
    assert kb.get("/api/knowledge").json() == []
    by_name = kb.post(f"/api/incidents/{kb.past}/resolve", json={"root_cause": "x", "category": "供应商或承运商"},
                      headers=kb.op)  # a category's zh (or en) name is taken for its key
    assert by_name.status_code == 200
    assert kb.get(f"/api/incidents/{kb.past}").json()["knowledge"]["category"] == "supplier_carrier"


def test_the_repeat_finds_the_past_incident_first_with_what_was_done(kb):
    _resolve_past(kb, category="stock_out", actions="补货")
    at = morning("2026-11-17")
    assert run_monitor(kb.ws, "shop_sales", at=at, now=at).status == "ok"
    now = {i["slices"][0]: i["id"] for i in kb.get("/api/incidents", params={"state": "triggered"}).json()}
    assert set(now) == {"store=SH-1", "store=BJ-2"}
    similar = kb.get(f"/api/incidents/{now['store=SH-1']}").json()["similar"]
    assert similar[0]["incident_id"] == kb.past
    assert {"code": "same_slice", "slice": "store=SH-1"} in similar[0]["reasons"]
    # resolved now (the API's clock): "how long it took" is from its opening that morning until now
    assert re.fullmatch(r"上次类似：2026-11-03 SH-1 断货，补货后 \d+ 天恢复", similar[0]["summary_zh"])
    en = similar[0]["summary_en"]
    assert re.fullmatch(r"Last similar: 2026-11-03 SH-1 stock-out, 补货, recovered in \d+ days", en)
    other = kb.get(f"/api/incidents/{now['store=BJ-2']}").json()["similar"]  # another store: still similar, lower
    assert other and other[0]["incident_id"] == kb.past and other[0]["score"] < similar[0]["score"]
    # the message that announced it says what was done last time (the best match of the same metric)
    (created,) = [n for n in outbox(kb.ws, incident_id=now["store=SH-1"]) if n.event == "created"]
    assert similar[0]["summary_zh"] in created.body
    assert "上次类似" not in next(n.body for n in outbox(kb.ws, incident_id=kb.past) if n.event == "created")
    # the past incident's own page does not list itself
    assert kb.get(f"/api/incidents/{kb.past}").json()["similar"] == []


def test_search_in_chinese_and_english_paged(kb):
    _resolve_past(kb, category="stock_out", actions="从华东仓紧急调拨补货")
    for q in ("断货", "stock-out", "STOCK", "补货", "ｓｈ－１"):  # zh, en, any case, full-width characters
        found = kb.get("/api/knowledge", params={"q": q}).json()
        assert [e["incident_id"] for e in found] == [kb.past], q
        assert found[0]["score"] > 0 and found[0]["matched"]
    assert kb.get("/api/knowledge", params={"q": "台风 typhoon"}).json() == []
    assert kb.get("/api/knowledge", params={"q": "断货", "offset": 1}).json() == []
    assert kb.get("/api/knowledge", params={"q": "断货", "category": "outage"}).json() == []
    assert len(kb.get("/api/knowledge").json()) == 1  # no q: the newest entries


def test_search_bad_input(kb):
    _resolve_past(kb, category="stock_out")
    for q, words in (("", "the query is empty"), ("   ", "the query is empty"), ("!!! ???", "has no letters")):
        r = kb.get("/api/knowledge", params={"q": q})
        assert r.status_code == 400 and r.json()["where"] == "q" and words in r.json()["error"], q
    long = kb.get("/api/knowledge", params={"q": "x" * (MAX_TEXT + 1)})
    assert long.status_code == 422 and long.json()["where"] == "query.q"
    assert kb.get("/api/knowledge", params={"q": "断货", "category": "nope"}).json()["where"] == "category"
    assert kb.get("/api/knowledge", params={"limit": 0}).status_code == 422
    emoji = kb.get("/api/knowledge", params={"q": "🙂 断货 😀"})  # Unicode outside the scripts: ignored, not an error
    assert emoji.status_code == 200 and len(emoji.json()) == 1


def test_reads_respect_the_callers_domains(kb):
    from metricloop.auth.users import add_user

    _resolve_past(kb, category="stock_out")
    with kb.ws.db.session() as s:
        add_user(s, name="other", password="other-pass-1", role="operator", domains=["elsewhere"])
        from metricloop.auth.models import User

        uid = s.query(User).filter_by(name="other").one().id
        outsider = create_token(s, name="outsider", role="operator", user="other")
        from metricloop.auth.models import ApiToken

        s.query(ApiToken).filter_by(name="outsider").update({"user_id": uid})
    them = {"Authorization": f"Bearer {outsider}"}
    assert kb.get("/api/knowledge", params={"q": "断货"}, headers=them).json() == []
    entry_id = kb.get("/api/knowledge").json()[0]["id"]
    assert kb.get(f"/api/knowledge/{entry_id}", headers=them).status_code == 404
    assert kb.patch(f"/api/knowledge/{entry_id}", json={"cause": "x"}, headers=them).status_code == 404


def test_edit_keeps_every_version_and_refuses_bad_edits(kb):
    entry = _resolve_past(kb, category="stock_out", actions="补货")
    r = kb.patch(f"/api/knowledge/{entry['id']}", json={"category": "supplier_carrier", "reason": "供应商没送货"},
                 headers=kb.op)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["category"] == "supplier_carrier" and d["version"] == 2 and d["updated_by"] == "zhang.wei@shop.test"
    (v1,) = d["versions"]
    assert v1["version"] == 1 and v1["category"] == "stock_out" and v1["actions"] == "补货"
    assert v1["replaced_by"] == "zhang.wei@shop.test" and v1["reason"] == "供应商没送货" and v1["replaced_at"]
    kb.patch(f"/api/knowledge/{entry['id']}", json={"actions": "催供应商补发 🚚"}, headers=kb.op)
    d = kb.get(f"/api/knowledge/{entry['id']}").json()
    assert d["version"] == 3 and d["actions"] == "催供应商补发 🚚" and [v["version"] for v in d["versions"]] == [1, 2]
    # bad edits
    assert kb.patch("/api/knowledge/999999", json={"cause": "x"}, headers=kb.op).status_code == 404
    assert kb.patch("/api/knowledge/999999", json={"cause": "x"}, headers=kb.op).json()["error"] == \
        "no knowledge entry #999999"
    unknown = kb.patch(f"/api/knowledge/{entry['id']}", json={"category": "gremlins"}, headers=kb.op)
    assert unknown.status_code == 400 and unknown.json()["where"] == "category"
    empty = kb.patch(f"/api/knowledge/{entry['id']}", json={}, headers=kb.op)
    assert empty.status_code == 400 and "nothing to change" in empty.json()["error"]
    same = kb.patch(f"/api/knowledge/{entry['id']}", json={"actions": "催供应商补发 🚚"}, headers=kb.op)
    assert same.status_code == 400 and same.json()["where"] == "actions"
    long = kb.patch(f"/api/knowledge/{entry['id']}", json={"cause": "x" * (MAX_TEXT + 1)}, headers=kb.op)
    assert long.status_code == 422 and long.json()["where"] == "body.cause"
    assert kb.patch(f"/api/knowledge/{entry['id']}", json={"cause": "x"}).status_code == 403  # a viewer
    assert kb.get(f"/api/knowledge/{entry['id']}").json()["version"] == 3


def test_categories_are_governed_by_definitions(kb):
    from loop_helpers import apply_yaml

    names = [c["name"] for c in kb.get("/api/knowledge/categories").json()]
    assert names == ["stock_out", "outage", "data_issue", "promotion_price", "supplier_carrier", "external_event",
                     "other"]
    apply_yaml(kb.ws, """
root_causes:
  - name: weather
    title: {zh: 恶劣天气, en: bad weather}
    keywords: [台风, 暴雨, typhoon]
  - name: promotion_price
    title: {zh: 促销, en: promotion}
    retired: true
""", file="causes.yaml")
    listed = {c["name"]: c for c in kb.get("/api/knowledge/categories").json()}
    assert listed["weather"]["zh"] == "恶劣天气" and not listed["weather"]["stock"]
    assert listed["promotion_price"]["retired"]
    retired = kb.post(f"/api/incidents/{kb.past}/resolve", json={"root_cause": "x", "category": "promotion_price"},
                      headers=kb.op)
    assert retired.status_code == 400 and "'promotion_price' is retired" in retired.json()["error"]
    ok = kb.post(f"/api/incidents/{kb.past}/resolve", json={"root_cause": "台风封路", "category": "恶劣天气"},
                 headers=kb.op)
    assert ok.status_code == 200
    assert kb.get("/api/knowledge", params={"q": "typhoon"}).json()[0]["category"] == "weather"
    # an entry keeps a category retired after it, and can still be found by it
    apply_yaml(kb.ws, """
root_causes:
  - name: weather
    title: {zh: 恶劣天气, en: bad weather}
    retired: true
""", file="causes.yaml")
    assert [e["category"] for e in kb.get("/api/knowledge", params={"category": "weather"}).json()] == ["weather"]


def test_export_json_and_csv(kb, tmp_path):
    from metricloop.knowledge.service import export_entries

    entry = _resolve_past(kb, category="stock_out", actions="补货")
    kb.patch(f"/api/knowledge/{entry['id']}", json={"cause": "生鲜断货，供应商晚到"}, headers=kb.op)
    with kb.ws.db.session() as s:
        assert export_entries(s, kb.ws.catalog(), tmp_path / "kb.json") == 1
        assert export_entries(s, kb.ws.catalog(), tmp_path / "kb.csv") == 1
    doc = json.loads((tmp_path / "kb.json").read_text(encoding="utf-8"))
    (e,) = doc["entries"]
    assert e["cause"] == "生鲜断货，供应商晚到" and e["versions"][0]["cause"] == "SH-1 生鲜断货 (Fresh out of stock)"
    with (tmp_path / "kb.csv").open(encoding="utf-8-sig") as f:
        (row,) = list(csv.DictReader(f))
    assert row["cause"] == "生鲜断货，供应商晚到" and row["category_zh"] == "断货" and row["slices"] == "store=SH-1"
