"""Console sessions: a signed cookie that names a server-side session row.

The cookie (HttpOnly, SameSite=Lax, expiring) carries the session's id and the user's session generation, signed
with the workspace's secret key (itsdangerous). The row holds the expiry, the CSRF token of its forms and, after
logout, when it ended: a cookie copied before logout is refused after it. Resetting a password or disabling a
user bumps the generation, which ends every session of theirs.

Logins are rate limited twice: a user name is locked after 10 wrong passwords in a row (auth/users.py), and a
client address that sent 10 wrong passwords in the last 15 minutes gets 429 until they age out.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from metricloop.auth.models import User, WebSession
from metricloop.notify.signing import secret_key_for

COOKIE = "ml_session"
SESSION_TTL = timedelta(hours=12)
CLIENT_FAILURES = 10
CLIENT_WINDOW = 15 * 60  # seconds


@dataclass
class Who:
    """The logged-in person of a request."""

    user_id: int
    name: str
    display_name: str
    email: str
    role: str
    domains: list[str] | None  # None: every domain (admin)
    session_id: str
    csrf: str
    lang: str = "en"  # the language of the request's page, set by the route

    def can(self, role: str) -> bool:
        from metricloop.auth.service import ROLES

        return ROLES.index(self.role) >= ROLES.index(role)


def _serializer(ws) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key_for(ws), salt="metricloop-console-session")


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def start(ws, user: User, response: Response, *, secure: bool = False) -> str:
    """A new session for `user`; sets the cookie on `response`. Returns the session id."""
    sid = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with ws.db.session() as s:
        s.add(
            WebSession(
                id=sid, user_id=user.id, csrf=secrets.token_urlsafe(32), created_at=now, expires_at=now + SESSION_TTL
            )
        )
    value = _serializer(ws).dumps({"sid": sid, "gen": user.session_generation})
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    return sid


def current(ws, request: Request) -> Who | None:
    """The session's person, or None: no cookie, a bad signature, expired, ended (logout), or the user's
    sessions were ended (password reset, disabled)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(ws).loads(raw, max_age=int(SESSION_TTL.total_seconds()))
        sid, gen = str(data["sid"]), int(data["gen"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    with ws.db.session() as s:
        row = s.get(WebSession, sid)
        if row is None or row.ended_at is not None or _aware(row.expires_at) <= datetime.now(UTC):
            return None
        user = s.get(User, row.user_id)
        if user is None or user.disabled_at is not None or user.session_generation != gen:
            return None
        domains = None if user.role == "admin" else list(user.domains or [])
        return Who(user.id, user.name, user.display_name or user.name, user.email, user.role, domains, sid, row.csrf)


def end(ws, who: Who | None, response: Response) -> None:
    """Logout: the row is ended, so the cookie is refused from now on even if a copy of it survives."""
    if who is not None:
        with ws.db.session() as s:
            row = s.get(WebSession, who.session_id)
            if row is not None:
                row.ended_at = datetime.now(UTC)
    response.delete_cookie(COOKIE, path="/")


def csrf_ok(who: Who, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(who.csrf, sent)


class ClientLimiter:
    """Wrong passwords per client address in a sliding window (in memory: per server process)."""

    def __init__(self, limit: int = CLIENT_FAILURES, window: float = CLIENT_WINDOW) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._seen.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            q = self._recent(key, now)
            return q[0] + self.window - now if len(q) >= self.limit else 0.0

    def failed(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)
            if len(self._seen) > 10_000:  # a flood of addresses: forget the quiet ones
                for k in [k for k, v in self._seen.items() if not v]:
                    del self._seen[k]
