"""ISO weeks on the workspace's clock: `2026-W48` is Monday 00:00 to the next Monday 00:00, local time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from metricloop.db.times import as_utc
from metricloop.errors import MetricloopError


class ReportInputError(MetricloopError):
    """Bad input to a report, said in both languages (the page shows the reader's)."""

    def __init__(self, en: str, zh: str, *, where: str, status: int = 400) -> None:
        super().__init__(en, where=where)
        self.zh = zh
        self.status_code = status

    def text(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.message


_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)


@dataclass(frozen=True)
class Week:
    year: int
    number: int
    tz: str

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.number, 1)

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def start(self) -> datetime:
        """Monday 00:00 local, as a UTC moment (the form stored moments are compared with)."""
        return datetime.combine(self.monday, time(0), tzinfo=ZoneInfo(self.tz)).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The next Monday 00:00 local, exclusive (a DST change makes a week 167 or 169 hours: it is kept)."""
        return datetime.combine(self.monday + timedelta(days=7), time(0), tzinfo=ZoneInfo(self.tz)).astimezone(UTC)

    def shift(self, weeks: int) -> Week:
        y, w, _ = (self.monday + timedelta(weeks=weeks)).isocalendar()
        return Week(y, w, self.tz)

    def contains_day(self, day: date) -> bool:
        return self.monday <= day <= self.sunday


def week_of(moment: datetime, tz: str) -> Week:
    y, w, _ = as_utc(moment).astimezone(ZoneInfo(tz)).isocalendar()
    return Week(y, w, tz)


def last_full_week(tz: str, now: datetime | None = None) -> Week:
    """The latest ISO week that has ended by `now` (on Monday, the week that ended at midnight)."""
    return week_of(as_utc(now), tz).shift(-1)


def parse_week(text: str | None, tz: str, *, now: datetime | None = None, where: str = "week") -> Week:
    """`2026-W48` (also `2026W48`, `2026-w48`); empty: the last full week. A week that has not begun is refused;
    the current week is allowed (the report says it is still running)."""
    now = as_utc(now)
    if not text or not text.strip():
        return last_full_week(tz, now)
    m = _WEEK.match(text.strip())
    if m is None:
        raise ReportInputError(
            f"'{text}' is not an ISO week: write YYYY-Www, e.g. 2026-W48",
            f"「{text}」不是 ISO 周：请写成 YYYY-Www，例如 2026-W48",
            where=where,
        )
    year, number = int(m.group(1)), int(m.group(2))
    try:
        date.fromisocalendar(year, number, 1)
    except ValueError:
        last = date(year, 12, 28).isocalendar()[1]  # 28 December is always in the year's last ISO week
        raise ReportInputError(
            f"{year} has ISO weeks 1 to {last}, not {number}",
            f"{year} 年只有第 1 到第 {last} 周，没有第 {number} 周",
            where=where,
        ) from None
    week = Week(year, number, tz)
    if week.start > now:
        current = week_of(now, tz)
        raise ReportInputError(
            f"{week.label} has not begun yet (it starts {week.monday.isoformat()}; this week is {current.label})",
            f"{week.label} 还没有开始（从 {week.monday.isoformat()} 起；本周是 {current.label}）",
            where=where,
        )
    return week
