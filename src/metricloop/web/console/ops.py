"""The console's operating screens: a monitor (its runs, a backtest preview, pause and resume), operations
(on call now and the rotations, a routes test, the outbox with retries of dead rows, every run) and the users
admin screen. The same rules as routes.py: every POST carries the session's CSRF token, a viewer's POST is
refused, anything outside the person's domains is a 404, and users are an admin's business only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select

from metricloop.api.deps import workspace
from metricloop.errors import MetricloopError
from metricloop.web.console.routes import (
    MAX_FIELD,
    Refused,
    _check_csrf,
    _operator_form,
    _partial,
    _scope,
    _too_long,
    _tz,
    form_of,
    language,
    need_login,
    render,
    script_json,
)
from metricloop.web.console.sessions import Who
from metricloop.web.console.words import WORDS
from metricloop.web.pages import clock

router = APIRouter(include_in_schema=False)
RUNS_PAGE = 50
OUTBOX_PAGE = 50


def _page_no(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1") or 1))
    except ValueError:
        return 1


def _run_row(r, ws) -> dict:
    return {
        "id": r.id,
        "monitor": r.monitor,
        "trigger": r.trigger,
        "status": r.status,
        "at": clock(r.started_at, _tz(ws)),
        "took": f"{(r.finished_at - r.started_at).total_seconds():.1f}s" if r.finished_at and r.started_at else "",
        "series": r.series_evaluated,
        "anomalies": r.anomalies,
        "alerts": r.alerts,
        "error": (r.error or "").splitlines()[0][:300] if r.error else "",
    }


# ------------------------------------------------------------------ a monitor


def _visible_monitor(ws, who: Who, name: str, lang: str):
    monitors = ws.catalog().all("monitor")
    allowed = _scope(ws, who)
    if name not in monitors or (allowed is not None and monitors[name].metric not in allowed):
        raise Refused(404, {"zh": f"没有监控 '{name}'", "en": f"No monitor '{name}'"}[lang])
    return monitors[name]


def _monitor_screen(request: Request, ws, who: Who, name: str, *, status: int = 200, error: str = ""):
    from metricloop.monitors import pauses
    from metricloop.monitors.models import MonitorRun
    from metricloop.web.console.tuning_panel import tuning_panel

    lang = language(request, ws)
    m = _visible_monitor(ws, who, name, lang)
    with ws.db.session() as s:
        runs = [
            _run_row(r, ws)
            for r in s.scalars(
                select(MonitorRun).where(MonitorRun.monitor == name).order_by(MonitorRun.id.desc()).limit(30)
            )
        ]
        record = [
            {"action": p.action, "actor": p.actor, "reason": p.reason, "at": clock(p.at, _tz(ws))}
            for p in pauses.history(s, name)
        ]
        paused = pauses.is_paused(s, name)
        tuning = tuning_panel(s, ws, name, lang)
    q = {"slice": request.query_params.get("slice", "")[:500]}
    return render(
        request,
        ws,
        who,
        "monitor.html",
        status=status,
        chart=True,
        mon={
            "name": m.name,
            "title": m.label(lang),
            "metric": m.metric,
            "enabled": m.enabled,
            "schedule": m.schedule.cron or f"every {m.schedule.every}",
            "description": m.description,
        },
        definition=yaml.safe_dump(m.normalized(), allow_unicode=True, sort_keys=False),
        runs=runs,
        record=record,
        paused=paused,
        tuning=tuning,
        preview_url=f"/console/monitors/{name}/preview?{urlencode({k: v for k, v in q.items() if v})}",
        can_act=who.can("operator"),
        csrf=who.csrf,
        error=error,
        done=request.query_params.get("done", ""),
        max_field=MAX_FIELD,
    )


@router.get("/console/monitors/{name}")
def monitor_page(name: str, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    return _monitor_screen(request, ws, who, name)


@router.get("/console/monitors/{name}/preview")
def monitor_preview_part(name: str, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    """The backtest preview, as a part of the monitor page (HTMX) or, without script, a page of its own."""
    from metricloop.web.console.preview import monitor_preview

    lang = language(request, ws)
    _visible_monitor(ws, who, name, lang)
    error = ""
    try:
        data = monitor_preview(ws, name, slice_key=request.query_params.get("slice", "")[:500] or None)
    except MetricloopError as e:  # the source is down, a calendar file is missing …: said, not a 500
        data, error = None, e.message
    ctx = {"name": name, "p": data, "chart_json": script_json(data) if data and data["times"] else "", "error": error}
    template = "_monitor_preview.html" if _partial(request) else "monitor_preview.html"
    return render(request, ws, who, template, chart=True, **ctx)


@router.post("/console/monitors/{name}/{action}")
async def monitor_pause(
    name: str, action: str, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)
):
    from metricloop.monitors import pauses

    lang, form = await _operator_form(request, ws, who, doing={"zh": "暂停或恢复监控", "en": "pausing a monitor"})
    if action not in ("pause", "resume"):
        raise Refused(404, {"zh": f"没有操作 '{action}'", "en": f"No action '{action}'"}[lang])
    _visible_monitor(ws, who, name, lang)
    try:
        with ws.db.session() as s:
            pauses.set_paused(s, monitor=name, paused=action == "pause", actor=who.name, reason=form.get("reason", ""))
    except pauses.AlreadyThere:
        text = {
            "pause": {"zh": f"监控 {name} 已经暂停了。", "en": f"Monitor {name} is already paused."},
            "resume": {"zh": f"监控 {name} 已在运行。", "en": f"Monitor {name} is already running."},
        }[action][lang]
        return _monitor_screen(request, ws, who, name, status=409, error=text)
    except MetricloopError as e:
        return _monitor_screen(request, ws, who, name, status=400, error=e.message)
    return RedirectResponse(f"/console/monitors/{name}?done={action}", status_code=303)


# ------------------------------------------------------------------ operations: on call, routes test


def _rotations(ws, lang: str) -> list[dict]:
    from metricloop.routing.service import on_call

    now = datetime.now(UTC)
    out = []
    for r in sorted(ws.catalog().all("rotation").values(), key=lambda r: r.name):
        period = timedelta(days=1 if r.period == "daily" else 7)
        local = now.astimezone(ZoneInfo(r.timezone)).replace(tzinfo=None)
        turns = max(0, int((local - r.start) // period)) if local >= r.start else 0
        handover = r.start + (turns + 1) * period if local >= r.start else r.start
        out.append(
            {
                "name": r.name,
                "now": on_call(r, now),
                "next": on_call(r, now + (handover - local) + timedelta(seconds=1)),
                "handover": handover.strftime("%Y-%m-%d %H:%M"),
                "members": r.members,
                "period": WORDS[lang]["daily"] if r.period == "daily" else WORDS[lang]["weekly"],
                "timezone": r.timezone,
                "overrides": [
                    {
                        "member": o.member,
                        "start": o.start.strftime("%Y-%m-%d %H:%M"),
                        "end": o.end.strftime("%Y-%m-%d %H:%M"),
                        "now": o.start <= local < o.end,
                    }
                    for o in r.overrides
                    if o.end > local
                ],
            }
        )
    return out


def _parse_labels(text: str, lang: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for n, raw in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise Refused(
                400,
                {
                    "zh": f"标签第 {n} 项 '{line}' 不是 名称=值（例如 metric=sales）。",
                    "en": f"Label {n}, '{line}', is not name=value (e.g. metric=sales).",
                }[lang],
            )
        labels[key.strip()] = value.strip()
    return labels


def _route_test(ws, who: Who, text: str, lang: str) -> dict | None:
    from metricloop.monitors.service import base_labels
    from metricloop.routing.service import resolve_route

    if not text.strip():
        return None
    _too_long(text, MAX_FIELD, WORDS[lang]["labels"], lang)
    labels = _parse_labels(text, lang)
    catalog = ws.catalog()
    allowed = _scope(ws, who)
    if allowed is not None and labels.get("metric") not in allowed:
        raise Refused(
            400,
            {"zh": "请给出你业务域内的 metric=指标名。", "en": "Give metric=NAME of a metric in your domains."}[lang],
        )
    # what a real alert would carry: the monitor's (or the metric's) labels under the ones given
    full = dict(labels)
    monitor = catalog.all("monitor").get(labels.get("monitor", ""))
    if monitor is not None and monitor.metric in catalog.metrics:
        full = base_labels(monitor, catalog.metric(monitor.metric), catalog) | labels
    elif labels.get("metric") in catalog.metrics:
        m = catalog.metric(labels["metric"])
        full = {"metric": m.name, "domain": m.domain, "tier": m.tier, "kind": "metric"} | labels
    owner = catalog.metric(full["metric"]).owner if full.get("metric") in catalog.metrics else ""
    d = resolve_route(ws, catalog, full, at=datetime.now(UTC), fallback=owner)
    channels = catalog.all("channel")
    return {
        "labels": full,
        "routes": d.routes,
        "assignee": d.assignee,
        "team": d.team,
        "channels": [{"name": c, "type": getattr(channels.get(c), "type", "?")} for c in d.channels],
        "escalation": d.escalation or "",
        "reasons": _route_reasons(catalog, d, owner, lang),
    }


def _route_reasons(catalog, d, owner: str, lang: str) -> list[str]:
    """Why the routes test decided as it did, in the person's language (the routing service says it in English)."""
    if lang == "en":
        return d.reasons
    routes = catalog.all("route")
    out = []
    for i, name in enumerate(d.routes):
        r = routes[name]
        matchers = ", ".join(r.matchers) or "全部"
        if i == 0:
            how = (
                f"负责人 {r.assignee}" if r.assignee
                else f"值班轮换 {r.rotation} 的当前值班人" if r.rotation
                else "按查找表确定负责人" if r.assignee_lookup
                else "路由未指定负责人"
            )  # fmt: skip
            out.append(f"路由 {name} 匹配（{matchers}）：{how}")
        else:
            out.append(f"路由 {name} 也匹配（continue）：加上渠道 {', '.join(r.channels)}")
    if not d.routes:
        out.append("没有匹配的路由：指派给指标负责人，不发送任何渠道。")
    elif any("falls back" in r for r in d.reasons):
        out.append(f"路由没有指定人：交给指标负责人 {owner or '（无）'}")
    return out


@router.get("/console/operations")
def operations_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    lang = language(request, ws)
    labels = request.query_params.get("labels", "")
    error, test = "", None
    try:
        test = _route_test(ws, who, labels, lang)
    except Refused as e:
        error = e.message
    routes = [
        {
            "name": r.name,
            "order": r.order,
            "matchers": r.matchers,
            "team": r.team,
            "channels": r.channels,
            "who": r.assignee
            or (f"rotation {r.rotation}" if r.rotation else "")
            or ("lookup" if r.assignee_lookup else ""),
            "continue": r.continue_,
        }
        for r in sorted(ws.catalog().all("route").values(), key=lambda r: (r.order, r.name))
    ]
    with ws.db.session() as s:
        counts = _counts(s, ws, who)
    return render(
        request,
        ws,
        who,
        "operations.html",
        status=400 if error else 200,
        rotations=_rotations(ws, lang),
        routes=routes,
        labels=labels[:MAX_FIELD],
        test=test,
        error=error,
        counts=counts,
    )


# ------------------------------------------------------------------ the outbox


def _outbox_query(ws, who: Who, status: str):
    from metricloop.incidents.models import Incident
    from metricloop.notify.models import Notification

    q = select(Notification)
    if status:
        q = q.where(Notification.status == status)
    allowed = _scope(ws, who)
    if allowed is not None:  # rows of incidents in their domains; rows of no incident are an admin's
        q = q.join(Incident, Incident.id == Notification.incident_id).where(
            Incident.metric.in_(sorted(allowed) or [""])
        )
    return q


@router.get("/console/outbox")
def outbox_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    return _outbox_screen(request, ws, who)


def _outbox_screen(request: Request, ws, who: Who, *, error: str = "", status_code: int = 200):
    from metricloop.notify.models import OUTBOX_STATES, Notification

    lang = language(request, ws)
    status = request.query_params.get("status", "")
    if status and status not in OUTBOX_STATES:
        error = {
            "zh": f"没有状态 '{status}'（可选：{', '.join(OUTBOX_STATES)}）",
            "en": f"No status '{status}' (known: {', '.join(OUTBOX_STATES)})",
        }[lang]
        status, status_code = "", 400
    page_no = _page_no(request)
    with ws.db.session() as s:
        base = _outbox_query(ws, who, status)
        rows = list(
            s.scalars(base.order_by(Notification.id.desc()).limit(OUTBOX_PAGE + 1).offset((page_no - 1) * OUTBOX_PAGE))
        )
        per = _counts(s, ws, who)
        items = [
            {
                "id": n.id,
                "incident_id": n.incident_id,
                "kind": n.kind,
                "event": n.event,
                "channel": n.channel,
                "recipient": n.recipient,
                "subject": n.subject,
                "status": n.status,
                "attempts": f"{n.attempts}/{n.max_attempts}",
                "error": (n.last_error or "")[:300],
                "at": clock(n.sent_at or n.created_at, _tz(ws)),
            }
            for n in rows[:OUTBOX_PAGE]
        ]

    def page_url(n: int) -> str:
        return "/console/outbox?" + urlencode({"status": status, "page": n} if status else {"page": n})

    return render(
        request,
        ws,
        who,
        "outbox.html",
        status=status_code,
        items=items,
        per=per,
        states=OUTBOX_STATES,
        current=status,
        error=error,
        done=request.query_params.get("done", ""),
        can_act=who.can("operator"),
        csrf=who.csrf,
        prev_url=page_url(page_no - 1) if page_no > 1 else "",
        next_url=page_url(page_no + 1) if len(rows) > OUTBOX_PAGE else "",
        page_no=page_no,
    )


def _counts(s, ws, who: Who) -> dict[str, int]:
    from metricloop.notify.models import OUTBOX_STATES, Notification

    q = _outbox_query(ws, who, "").with_only_columns(Notification.status, func.count()).group_by(Notification.status)
    return {st: 0 for st in OUTBOX_STATES} | dict(s.execute(q).all())


@router.post("/console/outbox/{notification_id}/retry")
async def outbox_retry(notification_id: int, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    from metricloop.notify import outbox
    from metricloop.notify.models import Notification

    lang, _ = await _operator_form(request, ws, who, doing={"zh": "重发通知", "en": "retrying a delivery"})
    with ws.db.session() as s:
        visible = s.scalar(_outbox_query(ws, who, "").where(Notification.id == notification_id))
        if visible is None:
            raise Refused(404, {"zh": f"没有通知 #{notification_id}", "en": f"No delivery #{notification_id}"}[lang])
    try:
        with ws.db.session() as s:
            outbox.retry(s, notification_id=notification_id, actor=who.name)
    except MetricloopError as e:
        return _outbox_screen(request, ws, who, error=e.message, status_code=409)
    return RedirectResponse("/console/outbox?done=retry", status_code=303)


# ------------------------------------------------------------------ runs


@router.get("/console/runs")
def runs_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    from metricloop.monitors.models import MonitorRun

    q = request.query_params
    f = {k: q.get(k, "").strip()[:200] for k in ("monitor", "status")}
    page_no = _page_no(request)
    allowed = _scope(ws, who)
    monitors = ws.catalog().all("monitor")
    visible = sorted(n for n, m in monitors.items() if allowed is None or m.metric in allowed)
    stmt = select(MonitorRun)
    if allowed is not None:
        stmt = stmt.where(MonitorRun.monitor.in_(visible or [""]))
    if f["monitor"]:
        stmt = stmt.where(MonitorRun.monitor == f["monitor"])
    if f["status"]:
        stmt = stmt.where(MonitorRun.status == f["status"])
    with ws.db.session() as s:
        rows = list(
            s.scalars(stmt.order_by(MonitorRun.id.desc()).limit(RUNS_PAGE + 1).offset((page_no - 1) * RUNS_PAGE))
        )
        items = [_run_row(r, ws) for r in rows[:RUNS_PAGE]]

    def page_url(n: int) -> str:
        return "/console/runs?" + urlencode({k: v for k, v in f.items() if v} | {"page": n})

    return render(
        request,
        ws,
        who,
        "runs.html",
        items=items,
        f=f,
        monitor_names=visible,
        statuses=("ok", "failed", "skipped", "running"),
        prev_url=page_url(page_no - 1) if page_no > 1 else "",
        next_url=page_url(page_no + 1) if len(rows) > RUNS_PAGE else "",
        page_no=page_no,
    )


# ------------------------------------------------------------------ users (admin only)


SELF_CHANGE = {
    "zh": "不能修改自己的角色或停用自己：请另一位管理员操作。",
    "en": "You cannot change your own role or disable yourself: ask another admin.",
}


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _need_admin(request: Request, ws, who: Who) -> str:
    lang = language(request, ws)
    if who.role != "admin":
        raise Refused(
            403,
            {
                "zh": f"你的角色是 {who.role}：管理用户需要 admin。",
                "en": f"Your role is {who.role}: managing users needs admin.",
            }[lang],
        )
    return lang


def _users_screen(request: Request, ws, who: Who, *, status: int = 200, error: str = "", form=None):
    from metricloop.auth.service import ROLES
    from metricloop.auth.users import list_users

    _need_admin(request, ws, who)
    with ws.db.session() as s:
        items = [
            {
                "id": u.id,
                "name": u.name,
                "display_name": u.display_name,
                "email": u.email,
                "role": u.role,
                "domains": ", ".join(u.domains or []),
                "disabled": u.disabled_at is not None,
                "locked": bool(u.locked_until and _aware(u.locked_until) > datetime.now(UTC)),
                "me": u.id == who.user_id,
            }
            for u in list_users(s)
        ]
    domains = sorted({m.domain for m in ws.catalog().metrics.values()})
    return render(
        request,
        ws,
        who,
        "users.html",
        status=status,
        items=items,
        roles=ROLES,
        known_domains=domains,
        error=error,
        done=request.query_params.get("done", ""),
        csrf=who.csrf,
        form=form or {"name": "", "display_name": "", "email": "", "role": "viewer", "domains": ""},
    )


@router.get("/console/users")
def users_page(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    return _users_screen(request, ws, who)


async def _admin_form(request: Request, ws, who: Who) -> tuple[str, dict]:
    form = await form_of(request)
    _check_csrf(request, ws, who, form)
    return _need_admin(request, ws, who), form


def _user_error(e: MetricloopError) -> str:
    return e.message + (f" ({e.where})" if e.where else "")


@router.post("/console/users")
async def user_add(request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    from metricloop.auth.users import add_user

    lang, form = await _admin_form(request, ws, who)
    kept = {k: form.get(k, "")[:MAX_FIELD] for k in ("name", "display_name", "email", "role", "domains")}
    try:
        with ws.db.session() as s:
            add_user(
                s,
                name=kept["name"],
                password=form.get("password", ""),
                role=kept["role"] or "viewer",
                domains=kept["domains"],
                display_name=kept["display_name"],
                email=kept["email"],
            )
    except MetricloopError as e:
        return _users_screen(request, ws, who, status=400, error=_user_error(e), form=kept)
    return RedirectResponse("/console/users?done=add", status_code=303)


@router.post("/console/users/{user_id}/{what}")
async def user_change(user_id: int, what: str, request: Request, ws=Depends(workspace), who: Who = Depends(need_login)):
    from metricloop.auth import users
    from metricloop.auth.models import User

    lang, form = await _admin_form(request, ws, who)
    if what not in ("role", "domains", "password", "disable"):
        raise Refused(404, {"zh": f"没有操作 '{what}'", "en": f"No action '{what}'"}[lang])
    try:
        with ws.db.session() as s:
            row = s.get(User, user_id)
            if row is None:
                raise Refused(404, {"zh": f"没有用户 #{user_id}", "en": f"No user #{user_id}"}[lang])
            if row.id == who.user_id and what in ("role", "disable"):
                # nobody changes their own role (no raising it, and no admin locking the workspace out by mistake)
                raise MetricloopError(SELF_CHANGE[lang], where="role")
            me = s.get(User, who.user_id)
            if what == "role":
                users.set_role(s, name=row.name, role=form.get("role", ""), by=me)
            elif what == "domains":
                users.set_domains(s, name=row.name, domains=form.get("domains", "")[:MAX_FIELD])
            elif what == "password":
                users.reset_password(s, name=row.name, password=form.get("password", ""))
            else:
                users.disable(s, name=row.name)
    except Refused:
        raise
    except MetricloopError as e:
        return _users_screen(request, ws, who, status=403 if e.status_code == 403 else 400, error=_user_error(e))
    return RedirectResponse(f"/console/users?done={what}", status_code=303)
