"""What the console's incident page shows of an incident's root-cause analysis (console/_rca.html)."""

from __future__ import annotations

WORDS = {
    "zh": {"title": "根因分析", "causes": "维度下钻：解释偏差的组合", "cause": "组合", "actual": "实际",
           "expected": "预期", "deviation": "偏差", "share": "占偏差", "effect": "比率 / 结构效应",
           "related": "相关指标（同一切片、同一时间）", "metric": "指标", "slice": "切片", "usually": "通常",
           "abnormal": "异常", "none": "尚未分析", "failed": "根因分析失败", "nothing": "无显著偏差，未给出原因",
           "run": "第 {run} 次分析（{why}）", "opened": "工单创建时", "worse": "严重程度升级时"},
    "en": {"title": "Root cause", "causes": "Drill-down: the combinations that explain the deviation",
           "cause": "combination", "actual": "actual", "expected": "expected", "deviation": "deviation",
           "share": "share", "effect": "rate / mix effect", "related": "Related metrics (same slice, same time)",
           "metric": "metric", "slice": "slice", "usually": "usually", "abnormal": "abnormal",
           "none": "not analysed yet", "failed": "root-cause analysis failed",
           "nothing": "no significant deviation: no cause named", "run": "analysis {run} ({why})",
           "opened": "when the incident opened", "worse": "when it grew worse"},
}


def rca_panel(found: dict, lang: str) -> dict:
    """The incident's latest findings (rca.service.findings) with the words of `lang`."""
    words = WORDS.get(lang, WORDS["zh"])
    report = found.get("report") or {}
    why = words.get(report.get("why", ""), report.get("why", ""))
    return {
        "words": words,
        "status": found.get("status", "none"),
        "run_text": words["run"].format(run=found.get("run", 0), why=why) if found.get("run") else "",
        "explanation": report.get(f"explanation_{lang}") or report.get("explanation_en") or "",
        "error": report.get("error", ""),
        "causes": found.get("causes", []),
        "related": [r for r in found.get("related", []) if "error" not in r],
    }


def print_rca(console, found: dict) -> None:
    """The findings in `metricloop incidents show` (text): the likely cause and the top causes."""
    from rich.markup import escape

    report = found.get("report") or {}
    if found.get("status") == "failed":
        console.print(f"  root-cause analysis failed: {escape(report.get('error', ''))}")
        return
    if found.get("status") != "done":
        return
    for key in ("explanation_zh", "explanation_en"):
        if report.get(key):
            console.print(f"  likely cause: {escape(report[key])}")
    for c in found.get("causes", [])[:3]:
        pct = c.get("deviation_pct")
        console.print(f"    {c['rank']}. {escape(c['label'])}: {c['actual']:,.4g} vs {c['expected']:,.4g} expected"
                      + ("" if pct is None else f" ({pct:+.1f}%)"))
