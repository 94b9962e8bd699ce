"""Shared dependencies: the workspace, a unit of work, and the acting user from the API token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, Request
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


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-token")


def _actor(request: Request, ws, role: str) -> Actor:
    from metricloop.auth.service import authenticate, require

    with ws.db.session() as s:
        row = authenticate(s, _token(request))
        require(row, role)
        return Actor(name=row.user or row.name, role=row.role)


def operator(request: Request, ws=Depends(workspace)) -> Actor:
    """Writes need a token with the operator (or admin) role."""
    return _actor(request, ws, "operator")


def admin(request: Request, ws=Depends(workspace)) -> Actor:
    return _actor(request, ws, "admin")
