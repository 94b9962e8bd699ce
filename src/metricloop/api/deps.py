"""Shared dependencies: the workspace, a unit of work, and who is calling (from the API token).

Every /api route needs a token: `viewer` (any role) to read, `operator` to change things, `admin` to administer.
The exceptions are /api/health, the signed acknowledge/resolve links of messages and their confirmations
(metricloop.web.links: the signature is the permission) and the demo inbox's receiver; tests/test_api_auth.py walks
every route to keep it so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session


# The dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in the thread pool, and
# each such hop (with the GIL handed back and forth) cost more than the work of a small read (bench/api_load.py).
async def workspace(request: Request):
    return request.app.state.workspace


def db_session(ws=Depends(workspace)) -> Iterator[Session]:
    with ws.db.session() as s:
        yield s


@dataclass
class Actor:
    name: str  # the person acting: the token's user
    role: str
    token: str = ""  # the token's name
    domains: list[str] | None = None  # the metric domains it may see; None: every domain


def actor_for(s: Session, row) -> Actor:
    """Who holds token `row`: a token of a console user carries that user's role and domains (admins: all);
    a token without a user keeps its own role and sees every domain."""
    from metricloop.auth.models import User
    from metricloop.auth.service import AuthError

    if row.user_id is None:
        return Actor(name=row.user or row.name, role=row.role, token=row.name)
    user = s.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        raise AuthError("the API token is not valid (its user is disabled)")
    domains = None if user.role == "admin" else list(user.domains or [])
    return Actor(name=user.name, role=user.role, token=row.name, domains=domains)


def metric_scope(ws, actor: Actor | None) -> set[str] | None:
    """The metric names `actor` may see, or None for all."""
    from metricloop.auth.users import scope

    return scope(ws.catalog(), actor.domains if actor is not None else None)


def check_metric(ws, actor: Actor | None, metric: str, what: str = "metric", name: str | None = None) -> None:
    """A metric (or the incident / monitor of one) outside the actor's domains does not exist for them: 404."""
    from metricloop.errors import NotFound

    allowed = metric_scope(ws, actor)
    if allowed is not None and metric not in allowed:
        raise NotFound(f"no {what} '{name or metric}'")


# Declared so the OpenAPI page offers "Authorize"; a missing token still gets our own clear 401 message.
bearer = HTTPBearer(auto_error=False, description="an API token from `metricloop tokens create NAME`")


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None:
        return credentials.credentials
    return request.headers.get("x-api-token")


def caller(request: Request, ws=Depends(workspace), credentials=Depends(bearer)) -> Actor | None:
    """The holder of the request's token, or None when it sent none; a token that is not valid is refused (401).
    FastAPI runs a dependency once per request, so a route that needs a role and sits on a router that needs
    one looks the token up once."""
    from metricloop.auth.service import authenticate

    token = _token(request, credentials)
    if not token:
        return None
    with ws.db.session() as s:
        return actor_for(s, authenticate(s, token))


def _needs(actor: Actor | None, role: str) -> Actor:
    from metricloop.auth.service import missing_token, require

    if actor is None:
        raise missing_token(role)
    require(actor.token, actor.role, role)
    return actor


async def viewer(ws=Depends(workspace), actor: Actor | None = Depends(caller)) -> Actor | None:
    """Reads need a token of any role, unless METRICLOOP_PUBLIC_READS lets anyone read."""
    if actor is None and ws.settings.public_reads:
        return None
    return _needs(actor, "viewer")


async def operator(actor: Actor | None = Depends(caller)) -> Actor:
    """Writes need a token with the operator (or admin) role."""
    return _needs(actor, "operator")


async def admin(actor: Actor | None = Depends(caller)) -> Actor:
    return _needs(actor, "admin")
