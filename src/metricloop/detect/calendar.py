"""Holidays, make-up workdays and custom events, and what detection does during them.

Every event is kept out of baselines. Its behaviour then says what happens to alerts:

- ``exclude``: kept out of the baseline only; points are still judged against the normal expectation;
- ``suppress``: no alerts during the event;
- ``compare``: the expectation is the same event last time (same bucket offset from the event's
  start, scaled by how the level moved since); with no earlier occurrence in the data it suppresses.

Chinese public holidays and make-up workdays (调休) come from the maintained ``chinesecalendar``
package, never from a hand-typed list.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from metricloop.errors import MetricloopError

Behaviour = Literal["exclude", "suppress", "compare"]
BEHAVIOURS = ("exclude", "suppress", "compare")

HOLIDAY_ZH = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节",
    "Anti-Fascist 70th Day": "抗战胜利纪念日",
}


DEFAULT_PADDING = {"Spring Festival": (2, 7)}
# the Spring Festival changes everything for weeks: compare it with last year's; any other day off
# behaves like a weekend (see `offday_profile`), so it is judged normally against that
DEFAULT_HOLIDAY_BEHAVIOUR: dict[str, Behaviour] = {"Spring Festival": "compare"}


class Event(BaseModel):
    """One occurrence of an event: [start, end) in local time."""

    model_config = ConfigDict(extra="forbid")

    name: str
    start: dt.datetime
    end: dt.datetime
    behaviour: Behaviour = "compare"
    kind: Literal["holiday", "workday", "promotion", "custom"] = "custom"
    key: str | None = Field(None, description="occurrences with the same key are 'the same event' (default: name)")
    weekday_as: int | None = Field(
        None, ge=0, le=6, description="day-of-week profile slot to use during the event (6 = Sunday)"
    )
    scope: dict[str, str] | None = Field(
        None, description="only slices that include these dimension values (or do not restrict them) are affected"
    )
    learned: bool = Field(
        False, description="applies to a series only once its own past shows it (public holidays that looked "
        "like days off); False = declared by a person: applies to every series it scopes"
    )

    def applies_to(self, slice_key: str) -> bool:
        """A scoped event (category=Dairy) touches that slice, its children and the totals above it,
        not a sibling slice such as category=Drinks."""
        if not self.scope:
            return True
        dims = _parse_slice(slice_key)
        return all(dims.get(k, v) == v for k, v in self.scope.items())

    @model_validator(mode="after")
    def _check(self) -> Event:
        if self.end <= self.start:
            raise ValueError(f"event {self.name!r} ends before it starts")
        if self.key is None:
            # '618 2024' and '618 2025' are the same event: drop the year to get the key
            self.key = re.sub(r"\b(19|20)\d{2}\b", "", self.name).strip() or self.name
        return self


@dataclass
class CalendarMasks:
    """Per-bucket calendar facts for one time axis (arrays of length T)."""

    exclude: np.ndarray  # keep out of the baseline
    suppress: np.ndarray  # no alert
    compare_ref: np.ndarray  # index of the same bucket at the previous occurrence, -1 if none
    event: np.ndarray  # event name (object array, '' outside events)
    warnings: list[str] = field(default_factory=list)
    weekday_as: np.ndarray | None = None  # day-of-week profile slot per bucket, -1 = the real weekday
    learn: np.ndarray | None = None  # buckets whose event applies only to series whose past shows it
    # learned buckets that say whether a series follows the calendar: days off and make-up workdays
    # judged normally (`exclude`), not the Spring Festival's weeks, which are compared with last year
    evidence: np.ndarray | None = None

    def learned_buckets(self) -> np.ndarray:
        return self.learn if self.learn is not None else np.zeros(len(self.event), bool)

    def rows(self, lo: int, hi: int) -> CalendarMasks:
        """The masks for a block of series (per-series masks are 2-D, shared ones 1-D)."""
        if self.exclude.ndim == 1:
            return self
        return CalendarMasks(self.exclude[lo:hi], self.suppress[lo:hi], self.compare_ref[lo:hi], self.event,
                             self.warnings, self.weekday_as, self.learn, self.evidence)

    @classmethod
    def empty(cls, n: int) -> CalendarMasks:
        return cls(
            np.zeros(n, bool), np.zeros(n, bool), np.full(n, -1, np.int64), np.full(n, "", dtype=object),
            weekday_as=np.full(n, -1, np.int8), learn=np.zeros(n, bool), evidence=np.zeros(n, bool),
        )


class Calendar:
    def __init__(
        self,
        events: list[Event] | None = None,
        *,
        china_holidays: bool | Literal["learn"] = "learn",
        holiday_behaviour: Behaviour | None = None,
        workday_behaviour: Behaviour = "exclude",
        holiday_padding: dict[str, tuple[int, int]] | None = None,
        offday_profile: bool = True,
    ) -> None:
        for b in (holiday_behaviour or "exclude", workday_behaviour):
            if b not in BEHAVIOURS:
                raise MetricloopError(f"unknown calendar behaviour {b!r}; use one of {', '.join(BEHAVIOURS)}")
        if china_holidays not in (True, False, "learn"):
            raise MetricloopError(f"china_holidays must be true, false or 'learn', not {china_holidays!r}",
                                  where="calendar.china_holidays")
        self.events = list(events or [])
        # "learn" (default): a holiday or make-up workday changes how a series is judged only once
        # that series' own past holidays looked like days off (see `engine.run_engine`); True: declared
        # for every series; False: none
        self.china_holidays = china_holidays
        self.holiday_behaviour = holiday_behaviour
        self.workday_behaviour = workday_behaviour
        # days before/after a holiday that behave like it: shops and carriers pause before the
        # Spring Festival and take about a week to get back to normal after it
        self.holiday_padding = DEFAULT_PADDING if holiday_padding is None else holiday_padding
        # statutory days off look like a Sunday and make-up workdays like a Monday to a day-of-week profile
        self.offday_profile = offday_profile

    def holiday_behaviour_for(self, name: str) -> Behaviour:
        return self.holiday_behaviour or DEFAULT_HOLIDAY_BEHAVIOUR.get(name, "exclude")

    def add(self, event: Event) -> None:
        self.events.append(event)

    @classmethod
    def from_csv(cls, path: Path | str, *, behaviour: Behaviour = "compare", **kwargs: object) -> Calendar:
        """Read custom events: columns name, start, end (exclusive) and optionally behaviour, key."""
        cal = cls(**kwargs)  # type: ignore[arg-type]
        cal.events.extend(read_events(path, behaviour=behaviour))
        return cal

    # ------------------------------------------------------------------ built-in events
    def china_events(self, start: dt.date, end: dt.date) -> tuple[list[Event], list[str]]:
        """Statutory holidays (grouped into periods) and make-up workdays between two dates."""
        import chinese_calendar

        events: list[Event] = []
        warnings: list[str] = []
        run_name, run_start, prev = None, None, None
        day = start
        unsupported: set[int] = set()

        def close() -> None:
            if run_name is not None and run_start is not None and prev is not None:
                before, after = self.holiday_padding.get(run_name, (0, 0))
                events.append(
                    Event(
                        name=f"{run_name} {run_start.year}",
                        key=run_name,
                        kind="holiday",
                        start=dt.datetime.combine(run_start - dt.timedelta(days=before), dt.time()),
                        end=dt.datetime.combine(prev + dt.timedelta(days=1 + after), dt.time()),
                        behaviour=self.holiday_behaviour_for(run_name),
                        weekday_as=6 if self.offday_profile else None,
                        learned=self.china_holidays == "learn",
                    )
                )

        while day <= end:
            try:
                on_holiday, name = chinese_calendar.get_holiday_detail(day)
            except NotImplementedError:
                unsupported.add(day.year)
                on_holiday, name = False, None
            if on_holiday and name:
                if name != run_name or prev is None or (day - prev).days > 1:
                    close()
                    run_name, run_start = name, day
                prev = day
            else:
                close()
                run_name, run_start, prev = None, None, None
                if name and not on_holiday and day.weekday() >= 5:
                    events.append(
                        Event(
                            name=f"make-up workday ({name}) {day.isoformat()}",
                            key="make-up workday",
                            kind="workday",
                            start=dt.datetime.combine(day, dt.time()),
                            end=dt.datetime.combine(day + dt.timedelta(days=1), dt.time()),
                            behaviour=self.workday_behaviour,
                            weekday_as=0 if self.offday_profile else None,
                            learned=self.china_holidays == "learn",
                        )
                    )
            day += dt.timedelta(days=1)
        close()
        if unsupported:
            years = ", ".join(str(y) for y in sorted(unsupported))
            warnings.append(f"chinesecalendar has no holiday data for {years}; no holidays applied there")
        return events, warnings

    def all_events(self, start: dt.datetime, end: dt.datetime) -> tuple[list[Event], list[str]]:
        events = [e for e in self.events if e.end > start and e.start <= end]
        warnings: list[str] = []
        if self.china_holidays:
            cn, warnings = self.china_events(start.date(), end.date())
            events += cn
        return sorted(events, key=lambda e: e.start), warnings

    # ------------------------------------------------------------------ masks
    def masks(
        self, times: pd.DatetimeIndex, grain: str | None = None, slices: list[str] | None = None
    ) -> CalendarMasks:
        """Per-bucket facts; per series (2-D) when some event is scoped to slices."""
        n = len(times)
        out = CalendarMasks.empty(n)
        if n == 0:
            return out
        t0, t1 = times[0].to_pydatetime(), times[-1].to_pydatetime()
        # a year of look-back lets a 'compare' event find last year's occurrence
        events, warnings = self.all_events(t0 - dt.timedelta(days=400), t1)
        away = self.outside(times)
        if away:
            first = away[0]
            warnings = [*warnings, f"{len(away)} calendar event(s) fall outside the series ({t0:%Y-%m-%d %H:%M} – "
                        f"{t1:%Y-%m-%d %H:%M}), e.g. {first.name!r} ({first.start:%Y-%m-%d} – {first.end:%Y-%m-%d}): "
                        "they change nothing"]
        scoped = [e for e in events if e.scope]
        if scoped and slices:
            shared = self._masks(times, [e for e in events if not e.scope], events)
            groups: dict[tuple[bool, ...], list[int]] = {}
            for i, key in enumerate(slices):
                groups.setdefault(tuple(e.applies_to(key) for e in scoped), []).append(i)
            m = len(slices)
            full = CalendarMasks(np.zeros((m, n), bool), np.zeros((m, n), bool), np.full((m, n), -1, np.int64),
                                 shared.event, warnings, shared.weekday_as, shared.learn, shared.evidence)
            for pattern, idx in groups.items():
                mine = [e for e, on in zip(scoped, pattern, strict=True) if on]
                g = self._masks(times, [e for e in events if not e.scope] + mine, events) if mine else shared
                full.exclude[idx], full.suppress[idx], full.compare_ref[idx] = g.exclude, g.suppress, g.compare_ref
            return full
        out = self._masks(times, [e for e in events if not e.scope], events)
        out.warnings = warnings
        return out

    def outside(self, times: pd.DatetimeIndex) -> list[Event]:
        """Custom events that touch no bucket of `times` (a calendar file naming other years)."""
        if len(times) == 0:
            return list(self.events)
        t0, t1 = times[0].to_pydatetime(), times[-1].to_pydatetime()
        return [e for e in self.events if e.end <= t0 or e.start > t1]

    def _masks(self, times: pd.DatetimeIndex, events: list[Event], everything: list[Event]) -> CalendarMasks:
        n = len(times)
        out = CalendarMasks.empty(n)
        events = sorted(events, key=lambda e: e.start)
        tv = times.as_unit("ns").asi8
        declared = np.zeros(n, bool)
        by_key: dict[str, list[Event]] = {}
        for ev in sorted(everything, key=lambda e: e.start):
            by_key.setdefault(ev.key or ev.name, []).append(ev)
        for ev in events:
            lo = np.searchsorted(tv, pd.Timestamp(ev.start).value, side="left")
            hi = np.searchsorted(tv, pd.Timestamp(ev.end).value, side="left")
            if hi <= lo:
                continue
            sl = slice(lo, hi)
            out.exclude[sl] = True
            if ev.learned and out.learn is not None:
                # a day off is judged like a Sunday only where the series' past days off looked like one;
                # a `compare` event (the Spring Festival) is the series' own last time either way
                out.learn[sl] = True
                if ev.behaviour == "exclude" and out.evidence is not None:
                    out.evidence[sl] = True
            else:
                declared[sl] = True
            if ev.weekday_as is not None and out.weekday_as is not None:
                wd = np.asarray(pd.DatetimeIndex(times[sl]).day_of_week)
                # only days whose kind changes: a holiday Saturday is a Saturday anyway
                change = (wd < 5) if ev.weekday_as >= 5 else (wd >= 5)
                out.weekday_as[sl] = np.where(change, ev.weekday_as, out.weekday_as[sl])
            out.event[sl] = np.where(out.event[sl] == "", ev.name, out.event[sl])
            if ev.behaviour == "suppress":
                out.suppress[sl] = True
            elif ev.behaviour == "compare":
                earlier = [e for e in by_key[ev.key or ev.name] if e.start < ev.start]
                if not earlier:
                    out.suppress[sl] = True
                    continue
                prev = earlier[-1]
                # the first half of the event lines up with last time's start, the second half with
                # its end: a holiday one day longer than last year still ends like last year's
                e0, e1 = pd.Timestamp(ev.start).value, pd.Timestamp(ev.end).value
                p0, p1 = pd.Timestamp(prev.start).value, pd.Timestamp(prev.end).value
                from_start = tv[sl] - e0
                to_end = e1 - tv[sl]
                ref_t = np.where(from_start < to_end, p0 + from_start, p1 - to_end)
                ref_t = np.clip(ref_t, p0, p1 - 1)
                idx = np.searchsorted(tv, ref_t, side="left")
                found = (idx < n) & (idx < lo)
                found[found] &= tv[np.minimum(idx[found], n - 1)] == ref_t[found]
                ref = np.where(found, idx, -1)
                out.compare_ref[sl] = ref
                out.suppress[sl] = out.suppress[sl] | (ref < 0)
        if out.learn is not None:
            out.learn &= ~declared  # a promotion a person declared applies whatever the past shows
            if out.evidence is not None:
                out.evidence &= out.learn & (out.compare_ref < 0) & ~out.suppress
        return out


def read_events(path: Path | str, *, behaviour: Behaviour = "compare") -> list[Event]:
    """Events from a CSV: name, start, end, and optionally behaviour, key, scope_dimension,
    scope_value, before_days and after_days (the demo's promotions.csv reads as is). A date-only end
    is inclusive (the whole day); an end with a time is exclusive. before_days / after_days widen the
    event by whole days: a festival's parcels still arrive late for days after it ends."""
    p = Path(path)
    try:
        df = pd.read_csv(p)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MetricloopError(f"cannot read events: {exc}", where=str(p)) from None
    cols = {c.lower().strip(): c for c in df.columns}
    name_col = cols.get("name") or cols.get("event") or cols.get("promotion")
    if name_col is None or "start" not in cols or "end" not in cols:
        raise MetricloopError("an events CSV needs columns name, start and end", where=str(p))
    events = []
    for i, row in df.iterrows():
        try:
            start = pd.Timestamp(row[cols["start"]]).to_pydatetime()
            end = pd.Timestamp(row[cols["end"]]).to_pydatetime()
        except (ValueError, TypeError) as exc:
            raise MetricloopError(f"row {int(i) + 2}: bad date ({exc})", where=str(p)) from None
        if end.time() == dt.time() and len(str(row[cols["end"]]).strip()) <= 10:
            end = end + dt.timedelta(days=1)  # a date-only end is inclusive: the whole day counts
        if end <= start:
            end = start + dt.timedelta(days=1)
        for col, sign in (("before_days", -1), ("after_days", 1)):
            if col not in cols or pd.isna(row[cols[col]]) or str(row[cols[col]]).strip() == "":
                continue
            try:
                days = int(row[cols[col]])
            except (ValueError, TypeError):
                raise MetricloopError(f"row {int(i) + 2}: {col} must be a whole number of days, "
                                      f"not {row[cols[col]]!r}", where=str(p)) from None
            if days < 0:
                raise MetricloopError(f"row {int(i) + 2}: {col} cannot be negative ({days})", where=str(p))
            if sign < 0:
                start -= dt.timedelta(days=days)
            else:
                end += dt.timedelta(days=days)
        b = str(row[cols["behaviour"]]).strip() if "behaviour" in cols else behaviour
        if b not in BEHAVIOURS:
            raise MetricloopError(f"row {int(i) + 2}: unknown behaviour {b!r}", where=str(p))
        key = str(row[cols["key"]]) if "key" in cols and pd.notna(row[cols["key"]]) else None
        scope = None
        dim_col, val_col = cols.get("scope_dimension"), cols.get("scope_value")
        if dim_col and val_col and pd.notna(row[dim_col]) and str(row[dim_col]).strip():
            scope = {str(row[dim_col]).strip(): str(row[val_col]).strip()}
        events.append(
            Event(name=str(row[name_col]), start=start, end=end, behaviour=b, kind="promotion", key=key,  # type: ignore[arg-type]
                  scope=scope)
        )
    return events


def _parse_slice(key: str) -> dict[str, str]:
    """'category=Drinks,region=East' → {'category': 'Drinks', 'region': 'East'}; '*' or '' → {}."""
    out: dict[str, str] = {}
    if key in ("", "*"):
        return out
    for part in key.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out
