"""Real servers on loopback for the tests that deliver: an HTTP receiver and an SMTP server (aiosmtpd).

One implementation for tests/notify and tests/loop. Test modules import it by its bare name (`from loopback import
…`): tests/conftest.py sits in this folder, and pytest puts a conftest's folder on sys.path. A conftest makes the
fixtures `receiver` and `mailbox` available by importing them.

Nothing of metricloop is mocked. The receiver records every request; it can answer a fixed `status`, a `plan` of
answers first (e.g. [500, 500], or "hang" to sleep `hang_seconds` before answering, longer than a client's timeout).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ HTTP receiver


@dataclass
class Received:
    method: str
    path: str
    headers: dict  # names in lower case
    body: bytes  # raw, as signed
    status: int  # what the receiver answered

    @property
    def key(self) -> str | None:
        return self.headers.get("x-metricloop-idempotency-key")

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records each request. `plan` gives the answers in order (a status, or "hang"), then `status`."""

    port: int = 0  # 0: any free port, chosen when it starts
    status: int = 200
    plan: list = field(default_factory=list)
    hang_seconds: float = 0.0
    requests: list[Received] = field(default_factory=list)  # in the order they were answered
    arrivals: list = field(default_factory=list)  # idempotency keys as requests arrive, before any answer
    arrived: threading.Event = field(default_factory=threading.Event)  # set by the first request
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted(self) -> list[Received]:
        """Requests the receiver accepted (answered 2xx, or processed before the client went away)."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def keys(self) -> list[str]:
        return [r.key for r in self.accepted()]

    def next_answer(self):
        with self.lock:
            return self.plan.pop(0) if self.plan else self.status


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body in two writes cost a 40 ms delayed ACK

        def log_message(self, *args):  # quiet
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.arrivals.append(self.headers.get("X-Metricloop-Idempotency-Key"))
            receiver.arrived.set()
            if len(body) < length:
                # the sender died between its headers and its body (a killed dispatcher): as for a real
                # server, nothing arrived to act on and there is no one to answer
                return
            answer = receiver.next_answer()
            if answer == "hang":
                time.sleep(receiver.hang_seconds)
                answer = receiver.status
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.requests.append(Received(self.command, self.path, headers, body, int(answer)))
            out = json.dumps({"ok": 200 <= int(answer) < 300}).encode()
            try:
                self.send_response(int(answer))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (killed, or timed out); the request was still processed

        do_POST = _handle  # noqa: N815 - http.server's hook names
        do_PUT = _handle  # noqa: N815

    return Handler


def start_receiver(receiver: Receiver):
    """Serve `receiver` on its port (0: any free one, then set on it); returns a function that stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop():
        server.shutdown()
        server.server_close()

    return stop


def verify_signature(secret: str, request: Received, *, tolerance: int = 300) -> bool:
    """What a receiver does, written from the documented algorithm (not with metricloop's code):
    X-Metricloop-Signature = "sha256=" + hex HMAC-SHA256(secret, f"{X-Metricloop-Timestamp}." + raw body)."""
    ts = request.headers.get("x-metricloop-timestamp")
    given = request.headers.get("x-metricloop-signature", "")
    if not ts or abs(time.time() - int(ts)) > tolerance:
        return False
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given, f"sha256={mac}")


@pytest.fixture
def receiver():
    r = Receiver()
    stop = start_receiver(r)
    yield r
    stop()


# ------------------------------------------------------------------ SMTP server


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

    def to(self, address: str) -> list:
        return [m for rcpts, m in self.messages if address in rcpts]


@pytest.fixture
def mailbox():
    from aiosmtpd.controller import Controller

    box = Mailbox(port=free_port())
    controller = Controller(box, hostname=box.host, port=box.port)
    controller.start()
    yield box
    controller.stop()
