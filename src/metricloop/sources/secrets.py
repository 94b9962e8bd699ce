"""${ENV_VAR} references in source settings: expanded only when connecting, masked everywhere else."""

from __future__ import annotations

import os

from metricloop.definitions.schemas import ENV_REF
from metricloop.errors import SourceError


def server_address() -> str:
    """${METRICLOOP_ADDRESS}: this server's base URL without its scheme (host:port, and a path prefix if any), from
    METRICLOOP_BASE_URL, else METRICLOOP_HOST and METRICLOOP_PORT (`serve --port` sets them). The demo's channels
    deliver to the server's own inbox with it, whatever port it serves on."""
    from metricloop.settings import Settings

    return Settings().base_url.split("://", 1)[-1].rstrip("/")


# References that need no environment variable: not secrets, so never masked.
BUILTIN = {"METRICLOOP_ADDRESS": server_address}


def expand(value: str, *, where: str) -> tuple[str, list[str]]:
    """Return the value with ${VAR} replaced, and the secret values used (for masking)."""
    used: list[str] = []

    def sub(m):
        var = m.group(1)
        if var not in os.environ and var in BUILTIN:
            return BUILTIN[var]()
        if var not in os.environ:
            raise SourceError(f"environment variable {var} is not set", where=where)
        used.append(os.environ[var])
        return os.environ[var]

    return ENV_REF.sub(sub, value), [u for u in used if u]


def mask(text: str, secrets: list[str]) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        if len(s) >= 3:
            text = text.replace(s, "***")
    return text


def expand_url(template: str, *, where: str):
    """Expand ${VAR} references in an SQLAlchemy URL, one part at a time.

    A secret is put into the parsed URL as it is, so characters such as @ / : # in a password cannot
    change where the URL points (nor leak as a "host name" in the error that follows). A URL that cannot
    be parsed with its references in place (e.g. `${DATABASE_URL}`, or a port from a variable) is expanded
    as text and then parsed.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(template)
    except (ArgumentError, ValueError):
        url = None
    if url is None:
        text, used = expand(template, where=where)
        try:
            return make_url(text), used
        except (ArgumentError, ValueError):
            # never echo the URL: it now holds the secrets
            raise SourceError("not a valid SQLAlchemy URL once ${...} is expanded", where=where) from None
    used: list[str] = []
    parts: dict = {}
    for part in ("drivername", "username", "password", "host", "database"):
        value = getattr(url, part)
        if value and ENV_REF.search(str(value)):
            parts[part], secrets = expand(str(value), where=where)
            used += secrets
    query: dict = {}
    for key, value in url.query.items():
        values = value if isinstance(value, tuple) else (value,)
        expanded = []
        for v in values:
            text, secrets = expand(v, where=where)
            expanded.append(text)
            used += secrets
        query[key] = tuple(expanded) if isinstance(value, tuple) else expanded[0]
    return url.set(**parts, query=query), used
