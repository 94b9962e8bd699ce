"""Everything that mutes an alert, behind one `mutes(labels)` interface.

- silences: label matchers with an expiry and a reason, created at run time;
- maintenance: planned windows from the `maintenance` definitions;
- inhibition: an open data-quality problem on the metric's data mutes metric alerts from it;
- calendar suppression happens earlier, in detection: points inside a `suppress` event are never flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.alerting.matchers import matches_all, parse_matchers
from metricloop.alerting.models import Silence
from metricloop.definitions.kinds import Catalog


@dataclass
class Mutes:
    silences: list[tuple[int, list, str]] = field(default_factory=list)
    maintenance: list = field(default_factory=list)
    inhibitors: list[tuple[dict[str, str], str]] = field(default_factory=list)  # (label subset, reason)

    @classmethod
    def load(cls, db_session: Session, catalog: Catalog, *, now: datetime) -> Mutes:
        now = now.astimezone(UTC) if now.tzinfo else now  # silences are stored in UTC
        rows = db_session.scalars(
            select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now, Silence.expired_early_at.is_(None))
        )
        silences = [(s.id, parse_matchers(s.matchers), s.reason) for s in rows]
        return cls(silences=silences, maintenance=list(catalog.all("maintenance").values()))

    def inhibit(self, labels: dict[str, str], reason: str) -> None:
        self.inhibitors.append((labels, reason))

    def mutes(
        self,
        labels: dict[str, str],
        *,
        at_local: datetime | None = None,
        until_local: datetime | None = None,
        timezone: str | None = None,
    ) -> str:
        """Why these labels are muted now, or '' if they are not. `at_local`/`until_local`: the bucket, in the
        metric's local time (`timezone`, for maintenance windows written with an offset)."""
        for subset, reason in self.inhibitors:
            # Muted when the alert's data includes the bad data: the same slice, its children, and the
            # slices above it (the total holds region=North's rows too). region=East does not.
            if all(labels.get(k, v) == v for k, v in subset.items()):
                return f"inhibited: {reason}"
        for sid, matchers, reason in self.silences:
            if matches_all(matchers, labels):
                return f"silence #{sid}: {reason}"
        if at_local is not None:
            for m in self.maintenance:
                if matches_all(parse_matchers(m.matchers), labels) and covers(
                    m, at_local, until_local or at_local, timezone=timezone
                ):
                    return f"maintenance {m.name}" + (f": {m.reason}" if m.reason else "")
        return ""


def covers(m, start: datetime, end: datetime, *, timezone: str | None = None) -> bool:
    """Does maintenance `m` mute the bucket [start, end)? When its windows cover at least half of the bucket: an
    hour inside a nightly 02:00–04:00 window is muted, the day around it is not (2 h of 24), and a day inside a
    multi-day window is. A bucket without length (end == start) is muted when the moment is inside a window."""
    windows = _merged(_windows(m, start, max(end, start), timezone))
    if end <= start:
        return any(w0 <= start < w1 for w0, w1 in windows)
    covered = sum((min(w1, end) - max(w0, start) for w0, w1 in windows if w0 < end and start < w1), timedelta())
    return covered * 2 >= end - start


def _windows(m, start: datetime, end: datetime, timezone: str | None) -> list[tuple[datetime, datetime]]:
    """m's windows that may touch [start, end], as naive local times: its dated windows, and its daily ones on
    each day around the bucket (a window past midnight starts the day before)."""
    out = [(_local(w.start, timezone), _local(w.end, timezone)) for w in m.windows]
    day = start.date() - timedelta(days=1)
    while day <= end.date():
        for s, e in m.daily:
            out.append((datetime.combine(day, s), datetime.combine(day if e > s else day + timedelta(days=1), e)))
        day += timedelta(days=1)
    return out


def _merged(windows: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping windows as one, so a moment covered twice counts once."""
    out: list[tuple[datetime, datetime]] = []
    for w0, w1 in sorted(windows):
        if out and w0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], w1))
        else:
            out.append((w0, w1))
    return out


def _local(t: datetime, timezone: str | None) -> datetime:
    """A window time as the metric's naive local time (a window may be written with an offset)."""
    if t.tzinfo is None:
        return t
    return t.astimezone(ZoneInfo(timezone or "UTC")).replace(tzinfo=None)
