"""Real receivers on loopback for the notification tests: an SMTP server (aiosmtpd) and an HTTP receiver.

Nothing of ours is mocked. The HTTP receiver records every request, and can be told to answer 500
for the first N attempts, to hang longer than the client's timeout, or to answer a fixed status.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from metricloop.definitions import service
from metricloop.incidents.models import Incident
from metricloop.settings import Settings
from metricloop.workspace import Workspace

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# ------------------------------------------------------------------ HTTP receiver


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes
    status: int

    @property
    def key(self) -> str | None:
        return self.headers.get("x-metricloop-idempotency-key")

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records each request. `plan` answers statuses in order, then `status`; `hang` sleeps first."""

    port: int = 0
    status: int = 200
    plan: list = field(default_factory=list)  # e.g. [500, 500] then `status`; "hang" sleeps `hang_seconds`
    hang_seconds: float = 0.0
    fail_rate: float = 0.0
    rng_seed: int = 1
    requests: list[Request] = field(default_factory=list)
    arrivals: list = field(default_factory=list)  # idempotency keys as requests arrive (before any answer)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def delivered(self) -> list[Request]:
        """Requests the receiver accepted (answered 2xx, or processed before the client went away)."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def keys(self) -> list[str]:
        return [r.key for r in self.delivered()]

    def next_answer(self):
        with self.lock:
            return self.plan.pop(0) if self.plan else self.status


def _handler(receiver: Receiver):
    import random

    rng = random.Random(receiver.rng_seed)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body in two writes cost a 40 ms delayed ACK

        def log_message(self, *args):  # quiet
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with receiver.lock:
                receiver.arrivals.append(self.headers.get("X-Metricloop-Idempotency-Key"))
            answer = receiver.next_answer()
            if answer == "hang":
                time.sleep(receiver.hang_seconds)
                answer = receiver.status
            if receiver.fail_rate:
                with receiver.lock:
                    if rng.random() < receiver.fail_rate:
                        answer = 500
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.requests.append(Request(self.command, self.path, headers, body, int(answer)))
            out = json.dumps({"ok": 200 <= int(answer) < 300}).encode()
            try:
                self.send_response(int(answer))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (killed, or timed out); the request was still processed

        do_POST = _handle
        do_PUT = _handle

    return Handler


def serve(receiver: Receiver, port: int = 0):
    """Start the receiver on `port` (0: any free port); returns a function that stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop():
        server.shutdown()
        server.server_close()

    return stop


@pytest.fixture
def receiver():
    r = Receiver()
    stop = serve(r)
    yield r
    stop()


@pytest.fixture
def start_receiver():
    """Start receivers later in a test (e.g. on a port that refused connections until then)."""
    stops = []

    def start(port: int = 0) -> Receiver:
        r = Receiver()
        stops.append(serve(r, port))
        return r

    yield start
    for stop in stops:
        stop()


# ------------------------------------------------------------------ SMTP server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list = field(default_factory=list)  # (envelope recipients, parsed email.message.EmailMessage)
    refuse_first: int = 0  # answer 451 (try again later) to the first N messages

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.refuse_first > 0:
            self.refuse_first -= 1
            return "451 4.3.0 try again later"
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def mailbox():
    from aiosmtpd.controller import Controller

    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


# ------------------------------------------------------------------ state


def _pg_admin():
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        engine.dispose()
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL} ({str(e).splitlines()[0]}); start it with "
                    "`make services`", pytrace=False)  # fmt: skip
    return engine


@pytest.fixture
def notify_pg_url():
    """A fresh PostgreSQL schema, dropped after the test."""
    engine = _pg_admin()
    name = "ml_" + uuid.uuid4().hex[:12]
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    yield f"{PG_URL}?options=-csearch_path%3D{name}"
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("notify_pg_url")


def apply_yaml(ws: Workspace, yaml_text: str) -> None:
    entries, problems = service.read_text(yaml_text)
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="test")


@pytest.fixture
def make_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("METRICLOOP_DB", raising=False)
    monkeypatch.delenv("METRICLOOP_HOME", raising=False)
    opened: list[Workspace] = []

    def make(url: str | None = None, *, channels: str = "", name: str = "ws") -> Workspace:
        home = tmp_path / name
        ws = Workspace.init(home, Settings(home=home, db=url, base_url="http://metricloop.test"))
        opened.append(ws)
        if channels:
            apply_yaml(ws, channels)
        return ws

    yield make
    for ws in opened:
        ws.close()


@pytest.fixture
def ws(make_workspace, state_url):
    """An empty workspace whose state is SQLite or a fresh PostgreSQL schema."""
    return make_workspace(state_url)


def make_incident(session, **kw) -> Incident:
    values = dict(
        title="门店 S012 饮料销售额下降",
        severity="P1",
        monitor="gmv_by_store",
        metric="gmv",
        group_key=uuid.uuid4().hex[:16],
        slices=["store=S012", "store=S012, category=Drinks"],
        labels={"domain": "sales", "store": "S012"},
        summary={
            "explanation_zh": "S012 门店销售额比预期低 42%，主要来自饮料品类（缺货）。",
            "explanation_en": "Store S012 sales are 42% below expected, driven by Drinks (out of stock).",
            "actual": 12345.6,
            "expected": 21300.0,
            "lower": 18000.0,
            "upper": 24000.0,
            "deviation_pct": -42.04,
        },
        assignee="wang.fang@example.com",
        team="east-stores",
    )
    values.update(kw)
    inc = Incident(**values)
    session.add(inc)
    session.flush()
    return inc


@pytest.fixture
def new_incident():
    """make_incident as a fixture, so test modules need not import this conftest."""
    return make_incident


@pytest.fixture
def apply_defs():
    return apply_yaml


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()


def queue_notification(
    ws: Workspace,
    *,
    channel: str,
    recipient: str | None = None,
    language: str = "zh",
    event: str = "created",
    max_attempts: int = 8,
    key: str | None = None,
    **incident,
) -> str:
    """Open a minimal incident and queue its notification in one transaction, as the incident flows do."""
    from metricloop.notify.outbox import enqueue
    from metricloop.notify.render import render_incident

    with ws.db.session() as s:
        inc = make_incident(s, **incident)
        spec = ws.catalog().all("channel").get(channel)
        subject, body, payload = render_incident(
            inc,
            event=event,
            language=language,
            base_url=ws.settings.base_url,
            secret_key="test-key",
            channel_type=getattr(spec, "type", "webhook"),
        )
        key = key or f"incident:{inc.id}:{event}:0:{channel}:{recipient or channel}"
        row = enqueue(
            s,
            key=key,
            channel=channel,
            event=event,
            recipient=recipient or channel,
            incident_id=inc.id,
            subject=subject,
            body=body,
            payload=payload,
            language=language,
            max_attempts=max_attempts,
        )
        assert row is not None
    return key


@pytest.fixture
def queue():
    return queue_notification


def drain(ws: Workspace, *, passes: int = 30, step_seconds: float = 3600, **options):
    """Dispatch until nothing is due, moving the clock forward each pass so backoffs end without waiting."""
    from datetime import UTC, datetime, timedelta

    from metricloop.notify.dispatcher import DispatchStats, dispatch_once
    from metricloop.notify.outbox import counts

    total = DispatchStats()
    start = datetime.now(UTC)
    for i in range(passes):
        total += dispatch_once(ws, now=start + timedelta(seconds=i * step_seconds), **options)
        with ws.db.session() as s:
            c = counts(s)
        if c["pending"] == 0 and c["sending"] == 0:
            break
    return total


@pytest.fixture
def drain_outbox():
    return drain
