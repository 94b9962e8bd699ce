"""Every /api route needs an API token (a viewer reads, an operator changes things), except the few that carry
their own permission or none is needed: health, the API docs, signed message links and the demo inbox.
(The confirmation of a signed link, a POST to the link's URL with its ?token=, is not in the OpenAPI document: the
API's POST on that path, which needs an operator's token, is.)"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from metricloop.app import create_app
from metricloop.auth.service import create_token, revoke
from metricloop.incidents.models import Incident
from metricloop.settings import Settings

# (method, path) that answer without an API token, and why
PUBLIC = {
    ("GET", "/api/health"): "load balancers and uptime checks",
    ("GET", "/api/incidents/{incident_id}/ack"): "the signed link in a message is the permission",
    ("GET", "/api/incidents/{incident_id}/resolve"): "the signed link in a message is the permission",
    ("POST", "/api/inbox/{box}"): "the demo's channels deliver here (signed when METRICLOOP_INBOX_SECRET is set)",
}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app_ws(make_ws):
    ws = make_ws()
    with ws.db.session() as s:
        s.add(Incident(id=1, title="门店 S012 饮料销售额下降", severity="P1", monitor="m", metric="gmv", group_key="g"))
        ws.tokens = {role: create_token(s, name=role, role=role, user=f"{role}@shop.test") for role in
                     ("viewer", "operator", "admin")}  # fmt: skip
    return ws


@pytest.fixture
def anonymous(app_ws):
    return TestClient(create_app(app_ws))


def api_routes(client) -> list[tuple[str, str]]:
    """Every (method, path) under /api, as the OpenAPI document lists them (all of them are in it)."""
    paths = client.get("/openapi.json").json()["paths"]
    return sorted((m.upper(), p) for p, ops in paths.items() if p.startswith("/api") for m in ops)


def test_every_api_route_needs_a_token_but_the_public_few(anonymous):
    routes = api_routes(anonymous)
    assert set(PUBLIC) <= set(routes)  # the exceptions exist (a renamed route must not stay open by mistake)
    guarded = [r for r in routes if r not in PUBLIC]
    assert len(guarded) >= 25
    for method, path in guarded:
        r = anonymous.request(method, re.sub(r"\{[^}]+\}", "1", path))
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json()["error"].startswith("this call needs an API token"), (method, path)


def test_a_read_without_a_token_says_what_is_missing(anonymous):
    r = anonymous.get("/api/incidents")
    assert r.status_code == 401
    assert r.json() == {
        "error": "this call needs an API token (any role): send 'Authorization: Bearer <token>' "
        "(create one with `metricloop tokens create NAME --role viewer`)",
        "where": None,
    }
    r = anonymous.post("/api/incidents/1/ack")
    assert r.status_code == 401 and "(role operator or admin)" in r.json()["error"]


def test_the_public_routes_answer_without_a_token(app_ws, anonymous):
    from metricloop.notify.signing import secret_key_for, sign_action

    assert anonymous.get("/api/health").json()["status"] == "ok"
    assert anonymous.get("/docs").status_code == 200
    spec = anonymous.get("/openapi.json").json()
    assert "/api/incidents" in spec["paths"]
    assert anonymous.post("/api/inbox/ops", json={"hello": 1}).status_code == 202
    forged = anonymous.get("/api/incidents/1/ack", params={"token": "forged"})
    assert forged.status_code == 400 and "malformed" in forged.text  # judged by its signature, not by an API token
    signed = sign_action(1, "ack", key=secret_key_for(app_ws))
    link = anonymous.get("/api/incidents/1/ack", params={"token": signed, "lang": "en"})
    assert link.status_code == 200 and "Acknowledge this incident?" in link.text  # asks; acting is a POST
    done = anonymous.post("/api/incidents/1/ack", params={"token": signed, "lang": "en"})
    assert done.status_code == 200 and "Incident #1 acknowledged" in done.text
    view = sign_action(1, "view", key=secret_key_for(app_ws))
    page = anonymous.get("/incidents/1", params={"token": view})  # the page of a message's link: no API token
    assert page.status_code == 200 and "门店 S012 饮料销售额下降" in page.text


def test_a_viewer_reads_and_cannot_acknowledge(app_ws, anonymous):
    viewer = bearer(app_ws.tokens["viewer"])
    r = anonymous.get("/api/incidents", headers=viewer)
    assert r.status_code == 200 and [i["id"] for i in r.json()] == [1]
    assert anonymous.get("/api/incidents/1", headers=viewer).json()["state"] == "triggered"
    assert anonymous.get("/api/inbox", headers=viewer).status_code == 200
    r = anonymous.post("/api/incidents/1/ack", headers=viewer)
    assert r.status_code == 403 and r.json()["error"] == "token 'viewer' has role viewer; this call needs operator"
    assert anonymous.get("/api/incidents/1", headers=viewer).json()["state"] == "triggered"


def test_an_operator_reads_and_acknowledges_as_its_user(app_ws, anonymous):
    operator = {"X-Api-Token": app_ws.tokens["operator"]}  # the header for clients that cannot send Bearer
    assert anonymous.get("/api/outbox", headers=operator).status_code == 200
    r = anonymous.post("/api/incidents/1/ack", headers=operator)
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert r.json()["assignee"] == "operator@shop.test"


def test_a_forged_or_revoked_token_is_refused(app_ws, anonymous):
    r = anonymous.get("/api/metrics", headers=bearer("ml_forged"))
    assert r.status_code == 401 and r.json()["error"] == "the API token is not valid (unknown or revoked)"
    with app_ws.db.session() as s:
        revoke(s, name="viewer")
    r = anonymous.get("/api/metrics", headers=bearer(app_ws.tokens["viewer"]))
    assert r.status_code == 401 and "not valid" in r.json()["error"]


def test_the_token_is_looked_up_once_per_request(app_ws, anonymous, monkeypatch):
    """A write route on a router that needs a viewer checks the token once, not once per requirement."""
    import metricloop.auth.service as auth

    calls = []
    real = auth.authenticate
    monkeypatch.setattr(auth, "authenticate", lambda s, t: calls.append(t) or real(s, t))
    r = anonymous.post("/api/outbox/999/retry", headers=bearer(app_ws.tokens["operator"]))
    assert r.status_code == 404 and calls == [app_ws.tokens["operator"]]


def test_public_reads_open_reads_only(app_ws):
    ws = app_ws
    ws.settings = Settings(home=ws.home, db=ws.settings.db, public_reads=True)
    client = TestClient(create_app(ws))
    assert client.get("/api/incidents").status_code == 200
    assert client.get("/api/metrics", headers=bearer("ml_forged")).status_code == 401  # a bad token is still bad
    r = client.post("/api/incidents/1/ack")
    assert r.status_code == 401 and "(role operator or admin)" in r.json()["error"]


def test_the_api_docs_offer_the_token_on_every_guarded_route(anonymous):
    spec = anonymous.get("/openapi.json").json()
    for method, path in api_routes(anonymous):
        security = spec["paths"][path][method.lower()].get("security")
        if (method, path) in PUBLIC:
            assert not security, (method, path)
        else:
            assert security == [{"HTTPBearer": []}], (method, path)
