"""Every flagged point explains itself: numbers a person can read, in Chinese and English."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from metricloop.detect.stats import HISTORY_DAYS

PERCENT_UNITS = {"%", "percent", "pct"}
PERMILLE_UNITS = {"‰", "permille"}


def _sig(x: float, digits: int = 3) -> str:
    """`digits` significant digits, no trailing zeros: 1.21, 17.6, 176, 1210."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_number(x: float, lang: str = "en", unit: str = "") -> str:
    """1,210,000 → '121万' (zh) / '1.21M' (en); 97.53 with unit '%' → '97.5%'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—" if lang == "zh" else "n/a"
    x = float(x)
    if unit in PERCENT_UNITS:
        return f"{_sig(x, 3)}%"
    if unit in PERMILLE_UNITS:
        return f"{_sig(x, 3)}‰"
    sign = "-" if x < 0 else ""
    a = abs(x)
    if lang == "zh":
        if a >= 1e8:
            body = _sig(a / 1e8) + "亿"
        elif a >= 1e4:
            body = _sig(a / 1e4) + "万"
        else:
            body = _sig(a) if a >= 1 else _sig(a, 2)
    else:
        for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
            if a >= size:
                body = _sig(a / size) + suffix
                break
        else:
            body = _sig(a) if a >= 1 else _sig(a, 2)
    return sign + body


def _pct(p: float) -> str:
    a = abs(p) * 100
    return f"{a:.0f}%" if a >= 10 else f"{_sig(a, 2)}%"


def _span_en(days: int) -> str:
    return f"{days // 7} weeks" if days % 7 == 0 and days >= 14 else f"{days} days"


def _span_zh(days: int) -> str:
    return f"{days // 7} 周" if days % 7 == 0 and days >= 14 else f"{days} 天"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def sentence(
    *,
    lang: str,
    title: str,
    slice_label: str,
    actual: float,
    expected: float,
    lower: float,
    upper: float,
    unit: str = "",
    run: int = 0,
    grain: str | None = None,
    by_run: bool | None = None,
    calendar_days: int = 0,
    history_days: int = 0,
) -> str:
    """One readable sentence, e.g. '华东区 GMV 121万，比预期 176万 低 31%（正常区间 158万–193万）'.

    `run` ≥ 2: the point was flagged by the sustained test as the last of that many points off on
    the same side; when it lies inside the range on its own, the sentence says why it still alerts.
    `calendar_days` > 0: the point was judged by the holiday pattern the series' own past showed, on
    that many past days off (or make-up workdays). `history_days` > 0: the point was judged against the
    series' own level over that many past days (the long view of a sub-hourly series), not the forecast."""
    f = lambda v: format_number(v, lang, unit)  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = (actual - expected) / abs(expected) if expected not in (0, None) else float("nan")
    is_rate = unit in PERCENT_UNITS | PERMILLE_UNITS
    points = actual - expected
    # flagged for the run, not for this point alone (`by_run` when the range quoted is not the alert limit)
    within = by_run if by_run is not None else (run >= 2 and lower <= actual <= upper)
    if lang == "zh":
        who = f"{slice_label} {title}" if slice_label else title
        word = "高" if actual >= expected else "低"
        if is_rate:
            pp = "个百分点" if unit in PERCENT_UNITS else "个千分点"
            diff = f"{word} {_sig(abs(points), 2)} {pp}"
        elif math.isfinite(pct):
            diff = f"{word} {_pct(pct)}"
        else:
            diff = f"{word} {format_number(abs(points), lang, unit)}"
        band = f"（正常区间 {f(lower)}–{f(upper)}）" if math.isfinite(lower) or math.isfinite(upper) else ""
        if within:
            step = {"day": "天", "hour": "小时"}.get(grain or "", "个点")
            band += f"，连续第 {run} {step}{word}于预期，累计已超出正常波动"
        if calendar_days > 0:
            band += f"；按节假日模式（从过去 {calendar_days} 个假日学得）"
        if history_days > 0:
            band += f"；对照自身过去 {_span_zh(history_days)}的水平"
        return f"{who} {f(actual)}，比预期 {f(expected)} {diff}{band}"
    who = f"{title} for {slice_label}" if slice_label else title
    word = "above" if actual >= expected else "below"
    if is_rate:
        diff = f"{_sig(abs(points), 2)} {'points' if unit in PERCENT_UNITS else 'per-mille points'} {word}"
    elif math.isfinite(pct):
        diff = f"{_pct(pct)} {word}"
    else:
        diff = f"{format_number(abs(points), lang, unit)} {word}"
    band = f" (normal range {f(lower)}–{f(upper)})" if math.isfinite(lower) or math.isfinite(upper) else ""
    if within:
        step = {"day": "day", "hour": "hour"}.get(grain or "", "point")
        band += (f"; the {_ordinal(run)} {step} in a row {word} expected, together beyond normal variation")
    if calendar_days > 0:
        band += f"; holiday pattern, learned from {calendar_days} past holiday{'s' if calendar_days != 1 else ''}"
    if history_days > 0:
        band += f"; judged against its own level over the past {_span_en(history_days)}"
    return f"{who} was {f(actual)}, {diff} the expected {f(expected)}{band}"


USUAL_K = 2.0  # the "normal range" a sentence quotes: where 95 % of ordinary points fall


def usual_range(det: Any, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ±USUAL_K sd range (the same tail for counts and sums of lumps) at the given points; a
    fixed-band detector's range is its band."""
    from metricloop.detect.base import COUNT, GAUSS
    from metricloop.detect.stats import clamp, count_interval

    scores = det.scores
    fam = np.asarray(scores.family)[rows]
    e = scores.expected[rows, cols]
    sc = scores.scale[rows, cols]
    lo = det.lower[rows, cols].astype(float).copy()
    hi = det.upper[rows, cols].astype(float).copy()
    g = fam == GAUSS
    lo[g], hi[g] = e[g] - USUAL_K * sc[g], e[g] + USUAL_K * sc[g]
    c = fam == COUNT
    if c.any():
        u = np.ones(c.sum()) if scores.unit is None else np.asarray(scores.unit)[rows[c], cols[c]]
        lo_c, hi_c = count_interval(e[c] / u, sc[c] / (u * u), USUAL_K)
        lo[c], hi[c] = lo_c * u, hi_c * u
    return clamp(lo, hi, None if scores.floor is None else np.asarray(scores.floor)[rows],
                 None if scores.ceiling is None else np.asarray(scores.ceiling)[rows])


def anomalies_frame(
    det: Any,
    *,
    explain: bool = True,
    metric: str = "",
    title_zh: str | None = None,
    title_en: str | None = None,
    unit: str = "",
    slice_labels_zh: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per flagged point of a `Detection`: actual, expected, band, deviation, who fired, why."""
    rows_i, cols_t = np.nonzero(det.is_anomaly)
    scores = det.scores
    usual_lo, usual_hi = usual_range(det, rows_i, cols_t)
    names = scores.names or [str(i) for i in range(det.is_anomaly.shape[0])]
    times = scores.times
    dev_b = det.deviation_bands()
    dev_p = det.deviation_pct()
    records = []
    for i, t in zip(rows_i.tolist(), cols_t.tolist(), strict=True):
        name = names[i]
        slice_label = "" if name in ("*", "") else name
        rec = {
            "metric": metric,
            "slice": name,
            "time": times[t] if times is not None else t,
            "actual": float(det.values[i, t]),
            "expected": float(det.expected[i, t]),
            "lower": float(det.lower[i, t]),
            "upper": float(det.upper[i, t]),
            "score": float(scores.score[i, t]),
            "direction": "up" if det.direction[i, t] > 0 else "down",
            "deviation_bands": float(dev_b[i, t]),
            "deviation_pct": float(dev_p[i, t]),
            "detector": scores.model[i] if scores.model else scores.detector,
        }
        if explain:
            run = int(det.sustained[i, t]) if det.sustained is not None else 0
            # the sentence gives the usual range (±2 sd), not the alert limits (±k sd): "normal range
            # 1.77K–8.76K" around 5.27K reads as "anything goes", however honest k = 5 is
            pos = len(records)  # this point's place in rows_i / cols_t
            common = dict(actual=rec["actual"], expected=rec["expected"], lower=float(usual_lo[pos]),
                          upper=float(usual_hi[pos]), unit=unit, run=run, grain=scores.grain,
                          by_run=run >= 2 and rec["lower"] <= rec["actual"] <= rec["upper"],
                          calendar_days=int(scores.calendar[i, t]) if scores.calendar is not None else 0,
                          history_days=HISTORY_DAYS if scores.history is not None and scores.history[i, t] else 0)
            zh_label = (slice_labels_zh or {}).get(name, slice_label)
            rec["explanation_zh"] = sentence(lang="zh", title=title_zh or metric, slice_label=zh_label, **common)
            rec["explanation_en"] = sentence(lang="en", title=title_en or metric, slice_label=slice_label, **common)
        records.append(rec)
    columns = ["metric", "slice", "time", "actual", "expected", "lower", "upper", "score", "direction",
               "deviation_bands", "deviation_pct", "detector"]
    if explain:
        columns += ["explanation_zh", "explanation_en"]
    return pd.DataFrame.from_records(records, columns=columns)
