"""The console's routes: /login, /logout, /console (home), /console/incidents, /incidents/{id} for a logged-in
person, /console/metrics, /console/monitors. Pages are rendered on the server; forms POST and redirect back.

Every POST carries the session's CSRF token in a hidden field (checked here); viewers see no action buttons and
their POSTs are refused (403); anything outside the person's metric domains is a 404, as in the API.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import select
from starlette.routing import Match

from metricloop.api.deps import workspace
from metricloop.auth.users import LoginError, RateLimited, check_login, scope
from metricloop.errors import MetricloopError, NotFound
from metricloop.incidents import service
from metricloop.incidents.models import STATES, Incident
from metricloop.incidents.views import incident_detail, list_incidents
from metricloop.notify.render import LANGUAGES, STATE_TEXT
from metricloop.web.console import sessions
from metricloop.web.console.sessions import Who
from metricloop.web.console.words import WORDS
from metricloop.web.pages import clock, environment, pick_language, zone_name

STATIC = Path(__file__).parent.parent / "static"
LANG_COOKIE = "ml_lang"
LOGIN_COOKIE = "ml_login"  # the login form's CSRF token, before there is a session
PAGE_SIZE = 25
MAX_COMMENT = 4000
MAX_FIELD = 2000
SEVERITIES = ("P1", "P2", "P3")
CHART_DAYS = (60, 180, 365, 730)  # a metric chart's spans: the first is the default

# The console runs its own scripts (vendored, same origin) and nothing else: no inline script, no inline style
# attribute, no request to another host.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

router = APIRouter(include_in_schema=False)
limiter = sessions.ClientLimiter()


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class Refused(Exception):
    """A page that says no (403 / 404 / 400 …), in the person's language."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


# ------------------------------------------------------------------ language, rendering


def script_json(data) -> str:
    """A chart's data as JSON, for a data-chart attribute (the template escapes it: no markup can get out)."""
    return json.dumps(data, ensure_ascii=False)


def language(request: Request, ws) -> str:
    """`?lang=`, else the remembered choice (cookie), else the browser's Accept-Language, else the workspace's."""
    asked = request.query_params.get("lang", "")
    if asked in LANGUAGES:
        return asked
    kept = request.cookies.get(LANG_COOKIE, "")
    if kept in LANGUAGES:
        return kept
    return pick_language(request, ws.config.get("language", "zh"))


def _switch(request: Request) -> list[tuple[str, str]]:
    query = {k: v for k, v in request.query_params.items() if k not in ("lang", "done")}
    return [(code, f"{request.url.path}?{urlencode(query | {'lang': code})}") for code in LANGUAGES]


def render(request: Request, ws, who: Who | None, template: str, *, status: int = 200, chart: bool = False, **ctx):
    lang = language(request, ws)
    tz = ws.config.get("timezone") or "Asia/Shanghai"
    html = (
        environment()
        .get_template(f"console/{template}")
        .render(
            lang=lang,
            words=WORDS[lang],
            who=who,
            switch=_switch(request),
            path=request.url.path,
            chart=chart,
            zone=zone_name(tz, lang),
            state_text=STATE_TEXT[lang],
            **ctx,
        )
    )
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return response


def refused_page(request: Request, ws, who: Who | None, status: int, message: str):
    return render(request, ws, who, "message.html", status=status, message=message)


def _partial(request: Request) -> bool:
    """An HTMX request for a part of the page (not a history restore, which wants the whole page)."""
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-history-restore-request")


def need_login(request: Request, ws=Depends(workspace)) -> Who:
    who = sessions.current(ws, request)
    if who is None:
        raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return who


def _scope(ws, who: Who) -> set[str] | None:
    return scope(ws.catalog(), who.domains)


def _visible_incident(s, ws, who: Who, incident_id: int) -> Incident:
    lang = who.lang
    inc = s.get(Incident, incident_id)
    allowed = _scope(ws, who)
    if inc is None or (allowed is not None and inc.metric not in allowed):
        raise Refused(404, {"zh": f"没有工单 #{incident_id}", "en": f"No incident #{incident_id}"}[lang])
    return inc


async def form_of(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _check_csrf(request: Request, ws, who: Who, form: dict[str, str]) -> None:
    if not sessions.csrf_ok(who, form.get("csrf") or request.headers.get("x-csrf-token")):
        lang = language(request, ws)
        raise Refused(
            403,
            {
                "zh": "表单已失效（缺少或错误的 CSRF 令牌）：请刷新页面后重试。",
                "en": "The form is not valid (missing or wrong CSRF token): reload the page and retry.",
            }[lang],
        )


# ------------------------------------------------------------------ login, logout


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _safe_next(url: str | None) -> str:
    return url if url and url.startswith("/") and not url.startswith("//") and "\\" not in url else "/console"


@router.get("/login")
def login_page(request: Request, ws=Depends(workspace), next: str | None = None):
    if sessions.current(ws, request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, ws, next=next)


def _login_form(request: Request, ws, *, next: str | None, error: str = "", status: int = 200, name: str = ""):
    import secrets

    token = secrets.token_urlsafe(24)
    response = render(
        request, ws, None, "login.html", status=status, error=error, csrf=token, next=_safe_next(next), name=name
    )
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/login")
    return response


@router.post("/login")
async def login(request: Request, ws=Depends(workspace)):
    form = await form_of(request)
    lang = language(request, ws)
    next_url = _safe_next(form.get("next"))
    name = form.get("name", "")[:200]
    sent, kept = form.get("csrf", ""), request.cookies.get(LOGIN_COOKIE, "")
    if not sent or not kept or not sessions.hmac.compare_digest(sent, kept):
        text = {"zh": "登录表单已失效，请重试。", "en": "The login form expired: please try again."}[lang]
        return _login_form(request, ws, next=next_url, error=text, status=403, name=name)
    wait = limiter.blocked(_client(request))
    if wait:
        text = {
            "zh": f"错误密码次数过多，请 {int(wait // 60) + 1} 分钟后再试。",
            "en": f"Too many wrong passwords: try again in {int(wait // 60) + 1} minutes.",
        }[lang]
        return _login_form(request, ws, next=next_url, error=text, status=429, name=name)
    try:
        with ws.db.session() as s:
            user = check_login(s, name, form.get("password", "")[:1024])
            s.expunge(user)
    except RateLimited:
        text = {
            "zh": "这个用户错误密码次数过多，已暂时锁定（15 分钟）。",
            "en": "Too many wrong passwords for this user: locked for 15 minutes.",
        }[lang]
        return _login_form(request, ws, next=next_url, error=text, status=429, name=name)
    except LoginError as e:
        limiter.failed(_client(request))
        text = {
            "zh": "用户名或密码错误。" if "wrong" in e.message else "这个用户已停用。",
            "en": "Wrong user name or password." if "wrong" in e.message else "This user is disabled.",
        }[lang]
        return _login_form(request, ws, next=next_url, error=text, status=401, name=name)
    response = RedirectResponse(next_url, status_code=303)
    sessions.start(ws, user, response, secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, ws=Depends(workspace)):
    who = sessions.current(ws, request)
    form = await form_of(request)
    if who is not None:
        _check_csrf(request, ws, who, form)
    response = RedirectResponse("/login", status_code=303)
    sessions.end(ws, who, response)
    return response


# ------------------------------------------------------------------ home


def _tz(ws) -> str:
    return ws.config.get("timezone") or "Asia/Shanghai"


def _row(inc: Incident, ws, lang: str) -> dict:
    from metricloop.notify.render import incident_title

    return {
        "id": inc.id,
        "title": incident_title(inc, lang),
        "severity": inc.severity,
        "state": inc.state,
        "assignee": inc.assignee,
        "team": inc.team,
        "metric": inc.metric,
        "opened": clock(inc.created_at, _tz(ws)),
        "breached": inc.ack_breached or inc.resolve_breached,
    }


@router.get("/console")
def home(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    from metricloop.monitors.models import MonitorRun

    lang = language(request, ws)
    allowed = _scope(ws, who)
    with ws.db.session() as s:
        from metricloop.web.console.home_data import home_figures

        fig = home_figures(s, allowed, me=(who.email, who.name))
        by_severity = {sev: fig["by_severity"].get(sev, 0) for sev in SEVERITIES}
        by_owner = {(k or WORDS[lang]["unassigned"]): n for k, n in fig["by_owner"].items()}
        breaches = [_row(i, ws, lang) for i in fig["breaches"]]
        data_quality = [_row(i, ws, lang) for i in fig["data_quality"]]
        mine = [_row(i, ws, lang) for i in fig["mine"]]
        from metricloop.web.console.home_data import latest_run_quality

        visible = [n for n, m in ws.catalog().all("monitor").items() if allowed is None or m.metric in allowed]
        run_quality = latest_run_quality(s, visible, lang)
        tz = ZoneInfo(_tz(ws))
        midnight = datetime.combine(datetime.now(tz).date(), time(0), tzinfo=tz).astimezone(UTC)
        monitors = ws.catalog().all("monitor")
        runs = [
            {
                "id": r.id,
                "monitor": r.monitor,
                "status": r.status,
                "at": clock(r.started_at, _tz(ws)),
                "series": r.series_evaluated,
                "anomalies": r.anomalies,
                "error": r.error,
            }
            for r in s.scalars(
                select(MonitorRun).where(MonitorRun.started_at >= midnight).order_by(MonitorRun.id.desc()).limit(200)
            )
            if allowed is None or (r.monitor in monitors and monitors[r.monitor].metric in allowed)
        ][:20]
    owners = sorted(by_owner.items(), key=lambda kv: (-kv[1], kv[0]))
    return render(
        request,
        ws,
        who,
        "home.html",
        by_severity=by_severity,
        owners=owners,
        breaches=breaches,
        mine=mine,
        runs=runs,
        open_count=fig["open_count"],
        data_quality=data_quality,
        run_quality=run_quality,
    )


# ------------------------------------------------------------------ incidents


def _date(value: str, where: str, lang: str, tz: str, *, end: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        d = date.fromisoformat(value)
    except ValueError:
        raise Refused(
            400,
            {
                "zh": f"「{where}」的日期 '{value}' 无效：请用 YYYY-MM-DD，例如 2026-11-17。",
                "en": f"'{value}' in '{where}' is not a date: use YYYY-MM-DD, e.g. 2026-11-17.",
            }[lang],
        ) from None
    return datetime.combine(d + timedelta(days=1) if end else d, time(0), tzinfo=ZoneInfo(tz))


@router.get("/console/incidents")
def incidents_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    lang = language(request, ws)
    q = request.query_params
    keys = ("state", "severity", "assignee", "team", "metric", "domain", "from", "to")
    f = {k: q.get(k, "").strip()[:200] for k in keys}
    try:
        page_no = max(1, int(q.get("page", "1") or 1))
    except ValueError:
        page_no = 1
    tz = _tz(ws)
    try:
        since = _date(f["from"], WORDS[lang]["from"], lang, tz)
        until = _date(f["to"], WORDS[lang]["to"], lang, tz, end=True)
    except Refused as e:
        return render(
            request, ws, who, "incidents.html", status=400, error=e.message, **_list_ctx(ws, who, f, [], 1, False)
        )
    with ws.db.session() as s:
        rows = list_incidents(
            s,
            state=f["state"] or None,
            severity=f["severity"] or None,
            assignee=f["assignee"] or None,
            team=f["team"] or None,
            metric=f["metric"] or None,
            since=since,
            until=until,
            within=_within(ws, who, f["domain"]),
            limit=PAGE_SIZE + 1,
            offset=(page_no - 1) * PAGE_SIZE,
        )
        more = len(rows) > PAGE_SIZE
        items = [_row(i, ws, lang) for i in rows[:PAGE_SIZE]]
    ctx = _list_ctx(ws, who, f, items, page_no, more)
    template = "_incident_rows.html" if _partial(request) else "incidents.html"
    return render(request, ws, who, template, error="", **ctx)


def _within(ws, who: Who, domain: str) -> set[str] | None:
    """The metrics the list may show: the person's, narrowed to one domain when the filter asks."""
    allowed = _scope(ws, who)
    if not domain:
        return allowed
    in_domain = {n for n, m in ws.catalog().metrics.items() if m.domain == domain}
    return in_domain if allowed is None else in_domain & allowed


def _list_ctx(ws, who, f, items, page_no, more) -> dict:
    allowed = _scope(ws, who)
    metrics = sorted(n for n in ws.catalog().metrics if allowed is None or n in allowed)
    domains = sorted({m.domain for n, m in ws.catalog().metrics.items() if allowed is None or n in allowed})

    def page_url(n: int) -> str:
        return "/console/incidents?" + urlencode({k: v for k, v in f.items() if v} | {"page": n})

    return {
        "f": f,
        "items": items,
        "page_no": page_no,
        "prev_url": page_url(page_no - 1) if page_no > 1 else "",
        "next_url": page_url(page_no + 1) if more else "",
        "states": STATES,
        "severities": SEVERITIES,
        "metric_names": metrics,
        "domain_names": domains,
    }


def _incident_screen(request: Request, ws, who: Who, incident_id: int, *, status: int = 200, error: str = ""):
    from metricloop.rca.panel import rca_panel
    from metricloop.web.console.charts import incident_chart
    from metricloop.web.console.feedback_panel import feedback_panel
    from metricloop.web.incident_page import incident_view

    lang = language(request, ws)
    who.lang = lang
    with ws.db.session() as s:
        inc = _visible_incident(s, ws, who, incident_id)
        v = incident_view(s, ws, inc, lang)
        detail = incident_detail(s, inc)
        notes = [
            {
                "channel": n["channel"],
                "recipient": n["recipient"],
                "event": n["event"],
                "status": n["status"],
                "at": clock(datetime.fromisoformat(n["sent_at"] or n["created_at"]), _tz(ws))
                if (n["sent_at"] or n["created_at"])
                else "—",
            }
            for n in detail["notifications"]
        ]
        state = inc.state
        feedback = feedback_panel(s, ws, inc, lang)
        from metricloop.knowledge.views import similar_panel

        similar = similar_panel(s, ws, inc, lang, within=_scope(ws, who))
        s.expunge(inc)
    silence = silence_matchers(inc)
    try:
        data = incident_chart(ws, inc)
    except MetricloopError as e:  # the source is down: the page still opens, without the chart
        data, error = None, error or e.message
    done = request.query_params.get("done", "")
    return render(
        request,
        ws,
        who,
        "incident.html",
        status=status,
        chart=data is not None,
        v=v,
        notes=notes,
        chart_json=script_json(data) if data else "",
        rca=rca_panel(detail["rca"], lang),
        error=error,
        done=WORDS[lang].get(done, "") if done in (*ACTIONS, "silence") else "",
        can_act=who.can("operator"),
        can_ack=state == "triggered",
        is_open=state in service.OPEN_STATES,
        can_reopen=state in ("resolved", "reviewed"),
        csrf=who.csrf,
        max_comment=MAX_COMMENT,
        max_field=MAX_FIELD,
        feedback=feedback,
        similar=similar,
        silence_form={
            "matchers": "\n".join(silence),
            "reason": f"#{inc.id} {v['title']}"[:MAX_FIELD],
            "duration": "2h",
        },
    )


def silence_matchers(inc: Incident) -> list[str]:
    """Silence this: the incident's metric and monitor, and the dimensions its slices agree on (a silence's
    matchers all hold at once, so slices that differ on a dimension leave it out: it silences them all)."""
    from metricloop.metrics.slices import parse_slice

    out = [f"metric={inc.metric}"] + ([f"monitor={inc.monitor}"] if inc.monitor else [])
    slices = [parse_slice(x) for x in (inc.slices or []) if x not in ("", "*")]
    if slices:
        shared = {k: v for k, v in slices[0].items() if all(sl.get(k) == v for sl in slices[1:])}
        out += [f"{k}={v}" for k, v in sorted(shared.items())]
    return out


@router.get("/console/incidents/{incident_id}")
def incident_screen(incident_id: int, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    return _incident_screen(request, ws, who, incident_id)


ACTIONS = ("ack", "assign", "comment", "resolve", "reopen")


def _too_long(value: str, limit: int, what: str, lang: str) -> None:
    if len(value) > limit:
        raise Refused(
            400,
            {
                "zh": f"{what}太长：{len(value)} 个字符，最多 {limit} 个。",
                "en": f"The {what} is too long: {len(value)} characters, at most {limit}.",
            }[lang],
        )


async def _operator_form(request: Request, ws, who: Who, *, doing: dict[str, str]) -> tuple[str, dict]:
    """The language and the checked form of a POST that acts: CSRF first, then the role (403 names what it needs).
    `doing` says in zh and en what the person tried, e.g. {"zh": "创建静默", "en": "silencing"}."""
    lang = language(request, ws)
    form = await form_of(request)
    _check_csrf(request, ws, who, form)
    if not who.can("operator"):
        raise Refused(
            403,
            {
                "zh": f"你的角色是 {who.role}：{doing['zh']}需要 operator 或 admin。",
                "en": f"Your role is {who.role}: {doing['en']} needs operator or admin.",
            }[lang],
        )
    return lang, form


@router.post("/console/incidents/{incident_id}/{action}")
async def incident_action(
    incident_id: int, action: str, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)
):
    lang, form = await _operator_form(request, ws, who, doing={"zh": "操作工单", "en": "acting on incidents"})
    who.lang = lang
    if action not in ACTIONS:
        raise Refused(404, {"zh": f"没有操作 '{action}'", "en": f"No action '{action}'"}[lang])
    with ws.db.session() as s:
        _visible_incident(s, ws, who, incident_id)
    w = WORDS[lang]
    try:
        with ws.db.session() as s:
            if action == "ack":
                service.acknowledge(s, ws, ws.catalog(), incident_id=incident_id, actor=who.name)
            elif action == "assign":
                assignee = form.get("assignee", "").strip()
                _too_long(assignee, 200, w["assignee"], lang)
                if not assignee:
                    raise Refused(400, {"zh": "请填写指派给谁。", "en": "Say whom to assign it to."}[lang])
                service.assign(
                    s,
                    ws,
                    ws.catalog(),
                    incident_id=incident_id,
                    assignee=assignee,
                    team=form.get("team", "").strip()[:200] or None,
                    actor=who.name,
                )
            elif action == "comment":
                text = form.get("text", "").strip()
                _too_long(text, MAX_COMMENT, w["comment"], lang)
                if not text:
                    raise Refused(400, {"zh": "评论是空的。", "en": "The comment is empty."}[lang])
                service.comment(s, incident_id=incident_id, actor=who.name, text=text)
            elif action == "resolve":
                root_cause, note = form.get("root_cause", "").strip(), form.get("note", "").strip()
                actions = form.get("actions", "").strip()
                _too_long(root_cause, MAX_FIELD, w["root_cause"], lang)
                _too_long(note, MAX_COMMENT, w["resolution"], lang)
                _too_long(actions, MAX_COMMENT, w["resolution"], lang)
                if not root_cause:
                    raise Refused(400, {"zh": "解决工单需要填写根因。", "en": "Resolving needs a root cause."}[lang])
                service.resolve(
                    s, ws, ws.catalog(), incident_id=incident_id, actor=who.name, root_cause=root_cause, note=note,
                    category=form.get("category", "").strip() or None, actions=actions,
                )
            else:
                reason = form.get("reason", "").strip()
                _too_long(reason, MAX_FIELD, w["reason"], lang)
                service.reopen(s, ws, ws.catalog(), incident_id=incident_id, actor=who.name, reason=reason)
    except Refused as e:
        return _incident_screen(request, ws, who, incident_id, status=e.status, error=e.message)
    except service.StateError as e:
        return _incident_screen(request, ws, who, incident_id, status=409, error=e.message)
    except NotFound:
        raise
    except MetricloopError as e:
        return _incident_screen(request, ws, who, incident_id, status=e.status_code, error=e.message)
    return RedirectResponse(f"/incidents/{incident_id}?done={action}", status_code=303)


# ------------------------------------------------------------------ metrics


def _metric_row(m, lang: str) -> dict:
    return {
        "name": m.name,
        "title": (m.title.zh if lang == "zh" else m.title.en) or m.title.en or m.title.zh or m.name,
        "aliases": m.aliases,
        "domain": m.domain,
        "owner": m.owner,
        "tier": m.tier,
        "unit": m.unit,
        "description": m.description,
    }


@router.get("/console/metrics")
def metrics_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    lang = language(request, ws)
    q = request.query_params
    f = {k: q.get(k, "").strip()[:200] for k in ("q", "domain", "owner", "tier")}
    allowed = _scope(ws, who)
    visible = [m for m in ws.catalog().metrics.values() if allowed is None or m.name in allowed]
    needle = f["q"].casefold()

    def hit(m) -> bool:
        names = [m.name, *m.aliases, m.title.zh or "", m.title.en or ""]
        return (
            (not needle or any(needle in n.casefold() for n in names))
            and (not f["domain"] or m.domain == f["domain"])
            and (not f["owner"] or f["owner"].casefold() in m.owner.casefold())
            and (not f["tier"] or m.tier == f["tier"])
        )

    items = [_metric_row(m, lang) for m in sorted(visible, key=lambda m: m.name) if hit(m)]
    domains = sorted({m.domain for m in visible})
    template = "_metric_rows.html" if _partial(request) else "metrics.html"
    return render(request, ws, who, template, f=f, items=items, domains=domains, tiers=("core", "important", "normal"))


def _visible_metric(ws, who: Who, name: str, lang: str):
    catalog = ws.catalog()
    allowed = _scope(ws, who)
    if name not in catalog.metrics or (allowed is not None and name not in allowed):
        raise Refused(404, {"zh": f"没有指标 '{name}'", "en": f"No metric '{name}'"}[lang])
    return catalog.metric(name)


@router.get("/console/metrics/{name}")
def metric_page(name: str, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    import yaml

    from metricloop.web.console.charts import metric_chart

    lang = language(request, ws)
    m = _visible_metric(ws, who, name, lang)
    by = request.query_params.get("by", "")
    if by and by not in m.dimensions:
        by = ""
    days = request.query_params.get("days", "")
    days = int(days) if days in {str(d) for d in CHART_DAYS} else CHART_DAYS[0]
    error = ""
    try:
        data = metric_chart(ws, m.name, by=by or None, lang=lang, days=days)
    except MetricloopError as e:
        data, error = {"times": [], "series": [], "by": by, "unit": m.unit, "sql": []}, e.message
    ctx = {
        "m": _metric_row(m, lang),
        "dims": m.dimensions,
        "by": by,
        "days": days,
        "day_choices": CHART_DAYS,
        "sql": "\n\n".join(data.pop("sql") or []),
        "definition": yaml.safe_dump(m.normalized(), allow_unicode=True, sort_keys=False),
        "chart_json": script_json(data),
        "error": error,
    }
    if not _partial(request):
        from metricloop.web.console.metric_extra import metric_extra

        ctx |= metric_extra(ws, m, tz=_tz(ws))
    template = "_metric_chart.html" if _partial(request) else "metric.html"
    return render(request, ws, who, template, chart=True, **ctx)


# ------------------------------------------------------------------ monitors


@router.get("/console/monitors")
def monitors_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    from metricloop.monitors.models import MonitorRun

    allowed = _scope(ws, who)
    from metricloop.monitors.pauses import paused_monitors

    specs = [m for m in ws.catalog().all("monitor").values() if allowed is None or m.metric in allowed]
    items = []
    with ws.db.session() as s:
        paused = paused_monitors(s)
        for m in sorted(specs, key=lambda m: m.name):
            last = s.scalar(select(MonitorRun).where(MonitorRun.monitor == m.name).order_by(MonitorRun.id.desc()))
            items.append(
                {
                    "name": m.name,
                    "metric": m.metric,
                    "schedule": m.schedule.cron or "",
                    "last": clock(last.started_at, _tz(ws)) if last else "—",
                    "status": last.status if last else "",
                    "anomalies": last.anomalies if last else 0,
                    "paused": m.name in paused,
                }
            )
    return render(request, ws, who, "monitors.html", items=items)


# ------------------------------------------------------------------ silences


def _silence_scope_ok(ws, who: Who, matchers: list[str]) -> bool:
    """A person with domains may only silence inside them: one matcher must be metric=NAME of their domains."""
    from metricloop.alerting.matchers import parse_matchers

    allowed = _scope(ws, who)
    if allowed is None:
        return True
    return any(m.label == "metric" and m.op == "=" and m.value in allowed for m in parse_matchers(matchers))


def _silence_rows(ws, s, who: Who) -> list[dict]:
    from metricloop.alerting.matchers import parse_matchers
    from metricloop.alerting.silences import list_silences
    from metricloop.db.times import aware

    allowed = _scope(ws, who)
    now = datetime.now(UTC)
    rows = []
    for x in list_silences(s)[:200]:
        metrics = {m.value for m in parse_matchers(x.matchers) if m.label == "metric" and m.op == "="}
        if allowed is not None and not (metrics and metrics <= allowed):
            continue  # a silence of other domains (or of all): not theirs to see
        active = x.expired_early_at is None and aware(x.ends_at) > now
        rows.append(
            {
                "id": x.id,
                "matchers": x.matchers,
                "reason": x.reason,
                "by": x.created_by,
                "active": active,
                "starts": clock(x.starts_at, _tz(ws)),
                "ends": clock(x.expired_early_at or x.ends_at, _tz(ws)),
            }
        )
    return rows


def _silences_page(request: Request, ws, who: Who, *, status: int = 200, error: str = "", form=None):
    with ws.db.session() as s:
        rows = _silence_rows(ws, s, who)
    return render(
        request,
        ws,
        who,
        "silences.html",
        status=status,
        error=error,
        items=rows,
        csrf=who.csrf,
        can_act=who.can("operator"),
        form=form
        or {
            "matchers": request.query_params.get("matchers", "")[:MAX_FIELD],
            "reason": request.query_params.get("reason", "")[:MAX_FIELD],
            "duration": request.query_params.get("duration", "")[:20] or "2h",
        },
        done=request.query_params.get("done", ""),
    )


@router.get("/console/silences")
def silences_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    return _silences_page(request, ws, who)


@router.post("/console/silences")
async def silence_create(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    from metricloop.alerting.matchers import parse_matchers
    from metricloop.alerting.silences import create
    from metricloop.definitions.durations import parse_duration

    lang, form = await _operator_form(request, ws, who, doing={"zh": "创建静默", "en": "silencing"})
    kept = {k: form.get(k, "")[:MAX_FIELD] for k in ("matchers", "reason", "duration")}
    matchers = [line.strip() for line in kept["matchers"].splitlines() if line.strip()]
    try:
        try:
            length = parse_duration(kept["duration"].strip() or "2h")
        except (ValueError, MetricloopError) as e:
            raise MetricloopError(str(getattr(e, "message", e)), where="duration") from None
        try:
            parse_matchers(matchers)
        except ValueError as e:
            raise MetricloopError(str(e), where="matchers") from None
        if matchers and not _silence_scope_ok(ws, who, matchers):
            raise MetricloopError(
                {
                    "zh": "你只能静默自己业务域内的指标：请加上 metric=指标名。",
                    "en": "You may only silence metrics of your domains: add metric=NAME.",
                }[lang],
                where="matchers",
            )
        incident_id = _incident_field(form.get("incident", ""), lang)
        with ws.db.session() as s:
            if incident_id is not None:  # "silence this" from an incident: back to it (a 404 if not theirs)
                _visible_incident(s, ws, who, incident_id)
            create(s, matchers=matchers, reason=kept["reason"], created_by=who.name, duration=length)
    except MetricloopError as e:
        where = f" ({e.where})" if e.where else ""
        return _silences_page(request, ws, who, status=400, error=e.message + where, form=kept)
    if incident_id is not None:
        return RedirectResponse(f"/incidents/{incident_id}?done=silence", status_code=303)
    return RedirectResponse("/console/silences?done=1", status_code=303)


def _incident_field(value: str, lang: str) -> int | None:
    if not value.strip():
        return None
    if not value.strip().isdigit():
        raise MetricloopError(
            {"zh": f"工单编号 '{value[:50]}' 不是数字", "en": f"incident '{value[:50]}' is not a number"}[lang],
            where="incident",
        )
    return int(value)


@router.post("/console/silences/{silence_id}/expire")
async def silence_expire(silence_id: int, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    from metricloop.alerting.silences import expire

    lang, form = await _operator_form(request, ws, who, doing={"zh": "结束静默", "en": "ending a silence"})
    with ws.db.session() as s:
        if silence_id not in {r["id"] for r in _silence_rows(ws, s, who)}:
            raise Refused(404, {"zh": f"没有静默 #{silence_id}", "en": f"No silence #{silence_id}"}[lang])
        expire(s, silence_id=silence_id)
    return RedirectResponse("/console/silences?done=1", status_code=303)


# ------------------------------------------------------------------ wiring


def _has_session(scope_) -> bool:
    headers = dict(scope_.get("headers") or [])
    return f"{sessions.COOKIE}=".encode() in headers.get(b"cookie", b"")


class SessionRoute(APIRoute):
    """/incidents/{id} for a request with a console session cookie: the console's screen. Any other request (a
    message link opened by someone not logged in) goes on to the incident page of web/incident_page.py."""

    def matches(self, scope_):
        match, child = super().matches(scope_)
        if match is not Match.NONE and not _has_session(scope_):
            return Match.NONE, {}
        return match, child


person = APIRouter(include_in_schema=False, route_class=SessionRoute)


@person.get("/incidents/{incident_id}")
def incident_for_person(incident_id: int, request: Request, token: str | None = None, ws=Depends(workspace)):
    """A logged-in person gets the console's screen of an incident in their domains. With a message link's token
    the link's own page is the fallback (a stale session, or an incident outside the person's domains: the
    signed link is the permission for that one incident); without one, a stale session logs in again."""
    from metricloop.web.incident_page import incident_page

    who = sessions.current(ws, request)
    if who is not None:
        try:
            return _incident_screen(request, ws, who, incident_id)
        except Refused:
            if not token:
                raise
    if token:
        return incident_page(incident_id, request, token=token, ws=ws)
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def install(app: FastAPI) -> None:
    """Add the console to the app: its routes (before the incident page's), its assets and its error pages."""
    from metricloop.web.console.assets import CompressedStatic

    app.mount("/assets", CompressedStatic(directory=STATIC), name="assets")
    from metricloop.web.console.ops import router as ops_router

    app.include_router(person)
    app.include_router(router)
    app.include_router(ops_router)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if request.method != "GET":
            return HTMLResponse("login required", status_code=401, headers=HEADERS)
        return RedirectResponse(f"/login?next={quote(exc.next_url, safe='/?=&')}", status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        ws = request.app.state.workspace
        return refused_page(request, ws, sessions.current(ws, request), exc.status, exc.message)
