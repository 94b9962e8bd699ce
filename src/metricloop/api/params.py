"""What the API's parameters and bodies may hold, checked before a route runs: a value out of range is a 422 that
names the parameter, never an overflow in the database (ids are INTEGER columns, 32-bit on PostgreSQL), in
`timedelta` or in pandas.

Routes use these types instead of bare `int`, `float` and `datetime`, so a new route gets the same checks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict

MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on every state database
MAX_OFFSET = 2**31 - 1
MAX_LIMIT = 1000
# Times the API accepts, in queries and bodies: wide enough for any business data, inside what pandas, Python's
# datetime (after converting an offset to UTC) and every state database can hold.
MIN_TIME = datetime(1900, 1, 1)
MAX_TIME = datetime(2200, 1, 1)
TIME_RANGE = f"from {MIN_TIME.date()} to before {MAX_TIME.date()}"


def id_path(what: str):
    return Path(ge=1, le=MAX_ID, description=f"the {what}'s id (1 … {MAX_ID})")


IncidentId = Annotated[int, id_path("incident")]
RunId = Annotated[int, id_path("run")]
SilenceId = Annotated[int, id_path("silence")]
NotificationId = Annotated[int, id_path("outbox row")]
IdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID, description="an id (1 … 2147483647)")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"at most this many rows (1 … {MAX_LIMIT})")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="skip this many rows first")]


def _in_range(value: datetime) -> datetime:
    """An aware time must stay a valid time once converted to UTC; any time must lie in TIME_RANGE."""
    try:
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    except (OverflowError, ValueError):
        raise ValueError(f"{value.isoformat()} is out of range: a time must be {TIME_RANGE}") from None
    if not MIN_TIME <= naive < MAX_TIME:
        raise ValueError(f"{value.isoformat()} is out of range: a time must be {TIME_RANGE}")
    return value


Moment = Annotated[datetime, AfterValidator(_in_range)]
"""A date/time in a body: ISO 8601, with or without an offset, within TIME_RANGE."""


def _time_text(value: str | None) -> str | None:
    """A date/time given as query text (kept as text: the metric's timezone decides what a naive one means)."""
    if value is None or value == "":
        return value
    from metricloop.errors import QueryError
    from metricloop.metrics.timeutil import parse_time

    try:
        parse_time(value, "UTC", what="")
    except QueryError as e:
        raise ValueError(e.message) from None
    return value


TimeText = Annotated[str | None, AfterValidator(_time_text)]


class Body(BaseModel):
    """A JSON body: no unknown fields, and no NaN or ±Infinity (Python's JSON reader accepts them)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


MAX_SILENCE_MINUTES = 3660 * 24 * 60  # ten years and a bit: a silence that long is a decision, not an accident
