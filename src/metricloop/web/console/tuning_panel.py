"""The console monitor screen's tuning panel: the monitor's open suggestion (else its latest) with before and after,
the knob changes, the trade-off, and the alerts that would disappear or appear; buttons to compute one (operator),
apply it (admin: a new monitor version through `tuning.service.apply_suggestion`, as the API does) or reject it
(operator). A suggestion computed from a version someone has since edited says so with the diff, and applying it is
refused (409), never a 500. The screen gets the data through `tuning_panel(...)`; `console/_tuning.html` shows it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from metricloop.api.deps import workspace
from metricloop.db.times import aware
from metricloop.errors import MetricloopError, NotFound
from metricloop.feedback.flows import LABEL_WORDS
from metricloop.web.pages import clock

router = APIRouter(include_in_schema=False)

WORDS = {
    "zh": {
        "title": "调优建议",
        "explain": "用这个监控的历史数据和反馈（确认、误报、漏报）做回测，寻找更好的检测参数。"
        "应用后成为监控的新版本，可用 metricloop rollback 撤销。",
        "none": "还没有调优建议。",
        "status": {"open": "待审批", "applied": "已应用", "rejected": "已拒绝", "superseded": "已被取代",
                   "unchanged": "无需修改"},
        "by": "由 {who} 于 {at} 计算（基于版本 {v}，预算每序列每月 {budget:g} 条告警）",
        "decided": "{who} 于 {at} 决定",
        "applied_as": "已成为版本 {v}",
        "measure": "指标",
        "before": "现在",
        "after": "建议后",
        "alerts_per_month": "每月告警",
        "confirmed_kept": "保留的已确认告警",
        "false_alarms_removed": "去掉的误报",
        "missed_caught": "补上的漏报",
        "changes": "参数变化",
        "knob": "参数",
        "overrides": "单独设置的切片",
        "tradeoff": "取舍",
        "disappear": "将消失的告警",
        "appear": "将出现的告警",
        "slice": "切片",
        "from": "从",
        "to": "到",
        "label": "反馈",
        "stale": "监控在建议计算后被修改过（现在是版本 {v}，修改人 {who}）：不能应用这条建议，请重新计算。修改内容：",
        "budget": "告警预算（每序列每月）",
        "compute": "计算调优建议",
        "computing": "回测历史数据可能需要几十秒。",
        "apply": "应用（新版本）",
        "reject": "拒绝",
        "note": "说明（可选）",
        "admin_only": "应用建议需要 admin 角色。",
    },
    "en": {
        "title": "Tuning",
        "explain": "A backtest of this monitor's history with its feedback (confirmed, false alarm, missed) as labels, "
        "searching for better detector knobs. Applying makes a new monitor version; metricloop rollback undoes it.",
        "none": "No tuning suggestion yet.",
        "status": {"open": "waiting for approval", "applied": "applied", "rejected": "rejected",
                   "superseded": "superseded", "unchanged": "nothing to change"},
        "by": "computed by {who} at {at} (from version {v}, a budget of {budget:g} alerts per series per month)",
        "decided": "decided by {who} at {at}",
        "applied_as": "became version {v}",
        "measure": "Measure",
        "before": "Now",
        "after": "Suggested",
        "alerts_per_month": "Alerts per month",
        "confirmed_kept": "Confirmed alerts kept",
        "false_alarms_removed": "False alarms removed",
        "missed_caught": "Missed ranges caught",
        "changes": "Knob changes",
        "knob": "Knob",
        "overrides": "Slices with knobs of their own",
        "tradeoff": "Trade-off",
        "disappear": "Alerts that would disappear",
        "appear": "Alerts that would appear",
        "slice": "Slice",
        "from": "From",
        "to": "To",
        "label": "Feedback",
        "stale": "The monitor was edited after this suggestion was computed (now version {v}, by {who}): it cannot "
        "be applied; compute a new one. What changed:",
        "budget": "Alert budget (per series per month)",
        "compute": "Compute a suggestion",
        "computing": "Backtesting the history can take some tens of seconds.",
        "apply": "Apply (new version)",
        "reject": "Reject",
        "note": "Note (optional)",
        "admin_only": "Applying a suggestion needs the admin role.",
    },
}
ROWS = (  # (the summary key, its total key or None)
    ("alerts_per_month", None),
    ("confirmed_kept", "confirmed"),
    ("false_alarms_removed", "false_alarms"),
    ("missed_caught", "missed"),
)


def _moved(items: list[dict], i: int, grain: str) -> list[dict]:
    """The alerts that move, each with its feedback word; bucket times as the grain counts them (days: no clock)."""
    cut = 10 if grain in ("day", "week", "month") else 16

    def when(t: str) -> str:
        return t[:cut].replace("T", " ")

    return [{**a, "start": when(a["start"]), "end": when(a["end"]),
             "word": LABEL_WORDS[a["label"]][i] if a.get("label") in LABEL_WORDS else ""} for a in items]


def tuning_panel(db_session, ws, name: str, lang: str) -> dict:
    """What the panel shows for monitor `name`: its open suggestion, else its latest, and whether it is stale."""
    from metricloop.db.models import Definition
    from metricloop.definitions.service import spec_diff
    from metricloop.tuning.service import get_suggestion

    w, i, tz = WORDS[lang], 0 if lang == "zh" else 1, ws.config.get("timezone") or "Asia/Shanghai"
    out = {"words": w, "action": f"/console/monitors/{name}/tuning", "s": None}
    try:
        row = get_suggestion(db_session, name)
    except NotFound:
        return out
    t = row.summary or {}
    before, after = t.get("before", {}), t.get("after", {})
    table = []
    for key, total in ROWS:
        if key not in before:
            continue
        cells = [f"{d.get(key, 0):g}" + (f" / {d.get(total, 0)}" if total else "") for d in (before, after)]
        table.append({"key": key, "word": w[key], "before": cells[0], "after": cells[1]})
    stale = None
    if row.status == "open":
        current = db_session.scalar(select(Definition).where(Definition.kind == "monitor", Definition.name == name))
        if current is not None and current.version != row.base_version:
            stale = {
                "text": w["stale"].format(v=current.version, who=current.updated_by or "?"),
                "diff": spec_diff(row.base_spec, current.spec, f"monitor/{name}"),
            }
    tradeoff = t.get("tradeoff") or {}
    out["s"] = {
        "id": row.id,
        "status": row.status,
        "status_word": w["status"].get(row.status, row.status),
        "by": w["by"].format(who=row.created_by, at=clock(aware(row.created_at), tz), v=row.base_version,
                             budget=row.budget),
        "decided": w["decided"].format(who=row.decided_by, at=clock(aware(row.decided_at), tz))
        if row.decided_at else "",
        "applied_version": row.applied_version,
        "note": row.note,
        "table": table,
        "changes": t.get("changes", []),
        "overrides": t.get("overrides", []),
        "tradeoff": tradeoff.get(lang) or tradeoff.get("en", "") if isinstance(tradeoff, dict) else str(tradeoff),
        "notes": [n.get(lang) or n.get("en", "") for n in t.get("notes", [])],
        "disappear": _moved(t.get("disappear", []), i, t.get("grain", "")),
        "appear": _moved(t.get("appear", []), i, t.get("grain", "")),
        "stale": stale,
    }
    return out


@router.post("/console/monitors/{name}/tuning/{action}")
async def tuning_action(name: str, action: str, request: Request, ws=Depends(workspace)):
    from metricloop.tuning import service
    from metricloop.web.console.ops import _monitor_screen, _visible_monitor
    from metricloop.web.console.routes import Refused, _operator_form, need_login

    who = need_login(request, ws)
    lang, form = await _operator_form(request, ws, who, doing={"zh": "调优监控", "en": "tuning a monitor"})
    if action not in ("compute", "apply", "reject"):
        raise Refused(404, {"zh": f"没有操作 '{action}'", "en": f"No action '{action}'"}[lang])
    _visible_monitor(ws, who, name, lang)
    if action == "apply" and not who.can("admin"):
        raise Refused(403, {"zh": f"你的角色是 {who.role}：应用调优建议需要 admin。",
                            "en": f"Your role is {who.role}: applying a tuning suggestion needs admin."}[lang])
    try:
        picked = int(form["suggestion"]) if form.get("suggestion") else None
        if picked is not None and not 1 <= picked <= 2**31 - 1:  # as the API's bounds: no overflow in the database
            raise ValueError
    except ValueError:
        return _monitor_screen(request, ws, who, name, status=400, error=f"bad suggestion {form['suggestion']!r}")
    try:
        if action == "compute":
            budget = service.parse_budget(form.get("budget") or None, where="budget")
            await run_in_threadpool(lambda: service.suggest(ws, name, budget=budget, actor=who.name))
        elif action == "apply":
            await run_in_threadpool(service.apply_suggestion, ws, name, actor=who.name, suggestion_id=picked)
        else:
            await run_in_threadpool(lambda: service.reject_suggestion(
                ws, name, actor=who.name, suggestion_id=picked, note=form.get("note", "").strip()[:2000]))
    except MetricloopError as e:  # stale, no longer open, a bad budget, no data: said on the screen
        first = e.message.split("\n", 1)[0]
        return _monitor_screen(request, ws, who, name, status=e.status_code, error=first)
    return RedirectResponse(f"/console/monitors/{name}?done=tune_{action}#tuning", status_code=303)
