"""Everything that mutes an alert, behind one `mutes(labels)` interface.

- silences: label matchers with an expiry and a reason, created at run time;
- maintenance: planned windows from the `maintenance` definitions;
- inhibition: an open data-quality problem on the metric's data mutes metric alerts from it;
- calendar suppression happens earlier, in detection: points inside a `suppress` event are never flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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
        self, labels: dict[str, str], *, at_local: datetime | None = None, until_local: datetime | None = None
    ) -> str:
        """Why these labels are muted now, or '' if they are not."""
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
                if matches_all(parse_matchers(m.matchers), labels) and _overlaps(m, at_local, until_local or at_local):
                    return f"maintenance {m.name}" + (f": {m.reason}" if m.reason else "")
        return ""


def _overlaps(m, start: datetime, end: datetime) -> bool:
    """Does any maintenance window overlap the bucket [start, end)? (end == start: the instant)."""
    end = max(end, start + timedelta(microseconds=1))
    if any(w.start < end and start < w.end for w in m.windows):
        return True
    day = start.date() - timedelta(days=1)  # a window past midnight may start the day before
    while day <= end.date():
        for s, e in m.daily:
            w0 = datetime.combine(day, s)
            w1 = datetime.combine(day if e > s else day + timedelta(days=1), e)
            if w0 < end and start < w1:
                return True
        day += timedelta(days=1)
    return False
