"""${ENV_VAR} references in source settings: expanded only when connecting, masked everywhere else."""

from __future__ import annotations

import os

from metricloop.definitions.schemas import ENV_REF
from metricloop.errors import SourceError


def expand(value: str, *, where: str) -> tuple[str, list[str]]:
    """Return the value with ${VAR} replaced, and the secret values used (for masking)."""
    used: list[str] = []

    def sub(m):
        var = m.group(1)
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
