"""Signatures: expiring links in messages (view, ack, resolve) and HMAC-signed webhook bodies.

Link tokens are `<payload>.<mac>`, both base64url without padding. The payload is compact JSON
`{"i": incident_id, "a": action, "e": expiry (unix seconds), "g": episode, "n": nonce, "r": recipient,
"v": via}` and the mac is HMAC-SHA256 over the payload text with the workspace's secret key. Nothing in a
token is secret; it only cannot be forged. `view` opens the incident's page; `ack` and `resolve` act on the
incident (after a confirmation), once (web/links.py spends them), as the recipient the message was sent to,
and only in the episode they were issued in (`g`: how many times the incident had been reopened).

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from metricloop.errors import MetricloopError

if TYPE_CHECKING:
    from metricloop.workspace import Workspace

ACTIONS = ("view", "ack", "resolve", "false_alarm", "expected")  # the last two: feedback links
DEFAULT_TTL = 7 * 86400
MAX_TOKEN_LENGTH = 2048  # a real token is ~250 characters; anything much longer is not one
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


@dataclass(frozen=True)
class Link:
    """What a valid token says: which incident, what for, until when, for which episode, and for whom."""

    incident_id: int
    action: str
    expires: int
    episode: int = 0
    nonce: str = ""
    recipient: str = ""
    via: str = ""


def new_nonce() -> str:
    return secrets.token_urlsafe(12)


def sign_action(
    incident_id: int,
    action: str,
    *,
    key: str,
    ttl_seconds: int = DEFAULT_TTL,
    now: float | None = None,
    expires: int | None = None,
    episode: int = 0,
    nonce: str | None = None,
    recipient: str = "",
    via: str = "",
) -> str:
    """A token for `action` on the incident until it expires (`expires`, unix seconds, else `ttl_seconds` from now),
    in its `episode`, on behalf of `recipient` (reached `via` a channel type); `nonce` names the link (random if not
    given): a used ack/resolve link is spent by it."""
    if not key:
        raise MetricloopError("no secret key to sign links with (set METRICLOOP_SECRET_KEY)")
    if action not in ACTIONS:
        raise MetricloopError(f"unknown link action '{action}' (known: {', '.join(ACTIONS)})")
    if expires is None:
        expires = int((time.time() if now is None else now) + ttl_seconds)
    claims = {
        "i": int(incident_id),
        "a": action,
        "e": int(expires),
        "g": int(episode),
        "n": nonce or new_nonce(),
        "r": str(recipient),
        "v": str(via),
    }
    body = json.dumps(claims, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    payload = _b64(body.encode("utf-8"))
    return f"{payload}.{_b64(_mac(key, payload.encode('ascii')))}"


def verify_action(token: str, *, key: str, action: str | None = None, now: float | None = None) -> tuple[int, str]:
    """Return (incident_id, action) of a valid token; raise MetricloopError if forged, malformed or expired.

    Pass `action` to also require that the token was issued for that action (an ack link cannot resolve).
    """
    link = _verified(token, key=key, action=action, now=now)
    return link.incident_id, link.action


def check_link(token: str | None, *, key: str, action: str, incident_id: int, now: float | None = None) -> Link:
    """What a valid `action` token for this incident says; raise MetricloopError otherwise (never anything else,
    whatever the token holds)."""
    if not token:
        raise MetricloopError("the link has no token")
    link = _verified(token, key=key, action=action, now=now)
    if link.incident_id != incident_id:
        raise MetricloopError("this link belongs to another incident")
    return link


def verify_link(token: str | None, *, key: str, action: str, incident_id: int, now: float | None = None) -> int:
    """The expiry (unix seconds) of a valid `action` token for this incident; raise MetricloopError otherwise."""
    return check_link(token, key=key, action=action, incident_id=incident_id, now=now).expires


_MALFORMED = "the link's token is malformed"


def _verified(token: str, *, key: str, action: str | None, now: float | None) -> Link:
    # Whatever arrives in a query string (non-ASCII, bad base64, too many parts, megabytes) is refused with a
    # MetricloopError: the pages answer 400/401 for it, never 500.
    if not isinstance(token, str) or not token or token.count(".") != 1:
        raise MetricloopError(_MALFORMED)
    if len(token) > MAX_TOKEN_LENGTH:
        raise MetricloopError(f"{_MALFORMED} (longer than {MAX_TOKEN_LENGTH} characters)")
    payload, mac = token.split(".")
    try:
        given = _unb64(mac)
        expected = _mac(key, payload.encode("ascii"))
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
        raise MetricloopError(_MALFORMED) from None
    if not hmac.compare_digest(given, expected):
        raise MetricloopError("the link's signature is not valid (was it changed, or signed with another key?)")
    try:
        data = json.loads(_unb64(payload))
        link = Link(
            incident_id=int(data["i"]),
            action=str(data["a"]),
            expires=int(data["e"]),
            episode=int(data["g"]),
            nonce=str(data["n"]),
            recipient=str(data.get("r") or ""),
            via=str(data.get("v") or ""),
        )
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        # a token signed before links had episodes and nonces is refused too: it could not be spent
        raise MetricloopError(_MALFORMED) from None
    if not link.nonce:
        raise MetricloopError(_MALFORMED)
    if (time.time() if now is None else now) > link.expires:
        raise MetricloopError("the link has expired")
    if action is not None and link.action != action:
        raise MetricloopError(f"the link is for '{link.action}', not '{action}'")
    return link


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
