"""Actions: templated calls to other systems, delivered like webhooks, some only after approval."""

import pytest
from sqlalchemy import select

from loopback import verify_signature
from metricloop.errors import MetricloopError
from metricloop.incidents.models import Incident, IncidentEvent
from metricloop.monitors.schemas import ActionSpec
from metricloop.notify.actions import (
    ActionStateError,
    NotPermitted,
    action_applies,
    approve_action,
    check_action,
    enqueue_action,
    reject_action,
)
from metricloop.notify.dispatcher import dispatch_once
from metricloop.notify.models import Notification

SECRET = "action-s3cret"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("ML_TEST_ACTION_SECRET", SECRET)


def restock(receiver, **kw) -> ActionSpec:
    spec = {
        "name": "restock_request",
        "url": f"{receiver.url}/purchasing/restock",
        "severities": ["P1", "P2"],
        "payload": {
            "store": "{{ labels.store }}",
            "reason": "{{ incident.title }}",
            "expected": "{{ summary.expected | num }}",
            "items": [{"category": "Drinks", "quantity": 120}],
            "link": "{{ incident_url }}",
        },
        "headers": {"X-Requested-By": "metricloop"},
        "secret": "${ML_TEST_ACTION_SECRET}",
        "require_approval": True,
        "approvers": ["boss@example.com"],
    }
    spec.update(kw)
    return ActionSpec.model_validate(spec)


def open_with_action(ws, new_incident, action) -> tuple[int, int]:
    with ws.db.session() as s:
        inc = new_incident(s)
        row = enqueue_action(s, incident=inc, action=action, base_url="http://metricloop.test")
        return inc.id, row.id


def row(ws, row_id) -> Notification:
    with ws.db.session() as s:
        return s.get(Notification, row_id)


def timeline(ws, incident_id) -> list[tuple[str, str]]:
    with ws.db.session() as s:
        q = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id)
        return [(e.kind, e.actor) for e in s.scalars(q)]


def test_an_action_needing_approval_waits_then_is_delivered_signed(ws, receiver, new_incident):
    inc_id, row_id = open_with_action(ws, new_incident, restock(receiver))
    assert row(ws, row_id).status == "awaiting_approval"
    assert dispatch_once(ws).claimed == 0 and receiver.requests == []

    with ws.db.session() as s, pytest.raises(NotPermitted, match="intern@example.com may not approve"):
        approve_action(s, notification_id=row_id, actor="intern@example.com")
    assert row(ws, row_id).status == "awaiting_approval"

    with ws.db.session() as s:
        approve_action(s, notification_id=row_id, actor="boss@example.com")
    assert row(ws, row_id).approved_by == "boss@example.com"
    assert dispatch_once(ws).sent == 1

    [req] = receiver.requests
    assert req.method == "POST" and req.path == "/purchasing/restock"
    assert req.json() == {
        "store": "S012",
        "reason": "门店 S012 饮料销售额下降",
        "expected": "21,300",
        "items": [{"category": "Drinks", "quantity": 120}],
        "link": f"http://metricloop.test/incidents/{inc_id}",
    }
    assert req.headers["x-requested-by"] == "metricloop"
    assert req.key == f"action:restock_request:incident:{inc_id}:created"
    assert verify_signature(SECRET, req)
    assert SECRET not in str(row(ws, row_id).payload)  # only the ${ENV} reference is stored
    assert timeline(ws, inc_id) == [
        ("action_requested", "metricloop"),
        ("action_approved", "boss@example.com"),
        ("action_run", "metricloop"),
    ]

    with ws.db.session() as s, pytest.raises(ActionStateError, match="is sent by boss@example.com"):
        approve_action(s, notification_id=row_id, actor="boss@example.com")


def test_a_rejected_action_is_never_sent(ws, receiver, new_incident):
    inc_id, row_id = open_with_action(ws, new_incident, restock(receiver))
    with ws.db.session() as s:
        reject_action(s, notification_id=row_id, actor="boss@example.com", reason="stock arrives tomorrow")
    assert dispatch_once(ws).claimed == 0 and receiver.requests == []
    r = row(ws, row_id)
    assert r.status == "rejected" and r.last_error == "rejected by boss@example.com: stock arrives tomorrow"
    assert timeline(ws, inc_id)[-1] == ("action_rejected", "boss@example.com")
    with ws.db.session() as s, pytest.raises(ActionStateError, match="only an action awaiting approval"):
        approve_action(s, notification_id=row_id, actor="boss@example.com")


def test_an_action_without_approval_goes_at_once_and_failures_are_retried(ws, receiver, new_incident, drain_outbox):
    action = restock(receiver, require_approval=False, approvers=[], payload='{"store": {{ labels.store | tojson }}}')
    receiver.plan = [502]
    inc_id, row_id = open_with_action(ws, new_incident, action)
    assert row(ws, row_id).status == "pending"
    assert dispatch_once(ws).retried == 1
    assert "action restock_request: POST" in row(ws, row_id).last_error
    drain_outbox(ws)
    assert [r.json() for r in receiver.accepted()] == [{"store": "S012"}]
    assert [k for k, _ in timeline(ws, inc_id)] == ["action_queued", "action_run"]


def test_queueing_the_same_action_twice_gives_one_row(ws, receiver, new_incident):
    action = restock(receiver)
    with ws.db.session() as s:
        inc = new_incident(s)
        first = enqueue_action(s, incident=inc, action=action)
        again = enqueue_action(s, incident=inc, action=action)
        assert first.id == again.id
    with ws.db.session() as s:
        assert len(list(s.scalars(select(Notification)))) == 1


def test_a_broken_payload_template_does_not_stop_the_incident(ws, receiver, new_incident):
    action = restock(receiver, require_approval=False, payload={"store": "{{ labels.no_such_label }}"})
    assert check_action(action) == []  # syntax is fine; the label is missing only on this incident
    [problem] = check_action(restock(receiver, payload={"a": "{{ oops"}))
    assert problem.startswith("action restock_request: payload template '{{ oops'")
    inc_id, row_id = open_with_action(ws, new_incident, action)
    with ws.db.session() as s:
        assert s.get(Incident, inc_id) is not None  # the incident opened
    r = row(ws, row_id)
    assert r.status == "dead" and "no_such_label" in r.last_error
    assert timeline(ws, inc_id) == [("action_failed", "metricloop")]
    assert check_action(restock(receiver)) == []


def test_only_actions_can_be_approved_and_severities_filter(ws, receiver, new_incident, queue):
    queue(ws, channel="whatever")
    with ws.db.session() as s:
        notification = s.scalars(select(Notification)).one()
        with pytest.raises(MetricloopError, match="is a notification, not an action"):
            approve_action(s, notification_id=notification.id, actor="boss@example.com")
    action = restock(receiver)
    assert action_applies(action, "P1") and not action_applies(action, "P3")
    assert action_applies(restock(receiver, severities=[]), "P3")
