"""The sentence that names the likely cause, in zh and en, e.g.
"SH-003 GMV 比预期低 40%：主要在 category=Fresh；同期缺货率 35%（通常 2%），客流量正常"."""

from __future__ import annotations

import numpy as np

from metricloop.metrics.slices import parse_slice

MAX_ABNORMAL = 2


def _fmt(x, unit: str = "") -> str:
    if x is None or not np.isfinite(x):
        return "?"
    ax = abs(x)
    text = f"{x:,.0f}" if ax >= 100 else f"{x:,.1f}" if ax >= 10 else f"{x:,.2f}".rstrip("0").rstrip(".")
    if unit in ("%", "‰"):
        return text + unit
    return text


def _lower(title: str) -> str:
    """"Stock-out rate" in the middle of a sentence, but "GMV" stays."""
    return title[:1].lower() + title[1:] if title[1:2].islower() else title


def _subject(slices, report) -> tuple[dict[str, str], str]:
    fixed = parse_slice(slices[0]) if slices else {}  # the lead slice (the broadest); the total has no subject
    return fixed, " ".join(fixed.values())


def _focus_numbers(cube, fixed: dict[str, str]) -> tuple[float, float] | None:
    leaves = cube.leaves
    if any(k not in leaves for k in fixed):
        return None
    m = np.ones(len(leaves), dtype=bool)
    for k, v in fixed.items():
        m &= (leaves[k] == v).to_numpy()
    if not m.any():
        return None
    if cube.metric.is_ratio:
        s = cube.metric.ratio.scale
        ad, ed = leaves["actual_den"][m].sum(), leaves["expected_den"][m].sum()
        if not ad or not ed:
            return None
        return leaves["actual_num"][m].sum() / ad * s, leaves["expected_num"][m].sum() / ed * s
    return float(leaves["actual"][m].sum()), float(leaves["expected"][m].sum())


def explain(spec, report, *, slices=None, cube=None) -> tuple[str, str]:
    if not report.causes:
        return (f"{spec.label('zh')}在 {report.at:%Y-%m-%d %H:%M} 无显著偏差，不给出原因",
                f"{spec.label('en')} at {report.at:%Y-%m-%d %H:%M}: no significant deviation, no cause named")
    fixed, subject = _subject(slices, report)
    top = report.causes[0]
    numbers = _focus_numbers(cube, fixed) if (fixed and cube is not None) else None
    if numbers is None:
        numbers = (report.actual, report.expected)
    actual, expected = numbers
    unit = spec.unit
    if spec.is_ratio:
        head_zh = f"{subject} {spec.label('zh')} {_fmt(actual, unit)}（预期 {_fmt(expected, unit)}）".strip()
        head_en = f"{subject} {spec.label('en')} {_fmt(actual, unit)} (expected {_fmt(expected, unit)})".strip()
    else:
        pct = 100.0 * (actual - expected) / abs(expected) if expected else 0.0
        word_zh = "低" if pct < 0 else "高"
        word_en = "below" if pct < 0 else "above"
        head_zh = f"{subject} {spec.label('zh')} 比预期{word_zh} {abs(pct):.0f}%".strip()
        head_en = f"{subject} {spec.label('en')} {abs(pct):.0f}% {word_en} expected".strip()
    label = top["label"]
    whole = bool(fixed) and top["dimensions"] == fixed
    share = top.get("share")
    share_zh = f"，占偏差 {100 * share:.0f}%" if share is not None and not spec.is_ratio else ""
    share_en = f", {100 * share:.0f}% of the deviation" if share is not None and not spec.is_ratio else ""
    where_zh = "各部分普遍下降" if whole and (actual < expected) else "各部分普遍上升" if whole else \
        f"主要在 {label}{share_zh}"
    where_en = f"across all of {subject}" if whole else f"mostly {label}{share_en}"
    if top.get("effects"):
        rate, mix = top["effects"].get("rate", 0.0), top["effects"].get("mix", 0.0)
        if abs(rate) >= abs(mix):
            kind_zh, kind_en = "比率效应（该部分本身变差）", "a rate effect (it got worse itself)"
        else:
            kind_zh, kind_en = "结构效应（更多量流向该部分）", "a mix effect (more volume went to it)"
        where_zh += f"，{kind_zh}"
        where_en += f", {kind_en}"
    abnormal = [r for r in report.related if r.get("abnormal") and "error" not in r][:MAX_ABNORMAL]
    # the metric said to be normal: a declared related one on the slice, the closest to its expectation
    declared = list(getattr(spec, "related", []) or [])
    normal = sorted((r for r in report.related if not r.get("abnormal") and "error" not in r),
                    key=lambda r: (r["metric"] not in declared, r["slice"] == "*", abs(r.get("bands") or 0.0)))
    parts_zh, parts_en = [], []
    for r in abnormal:
        u = r.get("unit") or ""
        parts_zh.append(f"{r['title_zh']} {_fmt(r['actual'], u)}（通常 {_fmt(r['expected'], u)}）")
        parts_en.append(f"{_lower(r['title_en'])} {_fmt(r['actual'], u)} (usually {_fmt(r['expected'], u)})")
    tail_zh, tail_en = "", ""
    if parts_zh:
        tail_zh = "；同期" + "、".join(parts_zh)
        tail_en = "; at the same time " + ", ".join(parts_en)
    if normal:
        n = normal[0]
        tail_zh += f"{'，' if parts_zh else '；'}{n['title_zh']}正常"
        tail_en += f"{', ' if parts_en else '; '}{_lower(n['title_en'])} normal"
    return f"{head_zh}：{where_zh}{tail_zh}", f"{head_en}: {where_en}{tail_en}"
