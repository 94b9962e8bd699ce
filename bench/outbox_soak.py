"""Soak the outbox: N incidents' notifications to a real HTTP receiver that fails a share of attempts.

    .venv/bin/python bench/outbox_soak.py                      # 10,000 messages, 20 % failures, SQLite and PostgreSQL
    .venv/bin/python bench/outbox_soak.py --n 2000 --db sqlite

The receiver runs in its own process, answers 500 to a random share of attempts and counts the
attempts it accepted per idempotency key. For each state database the script reports:

- lost: keys queued that the receiver never accepted (must be 0);
- twice (raw): keys the receiver accepted more than once (at-least-once allows it after a crash or a
  lost lease; a clean run has none), and "handled once": keys left after dropping repeats, as a
  receiver honouring the idempotency key does (must equal the messages);
- attempts: what the outbox recorded, against the HTTP requests the receiver saw (an attempt that
  fails before reaching it, e.g. a refused connection, is an attempt without a request);
- throughput: messages delivered per second while dispatching, with several dispatchers at once.

It prints figures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def state_url(label: str, prefix: str):
    """The state database URL for a run: None (the workspace's own SQLite) for "sqlite"; for "postgres", a fresh
    schema of the local test database, dropped afterwards."""
    if label != "postgres":
        yield None
        return
    from sqlalchemy import create_engine, text

    schema = prefix + uuid.uuid4().hex[:8]
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()
SECRET_ENV = "METRICLOOP_SOAK_SECRET"


# ------------------------------------------------------------------ the receiver (its own process)


def _receiver(port_queue, fail_rate: float, seed: int, port: int = 0, log_path: str | None = None) -> None:
    """`log_path`: also append one JSON line per accepted request (key, incident, seq, time), which survives a restart
    of the receiver on the same `port`. POST /mode?fail=R&delay=S changes the share of attempts answered 500 and
    makes every answer wait S seconds."""
    rng = random.Random(seed)
    lock = threading.Lock()
    accepted: Counter = Counter()
    seen = {"requests": 0, "failed": 0}
    log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115 - open while serving

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body in two writes cost a 40 ms delayed ACK

        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: bytes = b"{}") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a dispatcher killed mid-request (--crash-every); the request still counted

        def do_GET(self):  # noqa: N802 - http.server's hook name
            with lock:
                body = json.dumps({"accepted": accepted, **seen}).encode()
            self._reply(200, body)

        def do_POST(self):  # noqa: N802
            nonlocal fail_rate
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/mode"):  # /mode?fail=R[&delay=S]
                query = dict(part.split("=", 1) for part in self.path.split("?", 1)[1].split("&"))
                fail_rate = float(query["fail"])
                seen["delay"] = float(query.get("delay", 0))
                return self._reply(200)
            if seen.get("delay"):
                time.sleep(seen["delay"])  # a slow receiver: deliveries stay in flight longer
            key = self.headers.get("X-Metricloop-Idempotency-Key")
            with lock:
                seen["requests"] += 1
                fail = rng.random() < fail_rate
                if fail:
                    seen["failed"] += 1
                else:
                    accepted[key] += 1
                    if log is not None:
                        payload = json.loads(body)
                        line = {"key": key, "incident": payload["incident"]["id"], "seq": payload.get("seq"),
                                "path": self.path, "t": time.time()}  # fmt: skip
                        log.write(json.dumps(line) + "\n")
                        log.flush()
            self._reply(500 if fail else 200)

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # the default backlog of 5 refuses bursts from many dispatchers

        def handle_error(self, request, client_address):
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed dispatcher's socket is expected
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever(poll_interval=0.05)


def start_receiver(fail_rate: float, seed: int, *, port: int = 0, log_path: str | None = None):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_receiver, args=(q, fail_rate, seed, port, log_path), daemon=True)
    proc.start()
    return proc, q.get(timeout=30)


def receiver_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=30) as r:
        return json.loads(r.read())


# ------------------------------------------------------------------ one soak


def drained(ws) -> bool:
    from metricloop.notify.outbox import counts

    with ws.db.session() as s:
        c = counts(s)
    return c["pending"] == 0 and c["sending"] == 0


def run_dispatcher_threads(ws, *, label: str, workers: int, batch: int) -> list[str]:
    """Dispatchers as threads of this process."""
    from metricloop.notify.dispatcher import dispatch_once

    done = threading.Event()
    errors: list[str] = []

    def dispatcher(name: str) -> None:
        while not done.is_set():
            try:
                st = dispatch_once(ws, worker=name, batch=batch, backoff_base=0.02, backoff_cap=0.5)
            except Exception as e:  # noqa: BLE001 - counted and shown
                errors.append(f"{name}: {type(e).__name__}: {e}")
                time.sleep(0.1)
                continue
            if st.claimed == 0:
                time.sleep(0.02)

    threads = [threading.Thread(target=dispatcher, args=(f"{label}-{i}",)) for i in range(workers)]
    for t in threads:
        t.start()
    while not drained(ws):
        time.sleep(0.25)
    done.set()
    for t in threads:
        t.join()
    return errors


CHILD = """
import os, sys, time
from metricloop.notify.dispatcher import dispatch_once
from metricloop.notify.outbox import counts
from metricloop.settings import Settings
from metricloop.workspace import Workspace

home = os.environ["ML_HOME"]
ws = Workspace.open(home, Settings(home=home, db=os.environ["ML_DB"]))
while True:
    st = dispatch_once(ws, worker=os.environ["ML_WORKER"], batch=int(os.environ["ML_BATCH"]), lease_seconds=8,
                       backoff_base=0.02, backoff_cap=0.5)
    if st.claimed == 0:
        with ws.db.session() as s:
            c = counts(s)
        if c["pending"] == 0 and c["sending"] == 0:
            sys.exit(0)
        time.sleep(0.05)
"""


def run_killed_dispatchers(ws, *, label: str, workers: int, batch: int, crash_every: float) -> tuple[int, list[str]]:
    """Dispatchers as processes; every `crash_every` seconds one of them is SIGKILLed and replaced."""
    import signal
    import subprocess

    rng = random.Random(11)
    env = {**os.environ, "ML_HOME": str(ws.home), "ML_DB": ws.settings.db_url, "ML_BATCH": str(batch)}
    generation = 0

    def start(i: int) -> subprocess.Popen:
        nonlocal generation
        generation += 1
        return subprocess.Popen([sys.executable, "-c", CHILD], env={**env, "ML_WORKER": f"{label}-{i}-{generation}"},
                                stderr=subprocess.PIPE)  # fmt: skip

    procs = {i: start(i) for i in range(workers)}
    kills, errors = 0, []
    next_kill = time.monotonic() + crash_every
    while not drained(ws):
        time.sleep(0.25)
        for i, p in procs.items():
            if p.poll() not in (None, 0):
                errors.append(f"dispatcher {i} exited {p.returncode}: {p.stderr.read().decode()[-300:]}")
                procs[i] = start(i)
        if time.monotonic() >= next_kill:
            i = rng.randrange(workers)
            if procs[i].poll() is None:
                procs[i].send_signal(signal.SIGKILL)
                procs[i].wait()
                kills += 1
            procs[i] = start(i)
            next_kill += crash_every
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
        p.wait()
    return kills, errors


def soak(
    db_label: str,
    url: str | None,
    home: Path,
    *,
    n: int,
    port: int,
    workers: int,
    batch: int,
    crash_every: float | None = None,
) -> dict:
    from sqlalchemy import func, select

    from metricloop.definitions import service
    from metricloop.incidents.models import Incident
    from metricloop.notify.models import Notification
    from metricloop.notify.outbox import counts, enqueue
    from metricloop.notify.render import render_incident
    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    ws = Workspace.init(home, Settings(home=home, db=url, secret_key="soak"))
    entries, problems = service.read_text(f"""
channels:
  - name: soak_hook
    type: webhook
    url: http://127.0.0.1:{port}/hook
    secret: ${{{SECRET_ENV}}}
    max_attempts: 20
    timeout: 5
""")
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="soak")

    # Queue: an incident and its notification in one transaction per chunk, like the incident flows.
    keys: list[str] = []
    t0 = time.perf_counter()
    chunk = 500
    for start in range(0, n, chunk):
        with ws.db.session() as s:
            for i in range(start, min(n, start + chunk)):
                inc = Incident(title=f"soak incident {i}", severity=("P1", "P2", "P3")[i % 3], monitor="soak",
                               metric="gmv", group_key=uuid.uuid4().hex[:16], slices=[f"store=S{i % 500:03d}"],
                               labels={"store": f"S{i % 500:03d}"}, assignee="ops@example.com",
                               summary={"explanation_en": "soak", "actual": i, "expected": i + 10})  # fmt: skip
                s.add(inc)
                s.flush()
                subject, body, payload = render_incident(inc, event="created", language="en", base_url="http://x",
                                                         secret_key="soak", channel_type="webhook")  # fmt: skip
                key = f"incident:{inc.id}:created:0:soak_hook"
                enqueue(s, key=key, channel="soak_hook", event="created", recipient="soak_hook", incident_id=inc.id,
                        subject=subject, body=body, payload=payload, language="en", max_attempts=20)  # fmt: skip
                keys.append(key)
    queued_s = time.perf_counter() - t0

    # Dispatch with several dispatchers at once until nothing is pending or in flight.
    t1 = time.perf_counter()
    if crash_every:
        kills, errors = run_killed_dispatchers(ws, label=db_label, workers=workers, batch=batch,
                                               crash_every=crash_every)  # fmt: skip
    else:
        kills, errors = 0, run_dispatcher_threads(ws, label=db_label, workers=workers, batch=batch)
    dispatch_s = time.perf_counter() - t1

    stats = receiver_stats(port)
    accepted = Counter({k: v for k, v in stats["accepted"].items() if k in set(keys)})
    with ws.db.session() as s:
        c = counts(s)
        recorded_attempts = s.scalar(select(func.sum(Notification.attempts)))
    ws.close()
    return {
        "db": db_label,
        "messages": n,
        "sent": c["sent"],
        "dead": c["dead"],
        "lost": sum(1 for k in keys if accepted[k] == 0),
        "twice_raw": sum(1 for k in keys if accepted[k] > 1),
        "unique": sum(1 for k in keys if accepted[k] > 0),  # what a receiver dropping repeated keys handles
        "attempts": recorded_attempts,
        "retries": recorded_attempts - c["sent"] - c["dead"],
        "kills": kills,
        "http_requests": stats["requests"],
        "failed_attempts": stats["failed"],
        "queue_s": queued_s,
        "dispatch_s": dispatch_s,
        "throughput": n / dispatch_s,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="messages (one incident each)")
    ap.add_argument("--fail-rate", type=float, default=0.2, help="share of attempts the receiver answers 500")
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--workers", type=int, default=4, help="dispatchers running at once")
    ap.add_argument("--batch", type=int, default=100, help="rows each dispatcher claims per pass")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--crash-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run dispatchers as processes and SIGKILL one of them this often (then start a new one)",
    )
    args = ap.parse_args()
    os.environ[SECRET_ENV] = "soak-secret"
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

    results = []
    for label in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        proc, port = start_receiver(args.fail_rate, args.seed)
        home = Path(tempfile.mkdtemp(prefix=f"ml-soak-{label}-"))
        try:
            with state_url(label, "ml_soak_") as url:
                print(f"[{label}] {args.n:,} messages, {args.fail_rate:.0%} of attempts fail, "
                      f"{args.workers} dispatchers", flush=True)
                results.append(
                    soak(
                        label,
                        url,
                        home,
                        n=args.n,
                        port=port,
                        workers=args.workers,
                        batch=args.batch,
                        crash_every=args.crash_every,
                    )
                )
        finally:
            proc.terminate()
            proc.join(5)
            shutil.rmtree(home, ignore_errors=True)

    cols = [
        ("state", "db", "{}"),
        ("messages", "messages", "{:,}"),
        ("sent", "sent", "{:,}"),
        ("dead", "dead", "{:,}"),
        ("lost", "lost", "{:,}"),
        ("twice (raw)", "twice_raw", "{:,}"),
        ("handled once (by key)", "unique", "{:,}"),
        ("attempts", "attempts", "{:,}"),
        ("retries", "retries", "{:,}"),
        ("HTTP requests", "http_requests", "{:,}"),
        ("answered 500", "failed_attempts", "{:,}"),
        ("kills", "kills", "{:,}"),
        ("queue s", "queue_s", "{:.1f}"),
        ("dispatch s", "dispatch_s", "{:.1f}"),
        ("msg/s", "throughput", "{:,.0f}"),
    ]
    import platform
    import sqlite3

    print()
    crashes = f", one dispatcher process SIGKILLed every {args.crash_every:g} s" if args.crash_every else ""
    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{args.workers} dispatchers × concurrency 8, batch {args.batch}, backoff base 0.02 s cap 0.5 s{crashes}"
    )
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in results:
        print("| " + " | ".join(fmt.format(r[key]) for _, key, fmt in cols) + " |")
    for r in results:
        if r["errors"]:
            print(f"{r['db']}: {r['errors']} dispatcher pass errors (retried), first: {r['first_error']}")


if __name__ == "__main__":
    main()
