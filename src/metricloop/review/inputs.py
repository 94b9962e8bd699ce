"""What the weekly review reads from other parts of the loop that may not be installed yet.

Each hook returns None when its part is not there (the report then says "not available yet", never a made-up
figure), and raises anything else: a bug in a part that is there must show, not read as "not available".

- feedback_labels(db_session, monitors) -> list[FeedbackLabel] | None
    the effective labels of those monitors (metricloop.feedback.service.labels_for_monitor, HELPERS.md contract)
- root_cause_categories(db_session, catalog, incident_ids) -> dict[int, Cause] | None
    each resolved incident's root-cause category (metricloop.knowledge); incidents without an entry are absent
- open_tuning_suggestions(db_session, monitors) -> list[Suggestion] | None
    tuning suggestions still waiting for a person's decision (metricloop.feedback tuning)
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
    return [label for m in sorted(set(monitors)) for label in labels_for_monitor(db_session, m, effective=True)]


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
    found = _optional("metricloop.feedback.tuning", "open_suggestions")
    if found is None:
        return None
    (open_suggestions,) = found
    return list(open_suggestions(db_session, monitors=sorted(set(monitors))))
