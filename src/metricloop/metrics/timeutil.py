"""Time windows and bucket ranges, in the metric's timezone (naive local times)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pandas as pd

from metricloop.errors import QueryError
from metricloop.grains import ByGrain, parse_grain

# pandas frequency of each grain; a step grain (5min, 2h) is its step in seconds ("300s"), whose
# buckets line up with midnight because the step divides a day
FREQ = ByGrain({"minute": "min", "hour": "h", "day": "D", "week": "W-MON", "month": "MS"},
               derive=lambda g: f"{int(parse_grain(g))}s")
# Times a query may name: wide enough for any business data, inside what pandas and every source can hold.
FIRST_TIME = pd.Timestamp("1900-01-01")
END_TIME = pd.Timestamp("2200-01-01")


def parse_time(value: str | date | datetime | None, tz: str, *, what: str) -> datetime | None:
    """ISO date/time → naive local time in `tz` (aware inputs are converted)."""
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise QueryError(
            f"'{value}' is not a date or time (use e.g. 2026-11-01 or 2026-11-01T08:00)", where=what
        ) from None
    if ts is pd.NaT:
        raise QueryError(f"'{value}' is not a date or time", where=what)
    if not FIRST_TIME <= ts.tz_localize(None) < END_TIME:
        raise QueryError(
            f"'{value}' is out of range: a time must be from {FIRST_TIME.date()} to before {END_TIME.date()}",
            where=what,
        )
    if ts.tzinfo is not None:
        ts = ts.tz_convert(ZoneInfo(tz)).tz_localize(None)
    return ts.to_pydatetime()


def floor(ts: pd.Timestamp, grain: str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    if grain == "week":
        return ts.normalize() - pd.Timedelta(days=ts.weekday())
    if grain == "month":
        return ts.normalize().replace(day=1)
    return ts.floor(FREQ[grain])


def buckets(
    first: datetime, last_exclusive: datetime | None, grain: str, *, last: datetime | None = None
) -> pd.DatetimeIndex:
    """Every bucket start from the one holding `first` to the one holding `last` (or before `last_exclusive`)."""
    start = floor(pd.Timestamp(first), grain)
    if last_exclusive is not None:
        stop = floor(pd.Timestamp(last_exclusive) - pd.Timedelta(microseconds=1), grain)
    else:
        stop = floor(pd.Timestamp(last), grain)
    if stop < start:
        return pd.DatetimeIndex([])
    return pd.date_range(start, stop, freq=FREQ[grain])


def now_local(tz: str) -> datetime:
    return datetime.now(ZoneInfo(tz)).replace(tzinfo=None)
