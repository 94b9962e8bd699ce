"""Stored moments are UTC.

SQLite hands back naive datetimes for timezone-aware columns (they are UTC) and stores the wall-clock time it
is given, dropping the zone: a time given as 09:00+08:00 would be read back as 09:00 UTC. Every moment written
goes through `as_utc`, every moment read through `aware`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(t: datetime | None) -> datetime | None:
    """A stored moment with its zone (naive means UTC)."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def as_utc(t: datetime | None = None) -> datetime:
    """Now, or `t` in UTC (naive means UTC): the form to write, or to compare with stored moments."""
    return utcnow() if t is None else aware(t).astimezone(UTC)


def utc_iso(t: datetime | None) -> str | None:
    """A stored moment as ISO text with its UTC offset."""
    if t is None:
        return None
    if t.tzinfo is None:  # as stored (UTC): the common case, on every row of every list, kept cheap
        return t.isoformat() + "+00:00"
    return t.astimezone(UTC).isoformat()
