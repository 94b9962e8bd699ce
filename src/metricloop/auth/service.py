"""API tokens. Only a SHA-256 hash is stored; the token itself is shown once, when it is created."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.auth.models import ApiToken
from metricloop.db.times import aware
from metricloop.errors import MetricloopError, NotFound

ROLES = ("viewer", "operator", "admin")
# `last_used_at` is written at most once a minute per token: a write per request would serialize every read
# of the API on the database's write lock (SQLite) and cost a commit each.
TOUCH_EVERY = timedelta(minutes=1)


class AuthError(MetricloopError):
    status_code = 401


class Forbidden(MetricloopError):
    status_code = 403


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    db_session: Session, *, name: str, role: str = "operator", user: str = "", user_id: int | None = None
) -> str:
    """A new token; with `user_id` it belongs to that console user and carries the user's role and domains."""
    if role not in ROLES:
        raise MetricloopError(f"role must be one of {', '.join(ROLES)}, not '{role}'", where="role")
    if db_session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise MetricloopError(f"a token named '{name}' already exists", where="name")
    token = "ml_" + secrets.token_urlsafe(32)
    db_session.add(ApiToken(name=name, token_hash=_hash(token), role=role, user=user or name, user_id=user_id))
    return token


def missing_token(role: str = "viewer") -> AuthError:
    """The error for a request that carries no token: what to send, and how to get a token that is enough."""
    held = "any role" if role == "viewer" else f"role {role} or admin" if role == "operator" else f"role {role}"
    return AuthError(
        f"this call needs an API token ({held}): send 'Authorization: Bearer <token>' "
        f"(create one with `metricloop tokens create NAME --role {role}`)"
    )


def authenticate(db_session: Session, token: str | None) -> ApiToken:
    if not token:
        raise missing_token()
    row = db_session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
    if row is None or row.revoked_at is not None:
        raise AuthError("the API token is not valid (unknown or revoked)")
    now = datetime.now(UTC)
    if row.last_used_at is None or aware(row.last_used_at) <= now - TOUCH_EVERY:
        row.last_used_at = now
    return row


def require(name: str, held: str, role: str) -> None:
    """Refuse (403) token `name`, whose role is `held`, a call that needs `role`."""
    if ROLES.index(held) < ROLES.index(role):
        raise Forbidden(f"token '{name}' has role {held}; this call needs {role}")


def revoke(db_session: Session, *, name: str) -> ApiToken:
    row = db_session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise NotFound(f"no token named '{name}'")
    row.revoked_at = row.revoked_at or datetime.now(UTC)
    return row


def list_tokens(db_session: Session) -> list[ApiToken]:
    return list(db_session.scalars(select(ApiToken).order_by(ApiToken.name)))
