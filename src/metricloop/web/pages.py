"""Rendering the web pages: the Jinja2 environment, the language a page speaks, its words, and safe responses."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from metricloop.notify.render import LANGUAGES, template_environment

TEMPLATES = Path(__file__).parent / "templates"

# Pages carry signed tokens in their URLs and show incident data: no caching, no referrer, no framing, no script.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}

WORDS = {
    "zh": {
        "incident": "工单",
        "severity": "严重程度",
        "state": "状态",
        "metric": "指标",
        "monitor": "监控",
        "slices": "涉及切片",
        "actual": "实际值",
        "expected": "预期值",
        "band": "告警界限",
        "deviation": "偏离",
        "why": "定为 {code} 的原因：",
        "owner": "负责人",
        "team": "团队",
        "unassigned": "未分配",
        "opened": "创建于",
        "total": "全部（合计）",
        "acknowledged_at": "认领于",
        "resolved_at": "解决于",
        "ack_due": "认领时限",
        "resolve_due": "解决时限",
        "missed": "已超时",
        "root_cause": "根因",
        "resolution": "处理说明",
        "timeline": "时间线",
        "times_in": "时间为 {zone}",
        "details": "详情",
        "acknowledge": "我来处理（认领）",
        "resolve": "标记为已解决",
        "resolve_form": "标记为已解决…",
        "root_cause_hint": "根因（可选），例如：SH-003 饮料缺货",
        "note_hint": "处理说明（可选）",
        "open_incident": "查看工单",
        "links_until": "本页的操作按钮有效期至 {until}",
        "read_only": "只读：从消息中的链接打开本页即可认领或解决。",
        "outdated": "只读：这个链接发出后工单已重新打开，旧链接不能再认领或解决；请使用最新消息中的链接。",
        "tagline": "指标预警闭环",
    },
    "en": {
        "incident": "Incident",
        "severity": "Severity",
        "state": "State",
        "metric": "Metric",
        "monitor": "Monitor",
        "slices": "Slices",
        "actual": "Actual",
        "expected": "Expected",
        "band": "Alert limits",
        "deviation": "Deviation",
        "why": "Why {code}: ",
        "owner": "Owner",
        "team": "Team",
        "unassigned": "unassigned",
        "opened": "Opened",
        "total": "all (the total)",
        "acknowledged_at": "Acknowledged",
        "resolved_at": "Resolved",
        "ack_due": "Acknowledge by",
        "resolve_due": "Resolve by",
        "missed": "missed",
        "root_cause": "Root cause",
        "resolution": "Resolution",
        "timeline": "Timeline",
        "times_in": "times in {zone}",
        "details": "Details",
        "acknowledge": "Acknowledge (I'm on it)",
        "resolve": "Resolve",
        "resolve_form": "Resolve…",
        "root_cause_hint": "Root cause (optional), e.g. stock-out of Drinks at SH-003",
        "note_hint": "What was done (optional)",
        "open_incident": "Open the incident",
        "links_until": "The buttons on this page work until {until}",
        "read_only": "Read only: open this page from the link in a message to acknowledge or resolve.",
        "outdated": "Read only: the incident was reopened after this link was sent, so its buttons no longer act; "
        "use the links of the newest message.",
        "tagline": "metric alerts, owned",
    },
}

EVENT_WORDS = {
    "zh": {
        "created": "创建",
        "assigned": "指派",
        "reassigned": "转派",
        "notified": "已通知",
        "notify_failed": "通知失败",
        "notify_retried": "重发通知",
        "escalated": "升级通知",
        "acknowledged": "认领",
        "commented": "评论",
        "absorbed": "仍在触发",
        "severity_raised": "严重程度升级",
        "sla_breached": "超出时限",
        "resolved": "解决",
        "auto_resolved": "自动恢复",
        "reopened": "重新打开",
        "reviewed": "复盘",
        "action_queued": "动作排队",
        "action_requested": "动作待审批",
        "action_approved": "动作已批准",
        "action_rejected": "动作被拒绝",
        "action_run": "动作已执行",
        "action_failed": "动作失败",
        "feedback": "反馈",
        "rca": "根因分析",
        "rca_failed": "根因分析失败",
    },
}

# Why a signed link was refused, in Chinese (signing.py speaks English); matched on the start of its message.
REFUSALS_ZH = {
    "the link has no token": "链接中没有令牌",
    "the link has expired": "链接已过期",
    "the link's signature is not valid": "链接的签名无效（被改动过，或由另一个密钥签发）",
    "the link's token is malformed": "链接中的令牌格式不正确",
    "this link belongs to another incident": "这个链接属于另一个工单",
    "the link is for": "这个链接不是用于这个操作的",
}


def refusal_zh(message: str) -> str:
    return next((zh for en, zh in REFUSALS_ZH.items() if message.startswith(en)), message)


def event_word(kind: str, lang: str) -> str:
    return EVENT_WORDS.get(lang, {}).get(kind) or kind.replace("_", " ")


def clock(t: datetime | None, tz: str) -> str:
    """A stored time on the workspace's clock, e.g. 2026-11-17 09:00 (the zone is said once per page)."""
    if t is None:
        return "—"
    if t.tzinfo is None:  # SQLite gives back naive UTC
        t = t.replace(tzinfo=UTC)
    return t.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def zone_name(tz: str, lang: str) -> str:
    return "北京时间" if lang == "zh" and tz == "Asia/Shanghai" else tz


def pick_language(request: Request, default: str) -> str:
    """`?lang=zh|en`, else the first language of Accept-Language we speak, else the workspace's language."""
    asked = request.query_params.get("lang", "")
    if asked in LANGUAGES:
        return asked
    ranked = []
    for n, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        try:
            q = float(params.strip().removeprefix("q=")) if params.strip().startswith("q=") else 1.0
        except ValueError:
            q = 0.0
        ranked.append((-q, n, tag.strip().lower().split("-")[0]))
    for _, _, lang in sorted(ranked):
        if lang in LANGUAGES:
            return lang
    return default if default in LANGUAGES else "zh"


@lru_cache(maxsize=1)
def environment() -> Environment:
    return template_environment(TEMPLATES, html=True)


def page(template: str, *, status: int = 200, **context) -> HTMLResponse:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def notice(
    lang: str | None,
    *,
    status: int,
    title: dict[str, str],
    lines: dict[str, list[str]],
    link: tuple[str, str] | None = None,
):
    """A short page: a title and a few lines, in `lang`, or in both languages when lang is None (a refused
    link: whoever opens it may read either). `link` is (url, text), e.g. back to the incident."""
    blocks = [{"lang": x, "title": title[x], "lines": lines[x]} for x in ([lang] if lang else ["zh", "en"])]
    target = {"url": link[0], "text": link[1]} if link else None
    return page("notice.html", status=status, lang=lang or "zh", blocks=blocks, link=target, words=WORDS[lang or "zh"])
