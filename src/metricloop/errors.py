"""Errors a person can act on: each says what is wrong and where."""

from __future__ import annotations

from dataclasses import dataclass, field


class MetricloopError(Exception):
    """Base class for errors shown to users (CLI exit code 2, API 4xx)."""

    status_code = 400

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class NotFound(MetricloopError):
    status_code = 404


class SourceError(MetricloopError):
    """A source is unreachable, misconfigured or failed a query."""

    status_code = 502


class QueryError(MetricloopError):
    """A metric query asked for something the definition does not allow."""


class InvalidInput(MetricloopError):
    """A well-formed request whose content cannot be taken (too long, too many, a pattern RE2 refuses)."""

    status_code = 422


@dataclass
class Problem:
    """One problem in a definition file, located by file, line and field path."""

    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        place = ""
        if self.file:
            place = self.file + (f":{self.line}" if self.line else "")
        if self.field:
            place = f"{place} {self.field}".strip()
        return f"{place}: {self.message}" if place else self.message


@dataclass
class DefinitionError(MetricloopError):
    """One or more definitions are invalid; nothing was written."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        MetricloopError.__init__(self, f"{n} problem{'s' if n != 1 else ''} found, nothing was changed:\n{lines}")


class TooLarge(MetricloopError):
    """A request body over the server's limit (METRICLOOP_MAX_BODY_BYTES)."""

    status_code = 413


class RateLimited(MetricloopError):
    """Too many requests from one address to the routes that need no token; try again after `retry_after` s."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: int, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.headers = {"Retry-After": str(retry_after)}
