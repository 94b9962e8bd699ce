"""What the weekly review reads from other parts of the loop that may not be installed yet.

Each hook returns None when its part is not there (the report then says "not available yet", never a made-up
figure), and raises anything else: a bug in a part that is there must show, not read as "not available".

- feedback_labels(db_session, monitors) -> list[FeedbackLabel] | None
    the effective labels of those monitors (metricloop.feedback.service.labels_for_monitor, HELPERS.md contract)
- root_cause_categories(db_session, catalog, incident_ids) -> dict[int, Cause] | None
    each resolved incident's root-cause category (metricloop.knowledge); incidents without an entry are absent
- open_tuning_suggestions(db_session, monitors) -> list[Suggestion] | None
    tuning suggestions still waiting for a person's decision (metricloop.tuning.service.open_suggestions)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Cause:
    key: str  # the category's name (or the normalised root-cause text when there is no knowledge base)
    zh: str
    en: str


@dataclass(frozen=True)
class Suggestion:
    monitor: str
    id: Any
    summary_zh: str
    summary_en: str
    created_at: datetime | None
    url: str = ""


def _optional(module: str, *names: str):
    """The named attributes of `module`, or None when the module (a part of metricloop not merged yet) is absent."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            return None
        raise
    if not all(hasattr(mod, n) for n in names):
        return None
    return tuple(getattr(mod, n) for n in names)


def feedback_labels(db_session, monitors) -> list | None:
    found = _optional("metricloop.feedback.service", "labels_for_monitor")
    if found is None:
        return None
    (labels_for_monitor,) = found
    seen: dict[int, object] = {}  # a range label on a metric counts for each of its monitors: once here
    for m in sorted(set(monitors)):
        for label in labels_for_monitor(db_session, m, effective=True):
            seen.setdefault(label.id, label)
    return list(seen.values())


def root_cause_categories(db_session, catalog, incident_ids) -> dict[int, Cause] | None:
    models = _optional("metricloop.knowledge.models", "KnowledgeEntry")
    cats = _optional("metricloop.knowledge.categories", "categories")
    if models is None or cats is None:
        return None
    from sqlalchemy import select

    (entry,), (categories,) = models, cats
    names = {c.name: c for c in categories(catalog)}
    ids = list(incident_ids)
    out: dict[int, Cause] = {}
    for start in range(0, len(ids), 500):
        rows = db_session.execute(
            select(entry.incident_id, entry.category).where(entry.incident_id.in_(ids[start : start + 500]))
        )
        for incident_id, category in rows:
            c = names.get(category)
            out[incident_id] = Cause(category, c.zh if c else category, c.en if c else category)
    return out


def open_tuning_suggestions(db_session, monitors) -> list[Suggestion] | None:
    found = _optional("metricloop.tuning.service", "open_suggestions")
    if found is None:
        return None
    (open_suggestions,) = found
    wanted = set(monitors)
    return [_suggestion(o) for o in open_suggestions(db_session) if o.monitor in wanted]


def _suggestion(o) -> Suggestion:
    changes = "; ".join(f"{c['knob']} {c['before']} → {c['after']}" for c in o.changes)
    before, after = o.before.get("alerts_per_month"), o.after.get("alerts_per_month")
    fa_b, fa = o.after.get("false_alarms_removed"), o.after.get("false_alarms")
    zh = [changes or "参数不变"]
    en = [changes or "no knob changes"]
    if before is not None and after is not None:
        zh.append(f"每月告警 {before} → {after}")
        en.append(f"alerts per month {before} → {after}")
    if fa:
        zh.append(f"去掉误报 {fa_b}/{fa}")
        en.append(f"false alarms removed {fa_b}/{fa}")
    if o.tradeoff:
        en.append(o.tradeoff)
    return Suggestion(
        monitor=o.monitor,
        id=o.id,
        summary_zh="，".join(zh),
        summary_en="; ".join(en),
        created_at=o.created_at,
        url=f"/api/monitors/{o.monitor}/tuning",
    )
