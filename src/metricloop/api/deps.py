"""Shared dependencies: the workspace, a unit of work, and the acting user from the API token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session


def workspace(request: Request):
    return request.app.state.workspace


def db_session(ws=Depends(workspace)) -> Iterator[Session]:
    with ws.db.session() as s:
        yield s


@dataclass
class Actor:
    name: str
    role: str


# Declared so the OpenAPI page offers "Authorize"; a missing token still gets our own clear 401 message.
bearer = HTTPBearer(auto_error=False, description="an API token from `metricloop tokens create NAME`")


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None:
        return credentials.credentials
    return request.headers.get("x-api-token")


def _actor(request: Request, ws, role: str, credentials) -> Actor:
    from metricloop.auth.service import authenticate, require

    with ws.db.session() as s:
        row = authenticate(s, _token(request, credentials))
        require(row, role)
        return Actor(name=row.user or row.name, role=row.role)


def operator(request: Request, ws=Depends(workspace), credentials=Depends(bearer)) -> Actor:
    """Writes need a token with the operator (or admin) role."""
    return _actor(request, ws, "operator", credentials)


def admin(request: Request, ws=Depends(workspace), credentials=Depends(bearer)) -> Actor:
    return _actor(request, ws, "admin", credentials)
