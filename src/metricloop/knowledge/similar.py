"""Similar past incidents: found when an incident opens, stored as rows, shown with what was done and how long
it took ("上次类似：2026-03-10 GZ-001 断货，补货后 3 天恢复").

A past incident scores on four things, each in [0, 1] (WEIGHTS):
- metric: the same metric;
- slice: the same slice (1), a shared dimension value such as region=South (up to 0.8), the same dimensions with
  other values such as another store (0.5);
- pattern: the same kind, direction, monitor and dimensions (and, once root-cause analysis names them, the same
  cause dimensions) — knowledge.service.pattern_of;
- text: BM25 of the new incident's title, explanation and slices against the entry's title, cause, actions and
  category names, divided by the best score among the candidates.
Only entries of incidents opened before this one count, and only those scoring at least MIN_SCORE.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from metricloop.db.times import as_utc, aware
from metricloop.knowledge import categories as cats
from metricloop.knowledge.models import KnowledgeEntry, SimilarIncident
from metricloop.knowledge.service import (
    candidates,
    duration_seconds,
    incident_text,
    index_of,
    parse_slice,
    pattern_of,
)
from metricloop.knowledge.text import matched_words, tokens

WEIGHTS = {"metric": 0.3, "slice": 0.25, "pattern": 0.2, "text": 0.25}
MIN_SCORE = 0.3
TOP = 3


def _pairs(slices) -> set[str]:
    return {f"{k}={v}" for s in slices or [] for k, v in parse_slice(s).items()}


def _jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def slice_similarity(mine: list[str], theirs: list[str]) -> tuple[float, dict | None]:
    if set(mine) & set(theirs):
        same = sorted(set(mine) & set(theirs))[0]
        return 1.0, {"code": "same_slice", "slice": same}
    shared = _pairs(mine) & _pairs(theirs)
    if shared:
        return 0.8 * _jaccard(_pairs(mine), _pairs(theirs)) + 0.2, {"code": "shared_values", "values": sorted(shared)}
    lead_m = sorted(parse_slice(mine[0])) if mine else []
    lead_t = sorted(parse_slice(theirs[0])) if theirs else []
    if lead_m and lead_m == lead_t:
        return 0.5, {"code": "same_dimensions", "dimensions": lead_m}
    return 0.0, None


def pattern_similarity(mine: dict, theirs: dict, same_monitor: bool) -> float:
    parts = [mine.get("kind") == theirs.get("kind"), bool(mine.get("direction"))
             and mine.get("direction") == theirs.get("direction"), same_monitor,
             _jaccard(mine.get("all_dimensions", []), theirs.get("all_dimensions", []))]
    if mine.get("cause_dimensions") and theirs.get("cause_dimensions"):
        parts.append(_jaccard(mine["cause_dimensions"], theirs["cause_dimensions"]))
    return sum(float(p) for p in parts) / len(parts)


def find_similar(db_session: Session, catalog, incident, *, top: int = TOP, within: set[str] | None = None):
    """[(entry, score, reasons)] of the incident's most similar past incidents, best first."""
    rows = candidates(db_session, within=within, before=as_utc(incident.created_at), exclude_incident=incident.id)
    if not rows:
        return []
    query = incident_text(incident)
    text_scores = index_of(catalog, rows).scores(tokens(query))
    best_text = max(text_scores) or 1.0
    mine = pattern_of(incident)
    found = []
    for e, raw in zip(rows, text_scores, strict=True):
        reasons: list[dict] = []
        metric = float(e.metric == incident.metric)
        if metric:
            reasons.append({"code": "same_metric", "metric": e.metric})
        slice_score, why = slice_similarity(list(incident.slices or []), list(e.slices or []))
        if why:
            reasons.append(why)
        pattern = pattern_similarity(mine, e.pattern or {}, e.monitor == incident.monitor)
        if pattern >= 0.75:
            reasons.append({"code": "same_pattern"})
        text = raw / best_text
        words = matched_words(query, " ".join([e.title, e.title_en, e.cause, e.actions])) if raw > 0 else []
        if words:
            reasons.append({"code": "words", "words": words})
        score = (WEIGHTS["metric"] * metric + WEIGHTS["slice"] * slice_score + WEIGHTS["pattern"] * pattern
                 + WEIGHTS["text"] * text)
        if score >= MIN_SCORE:
            found.append((e, round(score, 4), reasons))
    found.sort(key=lambda x: (-x[1], -_when(x[0])))  # ties: the most recent first
    return found[:top]


def _when(e: KnowledgeEntry) -> float:
    return aware(e.resolved_at).timestamp() if e.resolved_at else 0.0


def remember_similar(db_session: Session, catalog, incident, *, now=None) -> list[SimilarIncident]:
    """Find and store the incident's similar past incidents (replacing what was stored): the page reads these."""
    db_session.flush()
    db_session.execute(delete(SimilarIncident).where(SimilarIncident.incident_id == incident.id))
    rows = []
    found = find_similar(db_session, catalog, incident)
    for rank, (e, score, reasons) in enumerate(found, 1):
        row = SimilarIncident(incident_id=incident.id, entry_id=e.id, rank=rank, score=score, reasons=reasons,
                              found_at=as_utc(now))
        db_session.add(row)
        rows.append(row)
    same = [e for e, _score, _why in found if e.metric == incident.metric]
    if same:  # the messages say what was done last time (the best match of the same metric: the routed people's)
        tz = _timezone(catalog, incident.metric)
        lines = {f"last_similar_{lang}": summary_line(catalog, same[0], lang, tz) for lang in ("zh", "en")}
        incident.summary = {**(incident.summary or {}), **lines}
    return rows


def _timezone(catalog, metric: str) -> str:
    spec = catalog.metrics.get(metric)
    return getattr(spec, "timezone", None) or "Asia/Shanghai"


def similar_for(db_session: Session, catalog, incident, *, within: set[str] | None = None):
    """[(entry, score, reasons)] as stored when the incident opened (entries as they are now, so edits show), only
    those inside `within`. With none stored (an incident opened before the knowledge base had anything like it, or
before it existed) it is matched now, among the entries of incidents opened before it; that is not stored."""
    stored = db_session.execute(
        select(SimilarIncident, KnowledgeEntry)
        .join(KnowledgeEntry, KnowledgeEntry.id == SimilarIncident.entry_id)
        .where(SimilarIncident.incident_id == incident.id)
        .order_by(SimilarIncident.rank)
    ).all()
    if not stored:
        return find_similar(db_session, catalog, incident, within=within)
    return [(e, m.score, m.reasons) for m, e in stored if within is None or e.metric in within]


# ------------------------------------------------------------------ words


def duration_text(seconds: float | None, lang: str) -> str:
    if seconds is None:
        return ""
    if seconds < 3600:
        n, zh, en = max(1, round(seconds / 60)), "分钟", "minute"
    elif seconds < 36 * 3600:
        n, zh, en = round(seconds / 3600), "小时", "hour"
    else:
        n, zh, en = round(seconds / 86400), "天", "day"
    return f"{n} {zh}" if lang == "zh" else f"{n} {en}{'s' if n != 1 else ''}"


def _where(slices) -> str:
    """The values of the incident's most specific slice: 'SH-003', 'ZTO/South' (a group's lead is often '*')."""
    if not slices:
        return ""
    deepest = max(slices, key=lambda x: len(parse_slice(x)))
    return "/".join(parse_slice(deepest).values())


_HAN = re.compile(r"[\u4e00-\u9fff]")


def short_actions(text: str, lang: str = "zh", limit: int = 40) -> str:
    """The first sentence of the actions, short. Text written in both languages as "中文 / English" gives the part
    in `lang`."""
    parts = [p.strip() for p in (text or "").split(" / ") if p.strip()]
    if len(parts) > 1:
        mine = [p for p in parts if bool(_HAN.search(p)) == (lang == "zh")]
        text = mine[0] if mine else parts[0]
    first = re.split(r"[。；;\n]|\.\s", (text or "").strip(), maxsplit=1)[0].strip().rstrip(".。")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def summary_line(catalog, e: KnowledgeEntry, lang: str, tz: str = "Asia/Shanghai") -> str:
    """'上次类似：2026-03-10 GZ-001 断货，补货后 3 天恢复' / 'Last similar: 2026-03-10 GZ-001 stock-out, restocked,
    recovered in 3 days'."""
    day = aware(e.opened_at).astimezone(ZoneInfo(tz)).date().isoformat() if e.opened_at else ""
    head = " ".join(x for x in (day, _where(e.slices), cats.label(catalog, e.category, lang)) if x)
    act, took = short_actions(e.actions, lang), duration_text(duration_seconds(e), lang)
    if lang == "zh":
        tail = (f"{act}后 {took}恢复" if act else f"{took}后恢复") if took else act
        return f"上次类似：{head}" + (f"，{tail}" if tail else "")
    tail = ", ".join(x for x in (act, f"recovered in {took}" if took else "") if x)
    return f"Last similar: {head}" + (f", {tail}" if tail else "")


REASON_WORDS = {
    "zh": {"same_metric": "同一指标", "same_slice": "同一切片 {slice}", "shared_values": "相同维度值 {values}",
           "same_dimensions": "同样按 {dimensions} 切分", "same_pattern": "相同模式", "words": "文字相近：{words}"},
    "en": {"same_metric": "same metric", "same_slice": "same slice {slice}", "shared_values": "shared {values}",
           "same_dimensions": "same dimensions ({dimensions})", "same_pattern": "same pattern",
           "words": "similar words: {words}"},
}


def reason_text(reasons: list[dict], lang: str) -> str:
    words = REASON_WORDS[lang]
    out = []
    for r in reasons:
        template = words.get(r.get("code", ""))
        if template:
            args = {k: ", ".join(v) if isinstance(v, list) else v for k, v in r.items() if k != "code"}
            out.append(template.format(**{**dict.fromkeys(("slice", "values", "dimensions", "words"), ""), **args}))
    return "；".join(out) if lang == "zh" else "; ".join(out)


def match_dict(db_session: Session, catalog, e, score, reasons, *, tz: str = "Asia/Shanghai") -> dict:
    from metricloop.knowledge.service import entry_dict

    return {**entry_dict(db_session, catalog, e), "score": score, "reasons": reasons,
            "summary_zh": summary_line(catalog, e, "zh", tz), "summary_en": summary_line(catalog, e, "en", tz)}
