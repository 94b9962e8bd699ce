"""The outbox and the dispatcher against a real HTTP receiver, with state on SQLite and on PostgreSQL."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loopback import verify_signature
from metricloop.errors import DefinitionError, MetricloopError
from metricloop.incidents.models import Incident, IncidentEvent
from metricloop.notify.dispatcher import begin_attempt, claim, dispatch_once
from metricloop.notify.models import Notification
from metricloop.notify.outbox import cancel, counts, enqueue, retry

SECRET = "hook-s3cret-value"


def hook(
    url: str,
    *,
    name: str = "ops_hook",
    max_attempts: int = 4,
    timeout: float = 2,
    extra: str = "",
    secret: str = "ML_TEST_HOOK_SECRET",
) -> str:
    return f"""
channels:
  - name: {name}
    type: webhook
    url: {url}
    secret: ${{{secret}}}
    language: en
    max_attempts: {max_attempts}
    timeout: {timeout}
{extra}"""


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("ML_TEST_HOOK_SECRET", SECRET)


def rows(ws) -> list[Notification]:
    with ws.db.session() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


def events(ws, kind: str | None = None) -> list[IncidentEvent]:
    with ws.db.session() as s:
        q = select(IncidentEvent).order_by(IncidentEvent.id)
        if kind:
            q = q.where(IncidentEvent.kind == kind)
        return list(s.scalars(q))


# ------------------------------------------------------------------ the outbox


def test_enqueue_is_idempotent_inside_the_callers_transaction(ws, new_incident):
    with ws.db.session() as s:
        inc = new_incident(s)
        first = enqueue(s, key="k-1", channel="c", event="created", recipient="r", incident_id=inc.id)
        assert first is not None and first.status == "pending"
        assert enqueue(s, key="k-1", channel="c", event="created", recipient="r", incident_id=inc.id) is None
        # The caller's transaction is intact (PostgreSQL would refuse everything after a failed INSERT).
        second = new_incident(s, title="another")
    with ws.db.session() as s:
        assert s.scalar(select(Incident).where(Incident.id == second.id)) is not None
        assert enqueue(s, key="k-1", channel="c", event="created", recipient="r") is None  # committed earlier
    assert [r.idempotency_key for r in rows(ws)] == ["k-1"]


def test_a_rolled_back_change_leaves_no_notification(ws, new_incident):
    with pytest.raises(RuntimeError), ws.db.session() as s:
        inc = new_incident(s)
        enqueue(s, key="k-2", channel="c", event="created", recipient="r", incident_id=inc.id)
        raise RuntimeError("the incident flow failed after queueing")
    assert rows(ws) == []


def test_enqueue_rejects_bad_input(ws):
    with ws.db.session() as s:
        with pytest.raises(MetricloopError, match="idempotency key"):
            enqueue(s, key="", channel="c", event="created", recipient="r")
        with pytest.raises(MetricloopError, match="pending or awaiting_approval"):
            enqueue(s, key="k", channel="c", event="created", recipient="r", status="sent")


# ------------------------------------------------------------------ delivery


def test_webhook_is_delivered_once_with_a_verifiable_signature(ws, receiver, apply_defs, queue):
    apply_defs(ws, hook(receiver.url + "/hook"))
    key = queue(ws, channel="ops_hook", language="en")
    stats = dispatch_once(ws)
    assert (stats.claimed, stats.sent, stats.retried, stats.dead) == (1, 1, 0, 0)
    [req] = receiver.requests
    assert req.method == "POST" and req.path == "/hook"
    assert req.key == key
    assert verify_signature(SECRET, req)  # the documented HMAC, checked as a receiver would
    body = req.json()
    assert body["idempotency_key"] == key
    assert body["event"] == "created" and body["incident"]["severity"] == "P1"
    assert body["links"]["ack"].startswith("http://metricloop.test/api/incidents/")
    [row] = rows(ws)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, "")
    [ev] = events(ws, "notified")
    assert (ev.actor, ev.message) == ("metricloop", "sent to ops_hook via ops_hook")
    assert dispatch_once(ws).claimed == 0  # nothing left


def test_receiver_outage_then_recovery_delivers_exactly_once(ws, receiver, apply_defs, queue, drain_outbox):
    apply_defs(ws, hook(receiver.url + "/hook", max_attempts=5))
    receiver.plan = [500, 503, 500]
    key = queue(ws, channel="ops_hook")
    stats = dispatch_once(ws)
    assert (stats.sent, stats.retried) == (0, 1)
    [row] = rows(ws)
    assert row.status == "pending" and "answered HTTP 500" in row.last_error
    assert row.next_attempt_at.replace(tzinfo=UTC) > datetime.now(UTC)  # backing off
    assert dispatch_once(ws).claimed == 0  # not due yet
    drain_outbox(ws)
    assert [r.status for r in receiver.requests] == [500, 503, 500, 200]
    assert receiver.keys() == [key]
    [row] = rows(ws)
    assert (row.status, row.attempts, row.last_error) == ("sent", 4, "")


def test_refused_connections_are_retried_until_the_receiver_is_up(
    ws, apply_defs, queue, unused_port, late_receiver, drain_outbox
):
    apply_defs(ws, hook(f"http://127.0.0.1:{unused_port}/hook"))
    key = queue(ws, channel="ops_hook")
    assert dispatch_once(ws).retried == 1
    [row] = rows(ws)
    assert "cannot connect to http://127.0.0.1" in row.last_error
    receiver = late_receiver(unused_port)
    drain_outbox(ws)
    assert receiver.keys() == [key]
    assert rows(ws)[0].status == "sent"


def test_dead_letter_after_max_attempts_then_manual_retry(ws, receiver, apply_defs, queue, drain_outbox):
    apply_defs(ws, hook(receiver.url + "/hook", max_attempts=3))
    receiver.status = 500
    key = queue(ws, channel="ops_hook", max_attempts=3)
    stats = drain_outbox(ws)
    assert (stats.retried, stats.dead, stats.sent) == (2, 1, 0)
    [row] = rows(ws)
    assert (row.status, row.attempts) == ("dead", 3)
    assert row.last_error.startswith("attempt 3: webhook channel ops_hook: POST") and "HTTP 500" in row.last_error
    [ev] = events(ws, "notify_failed")
    assert "after 3 attempts" in ev.message
    assert len(receiver.requests) == 3 and receiver.keys() == []

    receiver.status = 200
    with ws.db.session() as s:
        retry(s, notification_id=row.id, actor="ops@example.com")
        with pytest.raises(MetricloopError, match="only a dead row can be retried"):
            retry(s, notification_id=row.id, actor="ops@example.com")
    drain_outbox(ws)
    assert receiver.keys() == [key]
    assert rows(ws)[0].status == "sent"
    assert [e.kind for e in events(ws) if e.kind.startswith("notif")] == ["notify_failed", "notify_retried", "notified"]


def test_a_client_error_is_dead_at_once(ws, receiver, apply_defs, queue):
    apply_defs(ws, hook(receiver.url + "/hook"))
    receiver.status = 400
    queue(ws, channel="ops_hook")
    stats = dispatch_once(ws)
    assert (stats.dead, stats.retried) == (1, 0)
    [row] = rows(ws)
    assert row.status == "dead" and row.attempts == 1
    assert "answered HTTP 400 Bad Request" in row.last_error
    assert "not retryable" in events(ws, "notify_failed")[0].message


@pytest.mark.parametrize("status", [408, 429])
def test_timeouts_and_rate_limits_from_the_receiver_are_retried(ws, receiver, apply_defs, queue, status):
    apply_defs(ws, hook(receiver.url + "/hook"))
    receiver.plan = [status]
    queue(ws, channel="ops_hook")
    assert dispatch_once(ws).retried == 1


def test_a_hanging_receiver_times_out_and_is_retried(ws, receiver, apply_defs, queue, drain_outbox):
    apply_defs(ws, hook(receiver.url + "/hook", timeout=0.3))
    receiver.plan = ["hang"]
    receiver.hang_seconds = 2
    key = queue(ws, channel="ops_hook")
    stats = dispatch_once(ws)
    assert stats.retried == 1
    assert "no answer from http://127.0.0.1" in rows(ws)[0].last_error and "within 0.3s" in rows(ws)[0].last_error
    drain_outbox(ws)
    assert rows(ws)[0].status == "sent"
    assert set(receiver.keys()) == {key}  # the hung request may also count: at-least-once, same key


# ------------------------------------------------------------------ bad channels


def test_a_wrong_channel_path_is_dead_with_a_clear_error(ws, receiver, apply_defs, queue):
    apply_defs(ws, hook(receiver.url + "/wrong-path"))
    receiver.status = 404
    queue(ws, channel="ops_hook")
    dispatch_once(ws)
    [row] = rows(ws)
    assert row.status == "dead"
    assert f"POST {receiver.url}/wrong-path answered HTTP 404 Not Found" in row.last_error


def test_an_invalid_channel_url_is_refused_when_applied(ws, apply_defs):
    with pytest.raises(DefinitionError) as err:
        apply_defs(ws, hook("ftp://files.example.com/hook"))
    assert "is not an http(s) URL with a host" in str(err.value) and "nothing was changed" in str(err.value)
    assert ws.catalog().all("channel") == {}


def test_an_unknown_channel_is_dead_with_a_clear_error(ws, receiver, apply_defs, queue):
    apply_defs(ws, hook(receiver.url + "/hook"))
    queue(ws, channel="no_such_channel")
    dispatch_once(ws)
    [row] = rows(ws)
    assert row.status == "dead" and row.last_error == "attempt 1: no channel named 'no_such_channel' (known: ops_hook)"


def test_a_missing_secret_is_dead_and_secrets_never_appear_in_errors(ws, receiver, apply_defs, queue, monkeypatch):
    monkeypatch.setenv("ML_TEST_TOKEN", "tok-very-secret")
    other = hook(receiver.url, name="other", secret="ML_TEST_UNSET_SECRET")
    apply_defs(ws, hook(receiver.url + "/hook?token=${ML_TEST_TOKEN}") + other.split("channels:\n")[1])
    receiver.status = 404
    queue(ws, channel="ops_hook")
    queue(ws, channel="other")
    dispatch_once(ws)
    masked, missing = rows(ws)
    assert masked.status == "dead" and "tok-very-secret" not in masked.last_error and "token=***" in masked.last_error
    assert receiver.requests[0].path == "/hook?token=tok-very-secret"  # the real value was sent
    assert missing.status == "dead"
    assert "environment variable ML_TEST_UNSET_SECRET is not set" in missing.last_error
    assert len(receiver.requests) == 1  # nothing was sent unsigned


# ------------------------------------------------------------------ concurrency and crashes


def test_concurrent_dispatchers_never_send_the_same_row(ws, receiver, apply_defs, queue):
    # A generous timeout and quick retries: this test is about claims, and a loaded CI machine must not
    # turn a slow loopback answer into a retry that lands after the workers have stopped.
    apply_defs(ws, hook(receiver.url + "/hook", timeout=30))
    keys = {queue(ws, channel="ops_hook") for _ in range(40)}
    errors = []

    def work(name):
        try:
            for _ in range(200):
                if dispatch_once(ws, worker=name, batch=5, backoff_base=0.01, backoff_cap=0.05).claimed == 0:
                    with ws.db.session() as s:
                        if counts(s)["pending"] == 0:
                            return
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(receiver.keys()) == sorted(keys)  # every key, each exactly once, even raw
    assert {r.status for r in rows(ws)} == {"sent"}


def test_a_row_left_sending_by_a_dead_dispatcher_is_reclaimed_after_its_lease(ws, receiver, apply_defs, queue):
    apply_defs(ws, hook(receiver.url + "/hook"))
    key = queue(ws, channel="ops_hook")
    now = datetime.now(UTC)
    [taken] = claim(ws, now=now, worker="crashed", batch=10, lease_seconds=60)
    assert begin_attempt(ws, taken, worker="crashed", now=now, lease_seconds=60)  # and then it died mid-call
    assert dispatch_once(ws, now=now + timedelta(seconds=30)).claimed == 0  # its lease still holds
    stats = dispatch_once(ws, now=now + timedelta(seconds=61))
    assert stats.sent == 1 and receiver.keys() == [key]
    [row] = rows(ws)
    assert (row.status, row.attempts) == ("sent", 2)  # the call that died counts


def test_a_claimed_row_whose_dispatcher_died_before_calling_is_not_charged_an_attempt(ws, receiver, apply_defs, queue):
    apply_defs(ws, hook(receiver.url + "/hook"))
    key = queue(ws, channel="ops_hook", max_attempts=1)
    now = datetime.now(UTC)
    claim(ws, now=now, worker="crashed", batch=10, lease_seconds=10)  # claimed, then killed before any call
    with ws.db.session() as s:
        assert s.scalars(select(Notification)).one().attempts == 0
    stats = dispatch_once(ws, now=now + timedelta(seconds=11))
    assert (stats.sent, stats.dead) == (1, 0) and receiver.keys() == [key]  # its only attempt was still its own
    [row] = rows(ws)
    assert (row.status, row.attempts) == ("sent", 1)


def test_a_row_that_dies_with_its_dispatcher_on_the_last_attempt_is_dead(ws, receiver, apply_defs, queue):
    apply_defs(ws, hook(receiver.url + "/hook"))
    queue(ws, channel="ops_hook", max_attempts=1)
    now = datetime.now(UTC)
    [taken] = claim(ws, now=now, worker="crashed", batch=10, lease_seconds=60)
    assert begin_attempt(ws, taken, worker="crashed", now=now, lease_seconds=60)
    stats = dispatch_once(ws, now=now + timedelta(seconds=61))
    assert (stats.dead, stats.claimed) == (1, 0)
    [row] = rows(ws)
    assert row.status == "dead" and "stopped during attempt 1 of 1" in row.last_error
    assert receiver.requests == []


def test_cancel_drops_unsent_rows(ws, receiver, apply_defs, queue):
    apply_defs(ws, hook(receiver.url + "/hook"))
    queue(ws, channel="ops_hook", event="escalated")
    [row] = rows(ws)
    with ws.db.session() as s:
        assert cancel(s, incident_id=row.incident_id, events=("escalated",)) == 1
    assert dispatch_once(ws).claimed == 0 and rows(ws)[0].status == "cancelled"


def test_a_clock_in_another_timezone_means_the_same_instant(ws, receiver, apply_defs, queue):
    from zoneinfo import ZoneInfo

    apply_defs(ws, hook(receiver.url + "/hook"))
    receiver.plan = [500]
    queue(ws, channel="ops_hook")
    assert dispatch_once(ws).retried == 1  # next attempt 15-30 s from now
    shanghai = datetime.now(ZoneInfo("Asia/Shanghai"))  # its wall clock reads 8 hours later
    assert dispatch_once(ws, now=shanghai).claimed == 0
    assert dispatch_once(ws, now=shanghai + timedelta(seconds=31)).sent == 1
