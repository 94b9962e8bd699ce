"""Grains: the standard names (minute, hour, day, week, month) and any step that divides an hour or
a day (`5min`, `10min`, `15min`, `30min`, `2h`, `4h`, `6h`). Shared by definitions, queries,
monitors and detection; no other metricloop import."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from metricloop.errors import MetricloopError

DAY = 86400
GRAIN_SECONDS = {"minute": 60, "hour": 3600, "day": DAY, "week": 7 * DAY, "month": 30 * DAY}
GRAINS: tuple[str, ...] = ("minute", "hour", "day", "week", "month")
# steps a metric's `grain` may name, and that an inferred spacing is snapped to when it is jittered:
# minutes and hours that divide a day (buckets line up with midnight), a day, a week, a month
SUB_HOUR_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)
SUB_DAY_HOURS = (1, 2, 3, 4, 6, 8, 12)
STANDARD_STEPS = ([60 * k for k in SUB_HOUR_MINUTES] + [3600 * k for k in SUB_DAY_HOURS]
                  + [DAY, 7 * DAY, GRAIN_SECONDS["month"]])
_GRAIN_RE = re.compile(r"^\s*(\d+)\s*(s|sec|second|seconds|m|min|mins|minute|minutes|h|hr|hour|hours|d|day|days|"
                       r"w|week|weeks)\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}


def parse_grain(grain: str) -> float:
    """The step in seconds a grain names: minute/hour/day/week/month, or a count and a unit
    (`5min`, `15min`, `2h`, `6h`, `30s`, `3d`). Raises `MetricloopError` on anything else."""
    g = str(grain).strip().lower()
    if g in GRAIN_SECONDS:
        return float(GRAIN_SECONDS[g])
    m = _GRAIN_RE.match(g)
    if not m or int(m.group(1)) <= 0:
        raise MetricloopError(f"unknown grain {grain!r}: use minute, hour, day, week, month or a step such as "
                              "5min, 15min, 2h", where="grain")
    return float(int(m.group(1)) * _UNIT_SECONDS[m.group(2)[0]])


def step_name(step: float | None) -> str | None:
    """A step's canonical grain name: minute, 5min, hour, 2h, day, week, month (or 90s, 3d)."""
    if not step:
        return None
    s = int(round(step))
    for name, sec in GRAIN_SECONDS.items():
        if s == sec:
            return name
    if s % (7 * DAY) == 0:
        return f"{s // (7 * DAY)}w"
    if s % DAY == 0:
        return f"{s // DAY}d"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}min"
    return f"{s}s"


def grain_kind(step: float | None) -> str | None:
    """The grain class of a step: minute (< 10 min), hour (< 1 day), day (< 1 week), week, month."""
    if not step or step <= 0:
        return None
    if step < 600:
        return "minute"
    if step < DAY:
        return "hour"
    if step < 7 * DAY:
        return "day"
    if step < 28 * DAY:
        return "week"
    return "month"


def canonical_grain(grain: str) -> str:
    """A metric's grain, validated and named canonically (`60min` → hour, `5 minutes` → 5min): one of
    the five names, or a number of minutes that divides an hour, or of hours that divides a day (so
    every bucket starts at a round time and a day holds whole buckets)."""
    step = parse_grain(grain)
    named_month = str(grain).strip().lower() == "month"
    if int(step) not in STANDARD_STEPS or (step == GRAIN_SECONDS["month"] and not named_month):
        raise MetricloopError(
            f"grain {grain!r} is not a bucket size: use minute, hour, day, week, month, a number of minutes "
            f"that divides an hour ({', '.join(f'{k}min' for k in SUB_HOUR_MINUTES[1:])}) or of hours that "
            f"divides a day ({', '.join(f'{k}h' for k in SUB_DAY_HOURS[1:])})", where="grain")
    return step_name(step) or "day"


def grain_step(grain: str) -> tuple[int, str]:
    """(count, unit) of a step grain: (5, 'minute') for 5min, (2, 'hour') for 2h, (1, name) for a name."""
    g = canonical_grain(grain)
    if g in GRAIN_SECONDS:
        return 1, g
    step = int(parse_grain(g))
    return (step // 3600, "hour") if step % 3600 == 0 else (step // 60, "minute")


class ByGrain(dict):
    """A table keyed by the five grain names that also answers for a step grain (`5min`), from the
    entry of its class (`minute`) or from `derive(grain)`."""

    def __init__(self, data: dict[str, Any], derive: Callable[[str], Any] | None = None) -> None:
        super().__init__(data)
        self._derive = derive

    def __missing__(self, key: str) -> Any:
        try:
            step = parse_grain(key)
        except MetricloopError:
            raise KeyError(key) from None
        if self._derive is not None:
            return self._derive(key)
        kind = grain_kind(step)
        if kind not in self:
            raise KeyError(key)
        return dict.__getitem__(self, kind)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default
