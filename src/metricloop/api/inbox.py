"""/api/inbox: a built-in webhook receiver, so the demo (and a new team) can see deliveries with no other server.

It keeps the last 500 messages in memory and verifies signatures when METRICLOOP_INBOX_SECRET is set. Delivering
to it needs no API token (the senders are channels, which have none); reading it needs a viewer's, and shows the
messages with their link tokens redacted.
"""

from __future__ import annotations

import json
import os
from collections import deque
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request

from metricloop.api.contract import errors
from metricloop.api.deps import viewer
from metricloop.api.guards import rate_limited
from metricloop.api.params import Limit

router = APIRouter(prefix="/api/inbox", tags=["inbox"])
_MESSAGES: deque[dict] = deque(maxlen=500)


@router.post("/{box}", status_code=202, dependencies=[Depends(rate_limited)], responses=errors(413))
async def receive(box: str, request: Request) -> dict:
    body = await request.body()
    key = request.headers.get("x-metricloop-idempotency-key", "")
    verified = None
    secret = os.environ.get("METRICLOOP_INBOX_SECRET")
    if secret:
        from metricloop.notify.signing import verify_webhook

        verified = verify_webhook(secret, body, dict(request.headers))
    duplicate = bool(key) and any(m["idempotency_key"] == key and m["box"] == box for m in _MESSAGES)
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        payload = body.decode("utf-8", "replace")
    if not duplicate:
        _MESSAGES.appendleft(
            {
                "box": box,
                "received_at": datetime.now(UTC).isoformat(),
                "idempotency_key": key,
                "signature_ok": verified,
                "payload": payload,
            }
        )
    return {"accepted": True, "duplicate": duplicate}


@router.get("", dependencies=[Depends(viewer)])
def messages(box: str | None = None, limit: Limit = 50) -> list[dict]:
    """The messages, newest first, their signed link tokens redacted: a link acts as the person it was sent to, so a
    viewer reading the inbox must not get one."""
    from metricloop.notify.links import redact

    return [redact(m) for m in [m for m in _MESSAGES if box is None or m["box"] == box][:limit]]
