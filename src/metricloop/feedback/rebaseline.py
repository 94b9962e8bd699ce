"""Where a monitor run cuts each series' history: the standing `new_normal` labels on its series."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from metricloop.feedback.service import labels_for_monitor


def history_cuts(session: Session, monitor: str, names: list[str]) -> dict[str, datetime]:
    """Series name → the start of its latest standing new_normal label (slice "*" covers every series)."""
    cuts: dict[str, datetime] = {}
    wanted = set(names)
    for lab in labels_for_monitor(session, monitor):
        if lab.label != "new_normal":
            continue
        for name in names if lab.slice == "*" else [lab.slice] if lab.slice in wanted else []:
            if name not in cuts or lab.start > cuts[name]:
                cuts[name] = lab.start
    return cuts
