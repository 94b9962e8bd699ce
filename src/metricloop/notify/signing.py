"""Signatures: expiring links in messages (view, ack, resolve) and HMAC-signed webhook bodies.

Link tokens are `<payload>.<mac>`, both base64url without padding. The payload is compact JSON
`{"i": incident_id, "a": action, "e": expiry (unix seconds)}` and the mac is HMAC-SHA256 over the
payload text with the workspace's secret key. Nothing in a token is secret; it only cannot be forged.
`view` opens the incident's page; `ack` and `resolve` act on the incident (after a confirmation).

Webhook signatures follow the common "timestamp.body" scheme (as Stripe and Slack do) so a receiver
can reject replays: `X-Metricloop-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

from metricloop.errors import MetricloopError

if TYPE_CHECKING:
    from metricloop.workspace import Workspace

ACTIONS = ("view", "ack", "resolve")
DEFAULT_TTL = 7 * 86400
SECRET_KEY_FILE = ".secret_key"

IDEMPOTENCY_HEADER = "X-Metricloop-Idempotency-Key"
TIMESTAMP_HEADER = "X-Metricloop-Timestamp"
SIGNATURE_HEADER = "X-Metricloop-Signature"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, message: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()


def sign_action(
    incident_id: int,
    action: str,
    *,
    key: str,
    ttl_seconds: int = DEFAULT_TTL,
    now: float | None = None,
    expires: int | None = None,
) -> str:
    """A token that lets whoever holds the link perform `action` on the incident until it expires
    (`expires`, unix seconds, else `ttl_seconds` from now)."""
    if not key:
        raise MetricloopError("no secret key to sign links with (set METRICLOOP_SECRET_KEY)")
    if action not in ACTIONS:
        raise MetricloopError(f"unknown link action '{action}' (known: {', '.join(ACTIONS)})")
    if expires is None:
        expires = int((time.time() if now is None else now) + ttl_seconds)
    body = json.dumps({"i": int(incident_id), "a": action, "e": int(expires)}, separators=(",", ":"), sort_keys=True)
    payload = _b64(body.encode("utf-8"))
    return f"{payload}.{_b64(_mac(key, payload.encode('ascii')))}"


def verify_action(token: str, *, key: str, action: str | None = None, now: float | None = None) -> tuple[int, str]:
    """Return (incident_id, action) of a valid token; raise MetricloopError if forged, malformed or expired.

    Pass `action` to also require that the token was issued for that action (an ack link cannot resolve).
    """
    incident_id, token_action, _ = _verified(token, key=key, action=action, now=now)
    return incident_id, token_action


def verify_link(token: str | None, *, key: str, action: str, incident_id: int, now: float | None = None) -> int:
    """The expiry (unix seconds) of a valid `action` token for this incident; raise MetricloopError otherwise."""
    if not token:
        raise MetricloopError("the link has no token")
    token_incident, _, expires = _verified(token, key=key, action=action, now=now)
    if token_incident != incident_id:
        raise MetricloopError("this link belongs to another incident")
    return expires


def _verified(token: str, *, key: str, action: str | None, now: float | None) -> tuple[int, str, int]:
    if not token or token.count(".") != 1:
        raise MetricloopError("the link's token is malformed")
    payload, mac = token.split(".")
    try:
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        raise MetricloopError("the link's token is malformed") from None
    if not hmac.compare_digest(given, _mac(key, payload.encode("ascii"))):
        raise MetricloopError("the link's signature is not valid (was it changed, or signed with another key?)")
    try:
        data = json.loads(_unb64(payload))
        incident_id, token_action, expires = int(data["i"]), str(data["a"]), int(data["e"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise MetricloopError("the link's token is malformed") from None
    if (time.time() if now is None else now) > expires:
        raise MetricloopError("the link has expired")
    if action is not None and token_action != action:
        raise MetricloopError(f"the link is for '{token_action}', not '{action}'")
    return incident_id, token_action, expires


def webhook_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The value of X-Metricloop-Signature for this body and timestamp."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_headers(secret: str | None, body: bytes, idempotency_key: str, *, timestamp: int | None = None) -> dict:
    """Headers every outbound webhook carries; the signature only when the channel has a secret."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    headers = {IDEMPOTENCY_HEADER: idempotency_key, TIMESTAMP_HEADER: str(ts)}
    if secret:
        headers[SIGNATURE_HEADER] = webhook_signature(secret, body, ts)
    return headers


def verify_webhook(secret: str, body: bytes, headers: dict, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (see docs/notifications.md): check the signature and that it is recent."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        ts = int(lower[TIMESTAMP_HEADER.lower()])
        given = lower[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(given, webhook_signature(secret, body, ts))


def secret_key_for(ws: Workspace) -> str:
    """settings.secret_key, else a random key created once in HOME/.secret_key (readable by the owner only)."""
    if ws.settings.secret_key:
        return ws.settings.secret_key
    path = Path(ws.home) / SECRET_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="ascii").strip()
        if key:
            return key
    key = secrets.token_urlsafe(32)
    # O_EXCL: two processes starting at once agree on one key (the loser reads the winner's).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the winner may not have written it yet
            key = path.read_text(encoding="ascii").strip()
            if key:
                return key
            time.sleep(0.01)
        raise MetricloopError(f"{path} is empty; delete it or set METRICLOOP_SECRET_KEY") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    return key
