"""Durations written as people write them: 90s, 15m, 2h, 1d, 1w (combinable: 1d6h)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    s = str(text).strip().lower().replace(" ", "")
    if not s or _PART.sub("", s):
        raise ValueError(f"'{text}' is not a duration (use e.g. 15m, 2h, 1d, 1d6h)")
    total = timedelta()
    for number, unit in _PART.findall(s):
        total += timedelta(**{_UNITS[unit]: float(number)})
    return total


def format_duration(td: timedelta) -> str:
    secs = int(td.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            out.append(f"{secs // size}{unit}")
            secs %= size
    return "".join(out) or "0s"
