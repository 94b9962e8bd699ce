"""The knowledge base: record what a resolution taught, find it again, edit it (versioned), export it.

Service functions take the session first and keyword-only arguments after it, like the incident flows; they run
in the caller's transaction, so a resolution and its entry are written together or not at all.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.db.times import aware, utc_iso
from metricloop.errors import MetricloopError, NotFound
from metricloop.knowledge import categories as cats
from metricloop.knowledge.models import KnowledgeEntry, KnowledgeVersion
from metricloop.knowledge.text import BM25, joined, matched_words, tokens
from metricloop.limits import check_text

EDITABLE = ("category", "cause", "actions")
MAX_CANDIDATES = 5000  # the most recent entries a search or a match reads (docs/knowledge.md)
_TOKENS: dict[tuple[int, int], Counter] = {}  # (entry id, version) → tokens of its own text


def parse_slice(text: str) -> dict[str, str]:
    if not text or text == "*":
        return {}
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


def pattern_of(incident) -> dict:
    """What an incident looks like apart from its words: kind, direction, the dimensions of its lead slice and of
    all its slices, and the dimensions its root causes name (`rca_causes` in the summary, each with `dimensions`,
    as the analysis at opening stores them; compared only when both incidents have them)."""
    summary = incident.summary or {}
    slices = list(incident.slices or [])
    lead = parse_slice(slices[0]) if slices else {}
    every = sorted({k for s in slices for k in parse_slice(s)})
    causes = (summary.get("rca") or {}).get("causes") if isinstance(summary.get("rca"), dict) else None
    # the incident's own root-cause analysis (rca/service.py puts its top causes in the summary before it opens)
    causes = causes if causes is not None else summary.get("rca_causes") or summary.get("causes")
    cause_dims = sorted({k for c in causes or [] if isinstance(c, dict) for k in (c.get("dimensions") or {})})
    out = {"kind": incident.kind, "direction": summary.get("direction") or "", "dimensions": sorted(lead),
           "all_dimensions": every}
    if cause_dims:
        out["cause_dimensions"] = cause_dims
    return out


def incident_text(incident) -> str:
    s = incident.summary or {}
    return joined([incident.title, s.get("title_zh"), s.get("title_en"), s.get("explanation_zh"),
                   s.get("explanation_en"), " ".join(incident.slices or []), incident.root_cause])


def _category_text(catalog, name: str) -> str:
    c = cats.by_name(catalog).get(name)
    return joined([name.replace("_", " "), c.zh, c.en, " ".join(c.keywords)]) if c is not None else name


def _entry_text(e: KnowledgeEntry) -> str:
    return joined([e.title, e.title_en, " ".join(e.slices or []), e.cause, e.actions])


def entry_tokens(catalog, e: KnowledgeEntry) -> Counter:
    # Keyed by the text itself, not (id, version): two workspaces (or state databases) served by one process have
    # entries with the same ids and versions and different words.
    text = _entry_text(e)
    own = _TOKENS.get(text)
    if own is None:
        own = tokens(text)
        if len(_TOKENS) > 20_000:
            _TOKENS.clear()
        _TOKENS[text] = own
    return own + tokens(_category_text(catalog, e.category))


def _whole(counts: Counter) -> Counter:
    """Whole words and CJK bigrams only: a shared trigram ("own" in unknown and down) is no evidence of a cause."""
    return Counter({k: v for k, v in counts.items() if k.startswith(("w:", "c2:"))})


_INDEXES: dict[tuple, BM25] = {}


def index_of(catalog, rows: list[KnowledgeEntry]) -> BM25:
    """The BM25 index of these entries, kept while neither they (ids and words) nor the categories change: one
    run that opens many incidents, or a page read after page read, tokenizes and counts the corpus once."""
    key = (tuple((e.id, e.category, _entry_text(e)) for e in rows),
           tuple((c.name, c.zh, c.en, c.keywords) for c in cats.categories(catalog)))
    index = _INDEXES.get(key)
    if index is None:
        if len(_INDEXES) > 32:
            _INDEXES.clear()
        index = _INDEXES[key] = BM25([entry_tokens(catalog, e) for e in rows])
    return index


def infer_category(catalog, text: str) -> str | None:
    """The category whose names and keywords the text shares most words with, or None when it shares none."""
    if not text.strip():
        return None
    usable = [c for c in cats.categories(catalog, include_retired=False) if c.name != cats.OTHER]
    index = BM25([_whole(tokens(_category_text(catalog, c.name))) for c in usable])
    scores = index.scores(_whole(tokens(text)))
    best = max(range(len(usable)), key=lambda i: scores[i], default=None)
    return usable[best].name if best is not None and scores[best] > 0 else None


# ------------------------------------------------------------------ recording a resolution


def _fields(e: KnowledgeEntry) -> dict:
    return {"category": e.category, "category_source": e.category_source, "cause": e.cause, "actions": e.actions,
            "resolved_by": e.resolved_by, "resolved_at": utc_iso(e.resolved_at)}


def _keep_version(db_session: Session, e: KnowledgeEntry, *, actor: str, now: datetime, reason: str) -> None:
    db_session.add(KnowledgeVersion(entry_id=e.id, version=e.version, fields=_fields(e), written_by=e.updated_by,
                                    written_at=e.updated_at, replaced_by=actor, replaced_at=now, reason=reason))
    e.version += 1


def record_resolution(
    db_session: Session, catalog, incident, *, category: str | None, cause: str, actions: str, actor: str,
    now: datetime,
) -> KnowledgeEntry:
    """The incident's entry, written at its resolution: a new one, or (resolved again after a reopen) a new version
    of the one it has. No category: the one its words point at (`inferred`), else `other` (`default`)."""
    name = cats.check_category(catalog, category)
    source = "given"
    if name is None:
        name = infer_category(catalog, joined([cause, actions]))
        source = "inferred" if name else "default"
        name = name or cats.OTHER
    e = db_session.scalar(select(KnowledgeEntry).where(KnowledgeEntry.incident_id == incident.id))
    if e is None:
        e = KnowledgeEntry(incident_id=incident.id)
        db_session.add(e)
    else:
        db_session.flush()
        _keep_version(db_session, e, actor=actor, now=now, reason="resolved again")
    s = incident.summary or {}
    e.metric, e.monitor, e.kind, e.slices = incident.metric, incident.monitor, incident.kind, list(incident.slices)
    e.pattern = pattern_of(incident)
    e.title, e.title_en = s.get("title_zh") or incident.title, s.get("title_en") or ""
    e.category, e.category_source, e.cause, e.actions = name, source, cause, actions
    e.resolved_by, e.opened_at, e.resolved_at = actor, aware(incident.created_at), now
    e.updated_by, e.updated_at = actor, now
    db_session.flush()
    return e


# ------------------------------------------------------------------ reading, editing


def get_entry(db_session: Session, entry_id: int, *, within: set[str] | None = None) -> KnowledgeEntry:
    e = db_session.get(KnowledgeEntry, entry_id)
    if e is None or (within is not None and e.metric not in within):
        raise NotFound(f"no knowledge entry #{entry_id}", where="entry_id")
    return e


def entry_for_incident(db_session: Session, incident_id: int) -> KnowledgeEntry | None:
    return db_session.scalar(select(KnowledgeEntry).where(KnowledgeEntry.incident_id == incident_id))


def edit_entry(
    db_session: Session, catalog, *, entry_id: int, actor: str, category: str | None = None,
    cause: str | None = None, actions: str | None = None, reason: str = "", within: set[str] | None = None,
    now: datetime | None = None,
) -> KnowledgeEntry:
    """Change an entry's category, cause or actions. The entry as it was is kept as a version (who wrote it, who
    replaced it, when and why). Nothing given, or nothing different: refused, so the history holds only changes."""
    from metricloop.db.times import as_utc

    for value, field in ((cause, "cause"), (actions, "actions"), (reason, "reason")):
        check_text(value, field)
    e = get_entry(db_session, entry_id, within=within)
    name = cats.check_category(catalog, category) if category is not None else None
    if category is not None and name is None:
        raise MetricloopError("category must not be empty (use 'other')", where="category")
    wanted = {"category": name, "cause": cause, "actions": actions}
    changes = {k: v for k, v in wanted.items() if v is not None and v != getattr(e, k)}
    if not changes:
        given = [k for k, v in wanted.items() if v is not None]
        what = "nothing to change: give --category, --cause or --actions" if not given else (
            f"entry #{e.id} already has that {', '.join(given)}")
        raise MetricloopError(what, where="body" if not given else given[0])
    now = as_utc(now)
    _keep_version(db_session, e, actor=actor, now=now, reason=reason)
    for k, v in changes.items():
        setattr(e, k, v)
    if "category" in changes:
        e.category_source = "given"
    e.updated_by, e.updated_at = actor, now
    db_session.flush()
    return e


def versions(db_session: Session, entry_id: int) -> list[KnowledgeVersion]:
    return list(db_session.scalars(
        select(KnowledgeVersion).where(KnowledgeVersion.entry_id == entry_id).order_by(KnowledgeVersion.version)))


def duration_seconds(e: KnowledgeEntry) -> float | None:
    if e.opened_at is None or e.resolved_at is None:
        return None
    return (aware(e.resolved_at) - aware(e.opened_at)).total_seconds()


def entry_dict(db_session: Session, catalog, e: KnowledgeEntry, *, with_versions: bool = False) -> dict:
    c = cats.by_name(catalog).get(e.category)
    out = {
        "id": e.id, "incident_id": e.incident_id, "metric": e.metric, "monitor": e.monitor, "kind": e.kind,
        "slices": e.slices, "title": e.title, "title_en": e.title_en, "category": e.category,
        "category_zh": c.zh if c else e.category, "category_en": c.en if c else e.category,
        "category_source": e.category_source, "cause": e.cause, "actions": e.actions, "resolved_by": e.resolved_by,
        "opened_at": utc_iso(e.opened_at), "resolved_at": utc_iso(e.resolved_at),
        "duration_seconds": duration_seconds(e), "version": e.version, "updated_by": e.updated_by,
        "updated_at": utc_iso(e.updated_at),
    }
    if with_versions:
        out["versions"] = [
            {"version": v.version, **v.fields, "written_by": v.written_by, "written_at": utc_iso(v.written_at),
             "replaced_by": v.replaced_by, "replaced_at": utc_iso(v.replaced_at), "reason": v.reason}
            for v in versions(db_session, e.id)
        ]
    return out


def candidates(db_session: Session, *, within: set[str] | None = None, category: str | None = None,
                metric: str | None = None, before: datetime | None = None, exclude_incident: int | None = None,
                limit: int = MAX_CANDIDATES, offset: int = 0):
    q = select(KnowledgeEntry).order_by(KnowledgeEntry.resolved_at.desc(), KnowledgeEntry.id.desc())
    if within is not None:
        q = q.where(KnowledgeEntry.metric.in_(sorted(within)))
    if category:
        q = q.where(KnowledgeEntry.category == category)
    if metric:
        q = q.where(KnowledgeEntry.metric == metric)
    if before is not None:
        q = q.where(KnowledgeEntry.opened_at < before)
    if exclude_incident is not None:
        q = q.where((KnowledgeEntry.incident_id != exclude_incident) | KnowledgeEntry.incident_id.is_(None))
    return list(db_session.scalars(q.limit(limit).offset(offset)))


def list_entries(db_session: Session, *, within=None, category=None, metric=None, limit=100, offset=0):
    """Entries, the most recently resolved first (paged in the database: every entry can be reached)."""
    return candidates(db_session, within=within, category=category, metric=metric, limit=limit, offset=offset)


def check_query(q: str | None, *, where: str = "q") -> str:
    """A search query with something to search for: not empty, not over MAX_TEXT, with at least one word."""
    check_text(q, where)
    if q is None or not q.strip():
        raise MetricloopError("the query is empty: give words to search for, e.g. 断货 or stock-out", where=where)
    if not tokens(q):
        raise MetricloopError(f"the query '{q.strip()[:40]}' has no letters, digits or characters to search for",
                              where=where)
    return q.strip()


def search(db_session: Session, catalog, q: str, *, within=None, category=None, metric=None, limit=20, offset=0):
    """Entries ranked by BM25 of `q` against their title, slices, cause, actions and category names (zh and en):
    [(entry, score, matched words)], best first; only entries that share a word with the query."""
    q = check_query(q)
    rows = candidates(db_session, within=within, category=category, metric=metric)
    if not rows:
        return []
    scores = index_of(catalog, rows).scores(q)
    ranked = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: -scores[i])
    out = []
    for i in ranked[offset : offset + limit]:
        e = rows[i]
        text = joined([e.title, e.title_en, " ".join(e.slices or []), e.cause, e.actions,
                       _category_text(catalog, e.category)])
        out.append((e, round(scores[i], 4), matched_words(q, text)))
    return out


# ------------------------------------------------------------------ export


EXPORT_COLUMNS = ("id", "incident_id", "metric", "monitor", "slices", "title", "title_en", "category",
                  "category_zh", "category_en", "category_source", "cause", "actions", "resolved_by", "opened_at",
                  "resolved_at", "duration_seconds", "version", "updated_by", "updated_at")


def export_entries(db_session: Session, catalog, path, *, fmt: str | None = None, within=None) -> int:
    """Write every entry to `path`: JSON (with each entry's versions) or CSV (one row per entry, its current
    version; slices joined by ' | '). The format is `fmt`, else the file's suffix. Returns the number written."""
    import csv
    import json
    from pathlib import Path

    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "json").lower()
    if fmt not in ("json", "csv"):
        raise MetricloopError(f"cannot export as '{fmt}': use json or csv", where="--format")
    q = select(KnowledgeEntry).order_by(KnowledgeEntry.id)
    if within is not None:
        q = q.where(KnowledgeEntry.metric.in_(sorted(within)))
    rows = [entry_dict(db_session, catalog, e, with_versions=fmt == "json") for e in db_session.scalars(q)]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps({"entries": rows}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8-sig", newline="") as f:  # with a BOM: Excel then reads the Chinese
            w = csv.DictWriter(f, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({**r, "slices": " | ".join(r["slices"] or [])})
    return len(rows)
