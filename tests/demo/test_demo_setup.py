"""What the demo's set-up leaves a new user: the replay's incidents counted by kind, and an API token."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from metricloop.app import create_app
from metricloop.auth.service import list_tokens
from metricloop.demo.setup import demo_token, install_demo, replay_report
from metricloop.incidents.models import Incident
from metricloop.settings import Settings
from metricloop.workspace import Workspace


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A small demo (scale 0.01) with a week of mornings replayed: a metric incident and late-feed ones."""
    home = tmp_path_factory.mktemp("demo_setup")
    ws = Workspace.init(home, Settings(home=home, db=f"sqlite:///{home / 'state.db'}", user="tester"))
    summary = install_demo(ws, scale=0.01, seed=42, end="2026-11-20", replay_days=7)
    yield ws, summary
    ws.close()


def test_the_replay_counts_metric_and_data_quality_incidents_apart(installed):
    ws, summary = installed
    with ws.db.session() as s:
        rows = list(s.scalars(select(Incident)))
    kinds = [i.kind for i in rows if i.labels.get("history") != "demo"]  # the seeded past is not the replay's
    assert summary["history"] == len(rows) - len(kinds) >= 5
    opened = {"metric": kinds.count("metric"), "data_quality": kinds.count("data_quality")}
    # at scale 0.01 a store sells a handful of orders a day: the late feed is certain, metric alerts are not
    assert summary["incidents"] == opened and opened["data_quality"] >= 1
    runs = summary["replay"]
    # a run's details list only the metric incidents it opened: counting those alone missed the late feed
    assert sum(len(r.details.get("incidents", [])) for r in runs) == opened["metric"]
    assert replay_report(summary) == (
        f"replayed {len(runs)} monitor runs: {opened['metric']} metric incident{'s' * (opened['metric'] != 1)} and "
        f"{opened['data_quality']} data-quality incidents opened; {summary['history']} resolved past incidents seeded "
        "for the knowledge base"
    )


def test_the_replay_report_says_what_failed():
    summary = {"replay": [SimpleNamespace(status="failed")], "incidents": {"metric": 1, "data_quality": 0}}
    assert replay_report(summary) == (
        "replayed 1 monitor run: 1 metric incident and 0 data-quality incidents opened, 1 run failed"
    )
    assert (
        replay_report({"replay": []})
        == "replayed 0 monitor runs: 0 metric incidents and 0 data-quality incidents opened"
    )


def test_the_demo_leaves_an_operator_token_for_the_api(installed):
    ws, summary = installed
    path = summary["token_file"]
    assert path == ws.home / ".api_token" and stat.S_IMODE(path.stat().st_mode) == 0o600
    auth = {"Authorization": f"Bearer {path.read_text().strip()}"}
    client = TestClient(create_app(ws))
    assert client.get("/api/incidents").status_code == 401
    listed = client.get("/api/incidents", headers=auth)
    assert listed.status_code == 200
    assert len(listed.json()) == sum(summary["incidents"].values()) + summary["history"]
    first = listed.json()[0]["id"]
    r = client.post(f"/api/incidents/{first}/comment", json={"text": "looking"}, headers=auth)  # an operator acts
    assert r.status_code == 200
    assert client.get(f"/api/incidents/{first}", headers=auth).json()["timeline"][-1]["actor"] == "demo"


def test_installing_again_into_the_same_state_makes_a_new_token(installed):
    ws, summary = installed
    before = summary["token_file"].read_text()
    assert demo_token(ws) == summary["token_file"] and summary["token_file"].read_text() != before
    with ws.db.session() as s:
        assert [(t.name, t.role) for t in list_tokens(s)] == [("demo", "operator"), ("demo-2", "operator")]
