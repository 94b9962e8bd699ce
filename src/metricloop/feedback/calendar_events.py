"""`expected` because of a promotion or a known event, in one step: the event goes into the monitor's calendar.

Calendars are CSV files a monitor lists under `calendar.events` (see detect/calendar.read_events). The event is
appended to the monitor's first file; a monitor with none gets `calendar/feedback.csv`, added to its definition as
a new version (author: the person, so rollback undoes it). The event covers the label's days (inclusive) and is
scoped to its slice's most specific dimension value; the next run keeps those days out of the baseline and treats
them as the monitor's calendar behaviour says.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from metricloop.db.models import Definition
from metricloop.definitions.service import _write
from metricloop.metrics.slices import parse_slice

FEEDBACK_EVENTS = "calendar/feedback.csv"


def add_event(s, ws, catalog, rows, *, cause: str, name: str | None, actor: str, now) -> list[dict]:
    from metricloop.feedback.flows import FeedbackError, effect

    out = []
    for monitor in sorted({r.monitor for r in rows if r.monitor}):
        mine = [r for r in rows if r.monitor == monitor]
        spec = catalog.get("monitor", monitor)
        files = list(spec.calendar.events)
        rel = files[0] if files else FEEDBACK_EVENTS
        path = Path(rel) if Path(rel).is_absolute() else ws.home / rel
        first, last = min(r.start for r in mine), max(r.end for r in mine)
        event = name or f"{cause} {first:%Y-%m-%d}"
        new = []
        for r in mine:
            dims = parse_slice(r.slice)
            dim = sorted(dims)[-1] if dims else None  # one dimension per CSV row: the most specific value
            new.append(
                {
                    "name": event,
                    "start": f"{r.start:%Y-%m-%d}",
                    "end": f"{r.end:%Y-%m-%d}",
                    "scope_dimension": dim or "",
                    "scope_value": dims.get(dim, "") if dim else "",
                }
            )
        table = pd.DataFrame(new).drop_duplicates()
        try:
            if path.exists():
                old = pd.read_csv(path, dtype=str, keep_default_na=False)
                table = pd.concat([old, table], ignore_index=True).fillna("")
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(path, index=False)
        except (OSError, pd.errors.ParserError) as exc:
            raise FeedbackError(f"cannot write the calendar event: {exc}", where=str(path)) from None
        version = None
        if not files:
            row = s.scalar(select(Definition).where(Definition.kind == "monitor", Definition.name == monitor))
            doc = copy.deepcopy(row.spec)
            doc.setdefault("calendar", {}).setdefault("events", []).append(rel)
            version = _write(
                s,
                kind="monitor",
                name=monitor,
                spec=doc,
                author=actor,
                change="update",
                comment=f"calendar event {event!r} from feedback",
            )
        scope = ", ".join(sorted({f"{n['scope_dimension']}={n['scope_value']}" for n in new if n["scope_dimension"]}))
        out.append(
            effect(
                "calendar_event",
                f"已加入日历：{event}（{first:%Y-%m-%d} 至 {last:%Y-%m-%d}{'，' + scope if scope else ''}），"
                f"文件 {rel}" + (f"；监控 {monitor} 新版本 v{version}" if version else ""),
                f"added to the calendar: {event} ({first:%Y-%m-%d} to {last:%Y-%m-%d}{', ' + scope if scope else ''}) "
                f"in {rel}" + (f"; monitor {monitor} is now version {version}" if version else ""),
                monitor=monitor,
                file=rel,
                event=event,
                start=f"{first:%Y-%m-%d}",
                end=f"{last:%Y-%m-%d}",
                monitor_version=version,
            )
        )
    if not out:
        raise FeedbackError(
            "a calendar event needs a monitor: label an alert, an incident or a monitor's range",
            where="add_to_calendar",
        )
    return out
