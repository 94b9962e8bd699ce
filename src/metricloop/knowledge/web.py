"""The console's knowledge screen: /console/knowledge?q=… searches the entries of the person's domains."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request

from metricloop.api.deps import workspace
from metricloop.errors import MetricloopError
from metricloop.knowledge import categories as cats
from metricloop.knowledge import service
from metricloop.knowledge.similar import duration_text
from metricloop.limits import MAX_TEXT
from metricloop.web.console.routes import _scope, _tz, language, need_login, render
from metricloop.web.console.sessions import Who
from metricloop.web.pages import clock

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25

WORDS = {
    "zh": {"heading": "知识库", "hint": "例如：断货、承运商延误、stock-out", "category": "根因类别", "cause": "根因",
           "actions": "有效措施", "took": "用时", "by": "处理人", "when": "发生时间",
           "none": "没有找到相关的历史工单。", "empty": "知识库还是空的：工单解决时写下的根因和措施会出现在这里。"},
    "en": {"heading": "Knowledge base", "hint": "e.g. stock-out, carrier delay, 断货", "category": "Category",
           "cause": "Cause", "actions": "What worked", "took": "Took", "by": "Resolved by", "when": "When",
           "none": "No past incidents match.", "empty": "The knowledge base is empty: the causes and actions written "
           "when incidents are resolved appear here."},
}


def _row(catalog, e, ws, lang: str) -> dict:
    return {"incident_id": e.incident_id, "when": clock(e.opened_at, _tz(ws)) if e.opened_at else "—",
            "metric": e.metric, "slices": ", ".join(e.slices or []), "category": cats.label(catalog, e.category, lang),
            "cause": e.cause, "actions": e.actions, "took": duration_text(service.duration_seconds(e), lang),
            "by": e.resolved_by, "version": e.version}


@router.get("/console/knowledge")
def knowledge_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    lang = language(request, ws)
    params = request.query_params
    q, category = params.get("q", ""), params.get("category", "")[:200]
    try:
        page_no = max(1, int(params.get("page", "1") or 1))
    except ValueError:
        page_no = 1
    catalog = ws.catalog()
    items, more, error, status = [], False, "", 200
    try:
        name = cats.check_category(catalog, category, retired=True) if category else None
        with ws.db.session() as s:
            kwargs = {"within": _scope(ws, who), "category": name, "limit": PAGE_SIZE + 1,
                      "offset": (page_no - 1) * PAGE_SIZE}
            if q.strip():  # an empty box lists the newest entries
                found = [e for e, _score, _words in service.search(s, catalog, q, **kwargs)]
            else:
                found = service.list_entries(s, **kwargs)
            more = len(found) > PAGE_SIZE
            items = [_row(catalog, e, ws, lang) for e in found[:PAGE_SIZE]]
    except MetricloopError as e:
        error, status = e.message, 400

    def page_url(n: int) -> str:
        return "/console/knowledge?" + urlencode({k: v for k, v in {"q": q, "category": category}.items() if v}
                                                | {"page": n})

    return render(request, ws, who, "knowledge.html", status=status, kw=WORDS[lang], q=q[:MAX_TEXT],
                  category=category, items=items, error=error, max_query=MAX_TEXT,
                  categories=[(c.name, c.label(lang)) for c in cats.categories(catalog)],
                  prev_url=page_url(page_no - 1) if page_no > 1 else "", next_url=page_url(page_no + 1) if more else "")
