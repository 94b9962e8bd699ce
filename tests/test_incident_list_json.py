"""The incident list's JSON (built by the database on SQLite, spliced from the stored JSON elsewhere) is exactly
`incident_dict` of every incident, in order, whatever the rows hold; and the API serves it with its filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.db.engine import open_database
from metricloop.incidents.models import Incident
from metricloop.incidents.views import incident_dict, incident_query, incidents_json, list_incidents
from metricloop.workspace import Workspace

T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


def _incidents() -> list[Incident]:
    odd = 'quote " backslash \\ newline \n tab \t <script>&amp; 断货 emoji 📉 \u2028'
    return [
        Incident(title="GMV 下跌：SH-003", state="triggered", severity="P1", monitor="m", metric="gmv",
                 group_key="a", slices=["store=SH-003"], labels={"store": "SH-003", "区域": "华东"},
                 summary={"explanation_zh": "比预期低 40%", "actual": 12.5, "band": [1.0, None], "nested": {"x": []}},
                 channels=["mail", "钉钉"], created_at=T0, ack_due_at=T0 + timedelta(minutes=15)),
        Incident(title=odd, state="acknowledged", severity="P9", monitor="m", metric="orders", group_key="b",
                 slices=[], labels={}, summary={}, channels=[], root_cause=odd, resolution="",
                 created_at=T0 + timedelta(seconds=1, microseconds=123456),
                 acknowledged_at=T0 + timedelta(microseconds=7), ack_breached=True, resolve_breached=True),
        Incident(title="resolved", state="resolved", severity="P3", monitor="n", metric="gmv", group_key="c",
                 created_at=T0 - timedelta(days=400), resolved_at=T0, reviewed_at=T0, resolve_due_at=T0,
                 escalation_level=2, summary={"k": 1e-7, "big": 12345678901234567890}),
    ]  # fmt: skip


def test_the_list_json_is_incident_dict_of_each_row_in_order(db_url):
    db = open_database(db_url)
    with db.session() as s:
        s.add_all(_incidents())
    with db.session() as s:
        for filters in ({}, {"state": "triggered,resolved"}, {"metric": "gmv", "limit": 1, "offset": 1},
                        {"within": {"orders"}}, {"severity": "P3"}, {"within": set()}):  # fmt: skip
            expected = [incident_dict(r) for r in list_incidents(s, **filters)]
            assert json.loads(incidents_json(s, incident_query(**filters))) == expected, filters
        assert len(json.loads(incidents_json(s, incident_query()))) == 3
    db.engine.dispose()


def test_the_api_list_serves_it(tmp_path):
    ws = Workspace(tmp_path)
    with ws.db.session() as s:
        s.add_all(_incidents())
        token = create_token(s, name="t", role="viewer")
    client = TestClient(create_app(ws))
    r = client.get("/api/incidents", params={"state": "acknowledged"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    (one,) = r.json()
    assert one["ack_breached"] is True and one["colour"] == "" and "📉" in one["title"]
    assert one["created_at"] == "2026-11-30T01:00:01.123456+00:00" and one["acknowledged_at"].endswith(".000007+00:00")
