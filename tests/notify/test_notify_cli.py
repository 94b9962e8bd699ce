"""`metricloop outbox …` on a real workspace."""

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from metricloop.cli import app
from metricloop.monitors.schemas import ActionSpec
from metricloop.notify.actions import enqueue_action
from metricloop.notify.models import Notification


@pytest.fixture
def cli_ws(make_workspace, receiver, apply_defs, monkeypatch):
    ws = make_workspace()
    apply_defs(ws, f"""
channels:
  - name: ops_hook
    type: webhook
    url: {receiver.url}/hook
    max_attempts: 1
""")  # fmt: skip
    monkeypatch.setenv("METRICLOOP_USER", "boss@example.com")
    return ws


def run(ws, *args):
    result = CliRunner().invoke(app, ["--workspace", str(ws.home), "outbox", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_list_show_dispatch_and_retry(cli_ws, receiver, queue):
    key = queue(cli_ws, channel="ops_hook", max_attempts=1)
    code, out = run(cli_ws, "list")
    assert code == 0 and "ops_hook" in out and "pending 1" in out

    receiver.status = 500
    code, out = run(cli_ws, "dispatch", "--once")
    assert code == 1 and "dead 1" in out  # one attempt allowed: dead at once; exit 1 says so

    code, out = run(cli_ws, "list", "--status", "dead", "--format", "json")
    listed = json.loads(out)
    assert code == 0 and listed["counts"]["dead"] == 1
    [row] = listed["rows"]
    assert row["idempotency_key"] == key and "HTTP 500" in row["last_error"]

    code, out = run(cli_ws, "show", str(row["id"]))
    shown = json.loads(out)
    assert code == 0 and shown["payload"]["incident"]["id"] == row["incident_id"] and shown["body"]

    receiver.status = 200
    code, out = run(cli_ws, "retry", str(row["id"]))
    assert code == 0 and "pending again" in out
    code, out = run(cli_ws, "dispatch", "--once")
    assert code == 0 and "sent 1" in out
    assert receiver.keys() == [key]

    code, out = run(cli_ws, "retry", str(row["id"]))
    assert code == 2 and "only a dead row can be retried" in out
    code, out = run(cli_ws, "list", "--incident", str(row["incident_id"] + 1))
    assert code == 0 and "no outbox rows match" in out
    code, out = run(cli_ws, "list", "--status", "bogus")
    assert code == 2 and "unknown outbox status 'bogus'" in out
    code, out = run(cli_ws, "show", "999")
    assert code == 2 and "no outbox row #999" in out


def test_approve_and_reject_from_the_command_line(cli_ws, receiver, new_incident):
    action = ActionSpec(name="ticket", url=f"{receiver.url}/oa", require_approval=True,
                        approvers=["boss@example.com"], payload={"t": "{{ incident.title }}"})  # fmt: skip
    with cli_ws.db.session() as s:
        first = enqueue_action(s, incident=new_incident(s), action=action).id
        second = enqueue_action(s, incident=new_incident(s), action=action).id
    code, out = run(cli_ws, "approve", str(first))
    assert code == 0 and "approved" in out
    code, out = run(cli_ws, "reject", str(second), "--reason", "duplicate ticket")
    assert code == 0 and "rejected" in out
    code, _ = run(cli_ws, "dispatch", "--once")
    assert code == 0 and [r.path for r in receiver.requests] == ["/oa"]
    with cli_ws.db.session() as s:
        assert [n.status for n in s.scalars(select(Notification).order_by(Notification.id))] == ["sent", "rejected"]
