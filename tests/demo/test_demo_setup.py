"""What the demo's set-up leaves a new user: an API token."""

from __future__ import annotations

import stat

import pytest
from fastapi.testclient import TestClient

from metricloop.app import create_app
from metricloop.auth.service import list_tokens
from metricloop.demo.setup import demo_token, install_demo
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


def test_the_demo_leaves_an_operator_token_for_the_api(installed):
    ws, summary = installed
    path = summary["token_file"]
    assert path == ws.home / ".api_token" and stat.S_IMODE(path.stat().st_mode) == 0o600
    auth = {"Authorization": f"Bearer {path.read_text().strip()}"}
    client = TestClient(create_app(ws))
    assert client.get("/api/incidents").status_code == 401
    listed = client.get("/api/incidents", headers=auth)
    assert listed.status_code == 200 and listed.json()
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
