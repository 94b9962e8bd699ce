"""The weekly review as text (CLI, the digest sent to channels), JSON and HTML, in Chinese and English."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from metricloop.review.report import WeeklyReport

WORDS = {
    "zh": {
        "title": "周报",
        "title_long": "周报 / 复盘",
        "nav": "周报",
        "week": "周",
        "team": "团队",
        "domain": "业务域",
        "all": "全部",
        "in_progress": "本周尚未结束：数字截至 {at}。",
        "incidents": "工单",
        "opened": "新开",
        "resolved": "已解决",
        "open_at_end": "周末仍未关闭",
        "acknowledged": "已认领",
        "sla": "时效（SLA）",
        "mtta": "平均认领时长 MTTA",
        "mttr": "平均解决时长 MTTR",
        "target": "目标",
        "in_sla": "达标",
        "breaches": "超时",
        "breaches_head": "超时明细",
        "incidents_n": "工单",
        "no_labels": "本周没有标注。",
        "last_week": "上周",
        "ack_breach": "认领超时",
        "resolve_breach": "解决超时",
        "severity": "严重程度",
        "due": "时限",
        "late": "超出",
        "still_waiting": "仍在等待",
        "assignee": "负责人",
        "no_breaches": "本周没有超时。",
        "feedback": "误报率",
        "false_alarm_rate": "误报率",
        "precision": "准确率",
        "labelled_share": "已标注告警占比",
        "labels": "标注",
        "label_names": {
            "confirmed": "确认",
            "false_alarm": "误报",
            "expected": "符合预期",
            "new_normal": "新常态",
            "missed": "漏报",
        },
        "trend": "近几周趋势",
        "alerts": "告警",
        "labelled": "已标注",
        "false_alarms": "误报",
        "causes": "主要根因",
        "causes_from_text": "按解决时填写的根因文字归类（知识库的根因分类尚不可用）。",
        "recent": "近 4 周",
        "this_week": "本周",
        "no_causes": "本周没有写明根因的已解决工单。",
        "without_cause": "{n} 个已解决工单没有写根因。",
        "tuning": "待处理的调优建议",
        "no_tuning": "没有待处理的调优建议。",
        "monitors": "最需关注的监控",
        "monitor": "监控",
        "no_monitors": "本周没有告警或工单。",
        "not_available": "暂不可用：{what} 尚未安装。",
        "feedback_part": "反馈标注（feedback）",
        "tuning_part": "调优（tuning）",
        "none": "无",
        "no_incidents": "本周没有工单。",
        "link": "完整周报",
        "times_in": "时间为 {zone}",
        "digest_line": "新开 {opened} · 解决 {resolved} · 未关闭 {open_at_end} · MTTA {mtta} · MTTR {mttr} · "
        "超时 {breaches}",
    },
    "en": {
        "title": "Weekly review",
        "title_long": "Weekly review",
        "nav": "Weekly review",
        "week": "Week",
        "team": "Team",
        "domain": "Domain",
        "all": "all",
        "in_progress": "This week is not over: figures up to {at}.",
        "incidents": "Incidents",
        "opened": "opened",
        "resolved": "resolved",
        "open_at_end": "open at the end",
        "acknowledged": "acknowledged",
        "sla": "SLA",
        "mtta": "MTTA",
        "mttr": "MTTR",
        "target": "target",
        "in_sla": "within SLA",
        "breaches": "breaches",
        "breaches_head": "Breaches",
        "incidents_n": "incidents",
        "no_labels": "no labels this week.",
        "last_week": "last week",
        "ack_breach": "ack breach",
        "resolve_breach": "resolve breach",
        "severity": "Severity",
        "due": "due",
        "late": "late by",
        "still_waiting": "still waiting",
        "assignee": "Assignee",
        "no_breaches": "No SLA breach this week.",
        "feedback": "False alarms",
        "false_alarm_rate": "false-alarm rate",
        "precision": "precision",
        "labelled_share": "alerts labelled",
        "labels": "labels",
        "label_names": {
            "confirmed": "confirmed",
            "false_alarm": "false alarm",
            "expected": "expected",
            "new_normal": "new normal",
            "missed": "missed",
        },
        "trend": "Trend over the last weeks",
        "alerts": "alerts",
        "labelled": "labelled",
        "false_alarms": "false alarms",
        "causes": "Top root causes",
        "causes_from_text": "Grouped by the root-cause text written at resolution (the knowledge base's categories "
        "are not available yet).",
        "recent": "last 4 weeks",
        "this_week": "this week",
        "no_causes": "No incident resolved this week with a root cause written.",
        "without_cause": "{n} resolved incident(s) without a root cause written.",
        "tuning": "Open tuning suggestions",
        "no_tuning": "No tuning suggestion waiting.",
        "monitors": "Monitors to look at",
        "monitor": "Monitor",
        "no_monitors": "No alert or incident this week.",
        "not_available": "Not available yet: {what} is not installed.",
        "feedback_part": "feedback labels (feedback)",
        "tuning_part": "tuning",
        "none": "none",
        "no_incidents": "No incident this week.",
        "link": "Full report",
        "times_in": "times in {zone}",
        "digest_line": "opened {opened} · resolved {resolved} · open {open_at_end} · MTTA {mtta} · MTTR {mttr} · "
        "breaches {breaches}",
    },
}


def duration(seconds: float | None, lang: str) -> str:
    if seconds is None:
        return "—"
    minutes = int(round(seconds / 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    units = ("天", "小时", "分钟") if lang == "zh" else ("d", "h", "m")
    parts = [f"{v}{u}" for v, u in zip((days, hours, mins), units, strict=True) if v]
    return (" " if lang == "en" else "").join(parts) or ("0分钟" if lang == "zh" else "0m")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def scope_text(report: WeeklyReport, lang: str) -> str:
    w = WORDS[lang]
    parts = []
    if report.team:
        parts.append(f"{w['team']} {report.team}")
    if report.domain:
        parts.append(f"{w['domain']} {report.domain}")
    return " · ".join(parts) or w["all"]


def report_url(base_url: str, report: WeeklyReport, lang: str) -> str:
    query = {k: v for k, v in (("team", report.team), ("domain", report.domain)) if v}
    return f"{base_url.rstrip('/')}/reports/weekly?" + urlencode(query | {"week": report.week, "lang": lang})


def heading(report: WeeklyReport, lang: str) -> str:
    w = WORDS[lang]
    return f"{w['title_long']} {report.week} ({report.first_day} – {report.last_day}) · {scope_text(report, lang)}"


def summary_line(report: WeeklyReport, lang: str) -> str:
    return WORDS[lang]["digest_line"].format(
        opened=report.opened,
        resolved=report.resolved,
        open_at_end=report.open_at_end,
        mtta=duration(report.mtta_seconds, lang),
        mttr=duration(report.mttr_seconds, lang),
        breaches=report.ack_breaches + report.resolve_breaches,
    )


PUNCT = {
    "zh": {"sep": "：", "comma": "，", "semi": "；", "open": "（", "close": "）"},
    "en": {"sep": ": ", "comma": ", ", "semi": "; ", "open": " (", "close": ")"},
}


def _severity_line(r, lang: str) -> str:
    w, p = WORDS[lang], PUNCT[lang]
    parts = [f"{w['opened']} {r.opened}{p['comma']}{w['resolved']} {r.resolved}"]
    if r.acknowledged:
        parts.append(
            f"{w['mtta']} {duration(r.mtta_seconds, lang)}{p['open']}{w['target']} {duration(r.ack_sla_seconds, lang)}"
            f"{p['comma']}{w['in_sla']} {r.acked_in_sla}/{r.acknowledged}{p['close']}"
        )
    if r.resolved:
        parts.append(
            f"{w['mttr']} {duration(r.mttr_seconds, lang)}{p['open']}{w['target']} "
            f"{duration(r.resolve_sla_seconds, lang)}{p['comma']}{w['in_sla']} {r.resolved_in_sla}/{r.resolved}"
            f"{p['close']}"
        )
    breaches = r.ack_breaches + r.resolve_breaches
    if breaches:
        parts.append(f"{w['breaches']} {breaches}")
    return f"  {r.severity}{p['sep']}" + p["semi"].join(parts)


def text(report: WeeklyReport, lang: str, *, url: str = "", brief: bool = False) -> str:
    """Plain text: the CLI's output, and (brief) the digest sent to channels."""
    w, p = WORDS[lang], PUNCT[lang]
    sep, head = p["sep"], p["sep"].strip()
    out = [heading(report, lang)]
    if report.in_progress:
        out.append(w["in_progress"].format(at=report.generated_at[:16].replace("T", " ") + " UTC"))
    out += ["", f"{w['incidents']}{sep}{summary_line(report, lang)}"]
    for r in report.by_severity:
        if r.opened or r.resolved or r.acknowledged or r.ack_breaches or r.resolve_breaches:
            out.append(_severity_line(r, lang))
    if report.breaches and not brief:
        out.append(f"{w['breaches_head']}{head}")
        for b in report.breaches:
            late = w["still_waiting"] if b.late_seconds is None else f"{w['late']} {duration(b.late_seconds, lang)}"
            kind = w["ack_breach"] if b.sla == "ack" else w["resolve_breach"]
            out.append(
                f"  #{b.incident_id} {b.severity} {kind}{sep}{b.title}{p['open']}{late}{p['semi']}"
                f"{b.assignee or '—'}{p['close']}"
            )
    out += ["", f"{w['feedback']}{sep}" + feedback_line(report, lang)]
    if report.feedback_available and not brief:
        trend = p["comma"].join(f"{t.week[-3:]} {percent(t.false_alarm_rate)}" for t in report.trend)
        out.append(f"  {w['trend']}{sep}{trend}")
    out += ["", f"{w['causes']}{head}"]
    if report.causes_from != "knowledge" and not brief:
        out.append(f"  {p['open'].strip()}{w['causes_from_text']}{p['close']}")
    for c in report.causes if not brief else report.causes[:3]:
        name = c.zh if lang == "zh" else c.en
        out.append(f"  {name}{sep}{c.this_week}{p['open']}{w['recent']} {c.recent}{p['close']}")
    if not report.causes:
        out.append(f"  {w['no_causes']}")
    if report.resolved_without_cause and not brief:
        out.append("  " + w["without_cause"].format(n=report.resolved_without_cause))
    out += ["", f"{w['tuning']}{sep}" + tuning_line(report, lang)]
    for t in (report.tuning or [])[: 3 if brief else None]:
        out.append(f"  {t['monitor']}{sep}{t['summary_zh'] if lang == 'zh' else t['summary_en']}")
    out += ["", f"{w['monitors']}{head}"]
    for m in report.monitors[: 3 if brief else None]:
        out.append("  " + monitor_line(m, lang))
    if not report.monitors:
        out.append(f"  {w['no_monitors']}")
    if url:
        out += ["", f"{w['link']}{sep}{url}"]
    return "\n".join(out) + "\n"


def feedback_line(report: WeeklyReport, lang: str) -> str:
    w, p = WORDS[lang], PUNCT[lang]
    if not report.feedback_available:
        return w["not_available"].format(what=w["feedback_part"])
    counts = report.labels or {}
    if not any(counts.values()):
        return w["no_labels"]
    names = w["label_names"]
    labels = p["comma"].join(f"{names[k]} {v}" for k, v in counts.items() if v)
    before = report.trend[-2].false_alarm_rate if len(report.trend) > 1 else None
    was = "" if before is None else f"{p['open']}{w['last_week']} {percent(before)}{p['close']}"
    return (
        f"{w['false_alarm_rate']} {percent(report.false_alarm_rate)}{was}{p['comma']}{w['precision']} "
        f"{percent(report.precision)}{p['comma']}{w['labelled_share']} {percent(report.labelled_share)}"
        f"{p['open']}{w['labels']}{p['sep']}{labels}{p['close']}"
    )


def tuning_line(report: WeeklyReport, lang: str) -> str:
    w = WORDS[lang]
    if not report.tuning_available:
        return w["not_available"].format(what=w["tuning_part"])
    return str(len(report.tuning or [])) if report.tuning else w["no_tuning"]


def monitor_line(m, lang: str) -> str:
    w, p = WORDS[lang], PUNCT[lang]
    parts = [f"{w['alerts']} {m.alerts}", f"{w['incidents_n']} {m.incidents}", f"{w['breaches']} {m.breaches}"]
    if m.labelled:
        parts.append(f"{w['precision']} {percent(m.precision)}{p['open']}{m.labelled} {w['labelled']}{p['close']}")
    return f"{m.monitor}{p['sep']}" + p["comma"].join(parts)


def digest(report: WeeklyReport, lang: str, *, url: str) -> tuple[str, str, dict]:
    """Subject, plain-text body and webhook payload of the message sent to channels."""
    subject = f"[metricloop] {heading(report, lang)}"
    body = text(report, lang, url=url, brief=True)
    payload = {"kind": "weekly_report", "version": 1, "language": lang, "url": url, "report": report.to_dict()}
    return subject, body, payload


def as_json(report: WeeklyReport) -> str:
    return json.dumps(report.to_dict(), ensure_ascii=False, indent=2)


def html_context(report: WeeklyReport, lang: str) -> dict:
    from datetime import datetime

    from metricloop.web.pages import clock, zone_name

    return {
        "local": lambda iso: clock(datetime.fromisoformat(iso), report.timezone),
        "zone_of_report": zone_name(report.timezone, lang),
        "r": report,
        "rw": WORDS[lang],
        "duration": lambda s: duration(s, lang),
        "percent": percent,
        "feedback_line": feedback_line(report, lang),
        "tuning_line": tuning_line(report, lang),
        "heading": heading(report, lang),
    }


STANDALONE_CSS = Path(__file__).parent.parent / "web" / "static" / "console.css"


def standalone_html(report: WeeklyReport, lang: str) -> str:
    """The page as one file (CLI `--format html`): the console's stylesheet inlined, no script."""
    from metricloop.web.pages import environment

    return (
        environment()
        .get_template("console/weekly_standalone.html")
        .render(lang=lang, css=STANDALONE_CSS.read_text(encoding="utf-8"), **html_context(report, lang))
    )
