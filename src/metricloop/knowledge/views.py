"""What the incident API and pages show of the knowledge base: the incident's own entry and its similar ones."""

from __future__ import annotations

from metricloop.knowledge import categories as cats
from metricloop.knowledge.service import entry_dict, entry_for_incident
from metricloop.knowledge.similar import match_dict, reason_text, similar_for, summary_line


def _tz(ws) -> str:
    return ws.config.get("timezone") or "Asia/Shanghai"


def knowledge_detail(s, ws, inc, *, within=None) -> dict:
    """{"knowledge": the incident's entry or None, "similar": its most similar past incidents} for the API."""
    catalog = ws.catalog()
    own = entry_for_incident(s, inc.id)
    return {
        "knowledge": entry_dict(s, catalog, own, with_versions=True) if own is not None else None,
        "similar": [match_dict(s, catalog, e, score, reasons, tz=_tz(ws))
                    for e, score, reasons in similar_for(s, catalog, inc, within=within)],
    }


def similar_panel(s, ws, inc, lang: str, *, within=None) -> dict:
    """The incident page's panel (_similar.html): one line per similar past incident, and the resolve form's
    categories."""
    catalog = ws.catalog()
    rows = []
    for e, score, reasons in similar_for(s, catalog, inc, within=within):
        rows.append({"id": e.id, "incident_id": e.incident_id, "line": summary_line(catalog, e, lang, _tz(ws)),
                     "cause": e.cause, "actions": e.actions, "why": reason_text(reasons, lang),
                     "score": round(score * 100), "by": e.resolved_by})
    return {"rows": rows, **resolve_choices(ws, lang)}


def resolve_choices(ws, lang: str) -> dict:
    """What a resolve form offers: the categories that can be chosen, and the form's words."""
    usable = cats.categories(ws.catalog(), include_retired=False)
    return {"categories": [(c.name, c.label(lang)) for c in usable], "words": PANEL_WORDS[lang],
            "max_actions": 4000}


def link_panel(s, ws, inc, lang: str) -> dict:
    """The message link's incident page: the resolve form's fields, and the "last similar" lines of past incidents
    of the same metric only (the link is the permission for this one incident, not for other domains' entries)."""
    catalog = ws.catalog()
    lines = [summary_line(catalog, e, lang, _tz(ws)) for e, _score, _why in similar_for(s, catalog, inc)
             if e.metric == inc.metric]
    return {"lines": lines, **resolve_choices(ws, lang)}


PANEL_WORDS = {
    "zh": {"title": "类似的历史工单", "none": "还没有类似的历史工单。", "cause": "根因", "actions": "有效措施",
           "why": "相似原因", "search": "搜索知识库", "match": "相似度", "by": "处理人",
           "category": "根因类别", "category_hint": "不选：按根因文字判断，否则为「其他」",
           "actions_label": "有效措施", "actions_hint": "例如：从华东仓紧急调拨补货"},
    "en": {"title": "Similar past incidents", "none": "No similar past incidents yet.", "cause": "Cause",
           "actions": "What worked", "why": "Why similar", "search": "Search the knowledge base", "match": "match",
           "by": "resolved by", "category": "Root-cause category",
           "category_hint": "None chosen: read from the root cause's words, else 'other'",
           "actions_label": "Actions that worked", "actions_hint": "e.g. restocked from the East warehouse"},
}
