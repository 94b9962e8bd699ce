"""Users of the console, their roles and domains, and API tokens that belong to a user (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging

import pytest
from console_helpers import open_sales_incident
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from metricloop.app import create_app
from metricloop.auth import users
from metricloop.auth.models import User
from metricloop.auth.service import Forbidden, create_token
from metricloop.errors import MetricloopError

PASSWORD = "correct horse battery"


@pytest.fixture
def world(shop):
    """A sales incident; users per role; a token for each user and one token without a user."""
    ws, inc = open_sales_incident(shop)
    tokens = {}
    with ws.db.session() as s:
        for name, role, domains in (
            ("ana", "operator", ["sales"]),
            ("vic", "viewer", ["sales", "fulfilment"]),
            ("lou", "operator", ["fulfilment"]),
            ("root", "admin", []),
        ):
            u = users.add_user(s, name=name, password=PASSWORD, role=role, domains=domains)
            tokens[name] = create_token(s, name=f"{name}-t", role="viewer", user=name, user_id=u.id)
        tokens["legacy"] = create_token(s, name="legacy", role="operator")
    return ws, inc, tokens, TestClient(create_app(ws))


def h(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_password_is_stored_only_as_an_argon2_hash_and_never_logged(ws, caplog):
    caplog.set_level(logging.DEBUG)
    with ws.db.session() as s:
        users.add_user(s, name="王芳", password=PASSWORD, role="operator", domains="sales, service", email="w@x.cn")
    with ws.db.session() as s:
        row = s.scalar(select(User).where(User.name == "王芳"))
        assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
        assert row.domains == ["sales", "service"] and row.display_name == "王芳"
        dump = " ".join(str(r) for r in s.execute(text("SELECT * FROM users")).all())
    assert PASSWORD not in dump
    assert PASSWORD not in caplog.text
    with ws.db.session() as s:
        assert users.check_login(s, "王芳", PASSWORD).name == "王芳"
    with ws.db.session() as s, pytest.raises(users.LoginError, match="wrong user name or password"):
        users.check_login(s, "王芳", "not the password")


def test_bad_user_input_is_refused_with_what_and_where(ws):
    with ws.db.session() as s:
        with pytest.raises(MetricloopError, match="role must be one of viewer, operator, admin") as e:
            users.add_user(s, name="x", password=PASSWORD, role="boss")
        assert e.value.where == "role"
        with pytest.raises(MetricloopError, match="8 to 1024 characters") as e:
            users.add_user(s, name="x", password="short")
        assert e.value.where == "password"
        with pytest.raises(MetricloopError, match="printable") as e:
            users.add_user(s, name="a\x00b", password=PASSWORD)
        users.add_user(s, name="x", password=PASSWORD)
        with pytest.raises(MetricloopError, match="already exists"):
            users.add_user(s, name="x", password=PASSWORD)


def test_nobody_raises_their_own_role(ws):
    with ws.db.session() as s:
        me = users.add_user(s, name="op", password=PASSWORD, role="operator")
        with pytest.raises(Forbidden, match="changing roles needs admin"):
            users.set_role(s, name="op", role="admin", by=me)
    with ws.db.session() as s:
        assert users.get_user(s, "op").role == "operator"


def test_ten_wrong_passwords_lock_the_login(ws):
    with ws.db.session() as s:
        users.add_user(s, name="ana", password=PASSWORD)
    for _ in range(users.MAX_FAILED):
        with ws.db.session() as s, pytest.raises(users.LoginError):
            users.check_login(s, "ana", "wrong password!")
    with ws.db.session() as s, pytest.raises(users.RateLimited, match="too many wrong passwords"):
        users.check_login(s, "ana", PASSWORD)  # even the right password, for a while


def test_a_token_carries_its_users_role_and_domains(world):
    ws, inc, tokens, client = world
    # lou works in fulfilment: the sales incident and the sales metric do not exist for them
    r = client.get(f"/api/incidents/{inc.id}", headers=h(tokens["lou"]))
    assert r.status_code == 404 and r.json()["error"] == f"no incident #{inc.id}"
    assert client.get("/api/incidents", headers=h(tokens["lou"])).json() == []
    assert [m["name"] for m in client.get("/api/metrics", headers=h(tokens["lou"])).json()] == ["deliveries"]
    assert client.get("/api/metrics/sales", headers=h(tokens["lou"])).status_code == 404
    assert client.get("/api/metrics/sales/series", headers=h(tokens["lou"])).status_code == 404
    assert client.get("/api/monitors/shop_sales", headers=h(tokens["lou"])).status_code == 404
    assert client.post(f"/api/incidents/{inc.id}/ack", headers=h(tokens["lou"])).status_code == 404
    # vic reads sales but is a viewer (the token was made "viewer" too; the user's role is what counts)
    assert client.get(f"/api/incidents/{inc.id}", headers=h(tokens["vic"])).status_code == 200
    assert client.post(f"/api/incidents/{inc.id}/ack", headers=h(tokens["vic"])).status_code == 403
    # ana is a sales operator: her token was created "viewer", yet acts as the operator she is
    r = client.post(f"/api/incidents/{inc.id}/ack", headers=h(tokens["ana"]))
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    # an admin sees every domain; a token without a user keeps working as before (its role, all domains)
    assert len(client.get("/api/metrics", headers=h(tokens["root"])).json()) == 2
    assert len(client.get("/api/incidents", headers=h(tokens["legacy"])).json()) == 1
    r = client.post(f"/api/incidents/{inc.id}/comment", json={"text": "on it"}, headers=h(tokens["legacy"]))
    assert r.status_code == 200


def test_a_disabled_users_token_stops_working(world):
    ws, inc, tokens, client = world
    with ws.db.session() as s:
        users.disable(s, name="ana")
    r = client.get("/api/incidents", headers=h(tokens["ana"]))
    assert r.status_code == 401 and "disabled" in r.json()["error"]


def test_demo_users_one_per_role_and_a_logistics_operator(ws):
    from metricloop.demo.setup import demo_users

    made = demo_users(ws)
    assert [(n, r) for n, r, _ in made] == [
        ("admin", "admin"), ("operator", "operator"), ("viewer", "viewer"), ("logistics", "operator")
    ]  # fmt: skip
    assert demo_users(ws) == []  # installed again: nothing twice
    with ws.db.session() as s:
        assert users.check_login(s, "logistics", "logistics-demo").domains == ["fulfilment", "inventory"]


def test_the_users_commands_never_echo_a_password(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from metricloop.cli import app

    monkeypatch.delenv("METRICLOOP_DB", raising=False)
    runner = CliRunner(env={"NO_COLOR": "1", "METRICLOOP_HOME": None})
    home = tmp_path / "w"

    def cli(*args, stdin=None, code=0):
        r = runner.invoke(app, ["-w", str(home), *args], input=stdin)
        assert r.exit_code == code, r.output
        assert PASSWORD not in r.output and "new secret pass" not in r.output
        return r.output

    cli("init", str(home))
    out = cli("users", "add", "王芳", "--role", "operator", "--domains", "sales,service", "--password-stdin",
              stdin=PASSWORD + "\n")  # fmt: skip
    assert "user '王芳' (operator; sales, service)" in out
    cli("users", "add", "bo", "--display-name", "Bo Li", stdin=f"{PASSWORD}\n{PASSWORD}\n")  # the hidden prompt
    assert "refused" not in cli("users", "set-role", "bo", "admin")
    cli("users", "set-domains", "王芳", "fulfilment")
    out = cli("users", "list")
    assert "王芳" in out and "fulfilment" in out and "Bo Li" in out and "all" in out
    cli("users", "reset-password", "王芳", "--password-stdin", stdin="new secret pass\n")
    assert "no user named 'nobody'" in cli("users", "reset-password", "nobody", "--password-stdin", code=2)
    assert "role must be one of" in cli("users", "set-role", "bo", "boss", code=2)
    out = cli("users", "token", "王芳", "wang-laptop")
    assert out.strip().splitlines()[-1].startswith("ml_")
