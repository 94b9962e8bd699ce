"""Crash recovery: a dispatcher process killed (SIGKILL) while a delivery is in flight, then restarted.

The contract is at-least-once delivery with an idempotency key: after the restart the receiver has
every key (nothing lost). A message that was in flight when the process died may arrive twice, with
the same key, so a receiver that drops repeated keys handles each message exactly once.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select

from metricloop.notify.models import Notification

CHILD = """
import os, sys, time
from metricloop.notify.dispatcher import dispatch_once
from metricloop.notify.outbox import counts
from metricloop.settings import Settings
from metricloop.workspace import Workspace

home = os.environ["ML_HOME"]
ws = Workspace.open(home, Settings(home=home, db=os.environ["ML_DB"]))
deadline = time.time() + 40
while time.time() < deadline:
    dispatch_once(ws, worker=os.environ["ML_WORKER"], batch=10, lease_seconds=float(os.environ["ML_LEASE"]),
                  backoff_base=0.05, backoff_cap=0.2)
    with ws.db.session() as s:
        c = counts(s)
    if c["pending"] == 0 and c["sending"] == 0:
        print("drained", flush=True)
        sys.exit(0)
    time.sleep(0.05)
sys.exit(3)
"""


def start_dispatcher(ws, worker: str, lease: float) -> subprocess.Popen:
    env = {**os.environ, "ML_HOME": str(ws.home), "ML_DB": ws.settings.db_url, "ML_WORKER": worker,
           "ML_LEASE": str(lease)}  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_dispatcher_loses_nothing_and_duplicates_nothing_by_key(ws, receiver, apply_defs, queue):
    apply_defs(ws, f"""
channels:
  - name: ops_hook
    type: webhook
    url: {receiver.url}/hook
    timeout: 1
""")  # fmt: skip
    keys = [queue(ws, channel="ops_hook") for _ in range(6)]
    receiver.plan = [200, 200, "hang"]  # the third delivery is in flight when the process dies
    receiver.hang_seconds = 0.5

    first = start_dispatcher(ws, "first", lease=2.5)
    try:
        wait_for(lambda: len(receiver.arrivals) >= 3, timeout=90)  # a busy machine imports slowly
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    with ws.db.session() as s:
        sending = list(s.scalars(select(Notification).where(Notification.status == "sending")))
        in_flight = {r.idempotency_key for r in sending}
        called = {r.idempotency_key for r in sending if r.attempts > 0}  # an attempt counts when its call begins
        states = Counter(s.scalars(select(Notification.status)))
    hung = receiver.arrivals[2]
    assert hung in in_flight  # claimed by the dead process; its lease is not over yet
    assert states["sent"] + states["sending"] == 6

    second = start_dispatcher(ws, "second", lease=2.5)
    out, err = second.communicate(timeout=40)
    assert second.returncode == 0, err.decode()[-2000:]
    wait_for(lambda: len(receiver.requests) == len(receiver.arrivals))  # the hung request has finished

    delivered = Counter(receiver.keys())
    assert set(delivered) == set(keys)  # nothing lost
    # The receiver finished processing the in-flight request although its client was dead; the second
    # dispatcher could not know and sent it again, with the same key. Only rows that were in flight at
    # the kill can repeat, and the hung one must have.
    repeated = {k for k, n in delivered.items() if n > 1}
    assert hung in repeated and repeated <= in_flight
    with ws.db.session() as s:
        rows = list(s.scalars(select(Notification).order_by(Notification.id)))
    assert {r.status for r in rows} == {"sent"}
    # a row that was claimed but not yet called when the process died is not charged for the crash
    assert {r.idempotency_key: r.attempts for r in rows} == {k: 2 if k in called else 1 for k in keys}
    assert hung in called
