"""Limits that keep one client from taking the server down: the size of a request body, and how often one address
may call the routes that need no token.

- BodyLimit (ASGI middleware): a body over METRICLOOP_MAX_BODY_BYTES is refused with 413 before any route runs. It
  counts the bytes as they arrive, so a body sent in chunks or with a false (or no) Content-Length is stopped at the
  limit too; a declared Content-Length over the limit is refused without reading anything.
- rate_limited (a dependency of the routes that need no token: the inbox's receiver, the signed message links and
  their confirmations, the incident page, health): a token bucket per client address, in this process,
  METRICLOOP_RATE_LIMIT_PER_MINUTE requests a minute with bursts of METRICLOOP_RATE_LIMIT_BURST; over it, 429 with
  Retry-After. Calls with an API token are not limited here: the token already says who is calling.
"""

from __future__ import annotations

import math
import threading
import time

from fastapi import Request
from fastapi.responses import JSONResponse

from metricloop.errors import RateLimited


def _size(n: int) -> str:
    return f"{n} bytes" + (f" ({n / 1024 / 1024:g} MiB)" if n >= 1024 * 1024 else "")


class BodyLimit:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope, receive, send, got: str) -> None:
        message = f"the request body is {got}: the limit is {_size(self.max_bytes)} (METRICLOOP_MAX_BODY_BYTES)"
        await JSONResponse({"error": message, "where": "body"}, status_code=413, headers={"Connection": "close"})(
            scope, receive, send
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, f"{_size(int(declared))} (Content-Length)")
            return
        chunks: list[bytes] = []
        size = 0
        last: dict | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                last = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, f"over {_size(self.max_bytes)}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                if last is not None:
                    return last
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RateLimiter:
    """Token buckets per client address: `per_minute` requests a minute on average, `burst` at once."""

    MAX_ADDRESSES = 10_000  # buckets kept; beyond, the ones idle longest are forgotten (they start full again)

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(burst, 1)
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # address → (tokens, when)
        self._lock = threading.Lock()

    def take(self, address: str, now: float | None = None) -> float:
        """Take one request's token for `address`: 0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, when = self._buckets.pop(address, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[address] = (tokens - 1 if tokens >= 1 else tokens, now)  # most recent last
            while len(self._buckets) > self.MAX_ADDRESSES:
                self._buckets.pop(next(iter(self._buckets)))
            return wait


async def rate_limited(request: Request) -> None:
    """The dependency of the routes that need no token: refuse (429) an address over its rate."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    address = request.client.host if request.client else "unknown"
    wait = limiter.take(address)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise RateLimited(
            f"too many requests from {address} to the routes that need no token (at most {limiter.per_minute} "
            f"a minute, {limiter.burst} at once): try again in {seconds} s",
            retry_after=seconds,
            where=request.url.path,
        )
