"""GET /reports/weekly: the weekly review as a console page.

A logged-in person (console session) sees it with the console's navigation; a script may send an API token
(`Authorization: Bearer …` or `X-API-Token`, any role) instead, or ask for `format=json`. Either way only the
metrics of the reader's domains are counted, and a domain outside them is "unknown", as in the API.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from metricloop.api.deps import Actor, caller, workspace
from metricloop.auth.users import scope
from metricloop.review import render as review_render
from metricloop.review.report import build, known_teams
from metricloop.review.weeks import ReportInputError, Week
from metricloop.web.console import sessions
from metricloop.web.console.routes import HEADERS, LoginRequired, language, render

router = APIRouter(include_in_schema=False)
MAX_PARAM = 200


def _reader(request: Request, ws, actor: Actor | None):
    """(who for the page's navigation, the reader's domains or None for all). No session and no token: log in."""
    who = sessions.current(ws, request)
    if who is not None:
        return who, who.domains
    if actor is not None:
        return None, actor.domains
    if ws.settings.public_reads:
        return None, None
    raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))


@router.get("/reports/weekly")
def weekly(request: Request, ws=Depends(workspace), actor: Actor | None = Depends(caller)):
    who, domains = _reader(request, ws, actor)
    lang = language(request, ws)
    if who is not None:
        who.lang = lang
    q = request.query_params
    f = {k: q.get(k, "").strip()[:MAX_PARAM] for k in ("team", "domain", "week")}
    tz = ws.config.get("timezone") or "Asia/Shanghai"
    catalog = ws.catalog()
    within = scope(catalog, domains)
    with ws.db.session() as s:
        teams = known_teams(s, catalog)
        try:
            report = build(
                s, catalog, tz=tz, week=f["week"] or None, team=f["team"], domain=f["domain"], within=within, lang=lang
            )
        except ReportInputError as e:
            if q.get("format") == "json":
                return JSONResponse({"error": e.message, "where": e.where}, status_code=e.status_code, headers=HEADERS)
            report, error, status = None, f"{e.where}: {e.text(lang)}", e.status_code
        else:
            error, status = "", 200
    if report is not None and q.get("format") == "json":
        return JSONResponse(report.to_dict(), headers=HEADERS)
    words = review_render.WORDS[lang]
    ctx = review_render.html_context(report, lang) if report is not None else {"r": None, "rw": words}
    return render(
        request, ws, who, "weekly.html", status=status, error=error, f=f | ({"week": report.week} if report else {}),
        teams=teams, domains=sorted({m.domain for n, m in catalog.metrics.items() if within is None or n in within}),
        week_label=report.week if report else "", **_nav(f, report, tz), **ctx,
    )  # fmt: skip


def _nav(f: dict, report, tz: str) -> dict:
    """Links to the week before and after (none after the current week: it has not begun)."""
    if report is None:
        return {"prev_url": "", "next_url": "", "prev_label": "", "next_label": ""}
    week = Week(int(report.week[:4]), int(report.week[-2:]), tz)
    base = {k: v for k, v in f.items() if v and k != "week"}
    before, after = week.shift(-1), week.shift(1)
    return {
        "prev_url": "/reports/weekly?" + urlencode(base | {"week": before.label}),
        "prev_label": before.label,
        "next_url": "" if report.in_progress else "/reports/weekly?" + urlencode(base | {"week": after.label}),
        "next_label": after.label,
    }
