"""Fault bench for the outbox: lost, duplicated and out-of-order messages under crashes, an outage and concurrency.

    .venv/bin/python bench/faults.py                 # the three scenarios on SQLite, then on PostgreSQL
    .venv/bin/python bench/faults.py --db sqlite --scenario kill

Real incident flows (open, resolve, reopen) queue the messages; real dispatcher processes (`dispatch_once` with its
default lease and heartbeat) send them to a real HTTP receiver on 127.0.0.1 (bench/outbox_soak.py's, in its own
process, logging every accepted request with its key, incident and seq). Scenarios:

- kill: 30 incidents, 240 transitions made while 4 dispatcher processes send to a receiver that takes 0.2 s per
  request; every 3 s one dispatcher that has dispatched for 3 s at least is SIGKILLed and replaced, while another
  has been dispatching as long (a new process takes 3-10 s to import on this machine);
- outage: the receiver answers 500 to everything while the messages are queued and 4 s more, then is stopped
  (connections refused) for 4 s, then comes back;
- concurrent: 4 dispatcher processes while two threads resolve and reopen the same incidents, 10 % of attempts 500.

For each it prints: messages queued; lost (the outbox says sent or dead, the receiver never accepted it: must be 0);
unsent (still queued when the scenario's time ran out); dead; twice (raw: keys accepted more than once, the
at-least-once case); out of order (after dropping repeated keys, messages of an incident and channel accepted after
one with a higher seq: must be 0); attempts recorded against HTTP requests seen; the longest and the 95th-percentile
time from queueing to acceptance; for the outage, how long after the receiver came back the last message was
accepted. It prints figures; it asserts nothing. Every run is bounded (`--timeout` per scenario).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from outbox_soak import drained, receiver_stats, start_receiver, state_url  # noqa: E402 - after the path

CHILD = """
import os, sys, time
from metricloop.notify.dispatcher import dispatch_once
from metricloop.settings import Settings
from metricloop.workspace import Workspace

home = os.environ["ML_HOME"]
ws = Workspace.open(home, Settings(home=home, db=os.environ["ML_DB"]))
open(os.environ["ML_READY"], "w").close()  # imports done: dispatching from now on
while True:
    try:
        st = dispatch_once(ws, worker=os.environ["ML_WORKER"], backoff_base=0.05, backoff_cap=1.0)
    except Exception as e:  # a busy database: the service keeps running
        print(f"pass failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        time.sleep(0.2)
        continue
    if st.claimed == 0:
        time.sleep(0.1)
"""

KILL_EVERY = 3.0  # seconds between two SIGKILLs in the kill scenario

ROUTING = """
channels:
  - {{name: hook, type: webhook, url: "http://127.0.0.1:{port}/hook", language: en, timeout: 2, max_attempts: 50}}
routes:
  - {{name: everyone, matchers: ["monitor=faults"], assignee: ops@example.com, channels: [hook]}}
"""


def workspace(home: Path, url: str | None, port: int):
    from metricloop.definitions import service
    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    ws = Workspace.init(home, Settings(home=home, db=url, secret_key="faults"))
    entries, problems = service.read_text(ROUTING.format(port=port))
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="faults")
    return ws


def open_incidents(ws, n: int) -> list[int]:
    from metricloop.incidents import service

    ids = []
    for i in range(n):
        with ws.db.session() as s:
            inc = service.open_incident(
                s, ws, ws.catalog(), title=f"store S{i:03d} sales down", severity="P2", kind="metric",
                monitor="faults", metric="gmv", group_key=uuid.uuid4().hex[:16], slices=[f"store=S{i:03d}"],
                labels={"monitor": "faults", "store": f"S{i:03d}"}, summary={"explanation_en": "down"},
                now=datetime.now(UTC),
            )  # fmt: skip
            ids.append(inc.id)
    return ids


def transitions(ws, ids: list[int], n: int, seed: int, errors: list[str]) -> None:
    """n resolve/reopen transitions on random incidents of `ids`, each its own transaction, as fast as they go."""
    from metricloop.incidents import service
    from metricloop.incidents.models import Incident

    rng = random.Random(seed)
    for _ in range(n):
        inc_id = rng.choice(ids)
        try:
            with ws.db.session() as s:
                state = s.get(Incident, inc_id).state
                flow = service.reopen if state == "resolved" else service.resolve
                flow(s, ws, ws.catalog(), incident_id=inc_id, actor="faults", now=datetime.now(UTC))
        except service.StateError:
            pass  # another thread changed it first
        except Exception as e:  # noqa: BLE001 - counted and shown
            errors.append(f"transition: {type(e).__name__}: {e}")


class Dispatchers:
    def __init__(self, ws, label: str, n: int) -> None:
        self.env = {**os.environ, "ML_HOME": str(ws.home), "ML_DB": ws.settings.db_url}
        self.label, self.generation, self.kills = label, 0, 0
        self.logs = Path(tempfile.mkdtemp(prefix="ml-faults-logs-"))
        self.procs = [self.start() for _ in range(n)]
        self.ready_at: list[float | None] = [None] * n

    def start(self) -> subprocess.Popen:
        self.generation += 1
        worker = f"{self.label}-{self.generation}"
        err = open(self.logs / f"{worker}.err", "w")  # noqa: SIM115 - the child writes it
        env = {**self.env, "ML_WORKER": worker, "ML_READY": str(self.logs / f"{worker}.ready")}
        proc = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stderr=err)
        proc.ready_file = Path(env["ML_READY"])
        return proc

    def poll_ready(self) -> bool:
        """Note which dispatchers have finished their imports; True when all have."""
        for i, p in enumerate(self.procs):
            if self.ready_at[i] is None and p.ready_file.exists():
                self.ready_at[i] = time.monotonic()
        return all(t is not None for t in self.ready_at)

    def wait_ready(self, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        while not self.poll_ready() and time.monotonic() < end:
            time.sleep(0.1)

    def kill_one(self, rng: random.Random, *, min_age: float) -> None:
        """SIGKILL a dispatcher that has dispatched for `min_age` seconds at least (past its imports), start another."""
        self.poll_ready()
        now = time.monotonic()
        old = [i for i, t in enumerate(self.ready_at) if t is not None and now - t >= min_age]
        if len(old) < 2:  # leave another dispatcher running: the kill is of one of several, not of all
            return
        i = rng.choice(old)
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.kills += 1
        self.procs[i], self.ready_at[i] = self.start(), None

    def stop(self) -> list[str]:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()
        lines = [ln for f in self.logs.glob("*.err") for ln in f.read_text().splitlines() if "pass failed" in ln]
        shutil.rmtree(self.logs, ignore_errors=True)
        return lines


def set_fail(port: int, rate: float, delay: float = 0.0) -> None:
    url = f"http://127.0.0.1:{port}/mode?fail={rate}&delay={delay}"
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).read()


def run(scenario: str, label: str, url: str | None, *, timeout: float, seed: int) -> dict:
    from sqlalchemy import select

    from metricloop.notify.models import Notification

    home = Path(tempfile.mkdtemp(prefix=f"ml-faults-{label}-"))
    log_path = str(home / "accepted.jsonl")
    fail = 0.1 if scenario == "concurrent" else 0.0
    receiver, port = start_receiver(fail, seed, log_path=log_path)
    ws = workspace(home, url, port)
    rng = random.Random(seed)
    errors: list[str] = []
    requests = 0
    recovered = None
    try:
        dispatchers = Dispatchers(ws, f"{label}-{scenario}", 4 if scenario != "outage" else 2)
        dispatchers.wait_ready()  # on a busy machine imports take seconds: count from when they dispatch
        if scenario == "outage":
            set_fail(port, 1.0)
        ids = open_incidents(ws, 30 if scenario != "outage" else 20)
        storm: list[threading.Thread] = []
        if scenario == "concurrent":
            storm = [threading.Thread(target=transitions, args=(ws, ids, 120, seed + i, errors)) for i in range(2)]
        elif scenario == "kill":  # transitions go on during the kills; a slow receiver keeps calls in flight
            set_fail(port, 0.0, delay=0.2)
            storm = [threading.Thread(target=transitions, args=(ws, ids, 240, seed, errors))]
        else:
            transitions(ws, ids, 100, seed, errors)
        t0 = time.monotonic()
        for t in storm:
            t.start()
        next_kill = t0 + KILL_EVERY
        phase = "500" if scenario == "outage" else ""
        while time.monotonic() - t0 < timeout:
            time.sleep(0.1)
            now = time.monotonic()
            if scenario == "kill" and now >= next_kill:
                dispatchers.kill_one(rng, min_age=3.0)
                next_kill += KILL_EVERY
            if phase == "500" and now - t0 >= 4:  # 4 s of 500s, then 4 s of refused connections
                requests += receiver_stats(port)["requests"]
                receiver.terminate()
                receiver.join(10)
                phase = "refused"
            elif phase == "refused" and now - t0 >= 8:
                receiver, _ = start_receiver(0.0, seed, port=port, log_path=log_path)
                phase, recovered = "up", time.time()
            if not any(t.is_alive() for t in storm) and phase in ("", "up") and drained(ws):
                break
        elapsed = time.monotonic() - t0
        errors += dispatchers.stop()
        for t in storm:
            t.join()
        requests += receiver_stats(port)["requests"]
        with ws.db.session() as s:
            rows = list(s.scalars(select(Notification).order_by(Notification.id)))
        ws.close()
    finally:
        receiver.terminate()
        receiver.join(5)
    accepted = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    shutil.rmtree(home, ignore_errors=True)

    times: dict[str, float] = {}
    count: dict[str, int] = defaultdict(int)
    highest: dict[tuple, int] = {}
    out_of_order = 0
    for a in accepted:  # in the order the receiver accepted them
        count[a["key"]] += 1
        if a["key"] in times:
            continue  # a repeat, dropped by its key
        times[a["key"]] = a["t"]
        chain = (a["incident"], a["path"])
        if a["seq"] < highest.get(chain, 0):
            out_of_order += 1
        highest[chain] = max(highest.get(chain, 0), a["seq"])
    if os.environ.get("FAULTS_DEBUG"):
        first = min(times.values()) if times else 0
        buckets = defaultdict(int)
        for t in times.values():
            buckets[int((t - first) // 5) * 5] += 1
        print("accepted per 5 s:", dict(sorted(buckets.items())), "errors:", errors[:3], flush=True)
    delays = sorted(times[r.idempotency_key] - _epoch(r.created_at) for r in rows if r.idempotency_key in times)
    return {
        "db": label,
        "scenario": scenario,
        "messages": len(rows),
        # lost: the outbox holds it as sent (or never queued it), yet the receiver never accepted it
        "lost": sum(1 for r in rows if r.idempotency_key not in times and r.status not in ("pending", "sending")),
        "unsent": sum(1 for r in rows if r.status in ("pending", "sending")),  # still queued when time ran out
        "dead": sum(1 for r in rows if r.status == "dead"),
        "twice": sum(1 for r in rows if count[r.idempotency_key] > 1),
        "out_of_order": out_of_order,
        "attempts": sum(r.attempts for r in rows),
        "requests": requests,
        "kills": dispatchers.kills,
        "max_delay": delays[-1] if delays else 0.0,
        "p95_delay": delays[int(0.95 * (len(delays) - 1))] if delays else 0.0,
        "seconds": elapsed,
        "after_recovery": (max(times.values()) - recovered) if recovered and times else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def _epoch(t: datetime) -> float:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--scenario", choices=["kill", "outage", "concurrent", "all"], default="all")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds a scenario may dispatch")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    scenarios = ["kill", "outage", "concurrent"] if args.scenario == "all" else [args.scenario]
    results = []
    for label in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        for scenario in scenarios:
            with state_url(label, "ml_faults_") as url:
                print(f"[{label}] {scenario} …", flush=True)
                results.append(run(scenario, label, url, timeout=args.timeout, seed=args.seed))

    cols = [
        ("state", "db", "{}"),
        ("scenario", "scenario", "{}"),
        ("messages", "messages", "{:,}"),
        ("lost", "lost", "{:,}"),
        ("unsent at the end", "unsent", "{:,}"),
        ("dead", "dead", "{:,}"),
        ("twice (raw)", "twice", "{:,}"),
        ("out of order (by key)", "out_of_order", "{:,}"),
        ("attempts", "attempts", "{:,}"),
        ("HTTP requests", "requests", "{:,}"),
        ("kills", "kills", "{:,}"),
        ("max delay s", "max_delay", "{:.1f}"),
        ("p95 delay s", "p95_delay", "{:.1f}"),
        ("run s", "seconds", "{:.1f}"),
        ("drained s after recovery", "after_recovery", "{:.1f}"),
    ]
    print()
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in results:
        print("| " + " | ".join("—" if r[key] is None else fmt.format(r[key]) for _, key, fmt in cols) + " |")
    for r in results:
        if r["errors"]:
            print(f"{r['db']} {r['scenario']}: {r['errors']} errors (retried), first: {r['first_error']}")


if __name__ == "__main__":
    main()
