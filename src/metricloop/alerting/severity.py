"""How severe an alert is: how unusual the value is for a metric of its tier, and how much of the business it hurts.

- the deviation |actual − expected| / |expected| gives a level by the metric's tier (`DEVIATION`);
- the stake |actual − expected| of an additive metric (a sum or a count) as a share of the metric's whole in the
  same bucket gives a level by tier too (`SHARE`): a slice that loses a large part of the business is raised;
- a stake under `SMALL_SHARE` of the whole makes the deviation's level one milder: a big % on a tiny slice;
- the monitor's `impact` thresholds (in the metric's unit) raise by the amount itself;
- the monitor's severity rules, when one matches, decide instead.

Every decision says why, in Chinese and English, so a person reads "P1: 400 CNY at stake, 11% of the total"
(zh: "P1：涉及 400 CNY，占总量 11%").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from metricloop.alerting.matchers import matches_all, parse_matchers
from metricloop.definitions.schemas import MetricSpec
from metricloop.detect.explain import PERCENT_UNITS, PERMILLE_UNITS, format_number
from metricloop.metrics.slices import parse_slice
from metricloop.monitors.schemas import MonitorSpec

RANK = {"P1": 1, "P2": 2, "P3": 3}
LEVELS = ("P1", "P2", "P3")
# (P1 from, P2 from) by tier; None: never by default
DEVIATION = {"core": (0.25, 0.10), "important": (0.40, 0.15), "normal": (None, 0.60)}
SHARE = {"core": (0.10, 0.03), "important": (0.20, 0.05), "normal": (None, 0.20)}
SMALL_SHARE = 0.01
TIER_ZH = {"core": "核心", "important": "重要", "normal": "普通"}


def additive(metric: MetricSpec) -> bool:
    """A sum or a count: its slices add up to the whole, so a slice's loss is a share of the business.
    Not a ratio, an average, a min/max or a distinct count."""
    return metric.ratio is None and metric.measure is not None and metric.measure.agg in ("sum", "count")


class Wholes:
    """The metric's whole in each bucket of a run: the total's expected value, else the sum of the expected values
    of the slices cut the same way (region=… slices add up to the whole; with top_n they are what is watched)."""

    def __init__(self, names: list[str], times: pd.DatetimeIndex, expected: np.ndarray) -> None:
        self._names, self._expected = names, np.asarray(expected, dtype=float)
        self._column = {t: j for j, t in enumerate(pd.DatetimeIndex(times))}
        self._rows: dict[frozenset, list[int]] = {}
        for i, name in enumerate(names):
            self._rows.setdefault(frozenset(parse_slice(name)), []).append(i)

    def at(self, slice_: str, time: datetime) -> float | None:
        j = self._column.get(pd.Timestamp(time))
        if j is None:
            return None
        for cut in (frozenset(), frozenset(parse_slice(slice_))):  # the total first
            values = self._expected[self._rows.get(cut, []), j]
            values = values[np.isfinite(values)]
            if values.size and values.sum() > 0:
                return float(values.sum())
        return None


@dataclass(frozen=True)
class Decision:
    severity: str
    by: str  # rule | deviation | share | amount | small
    reason_zh: str
    reason_en: str
    amount: float | None = None  # |actual − expected| in the metric's unit
    share: float | None = None  # amount / whole (additive metrics)
    whole: float | None = None

    def summary(self) -> dict:
        return {
            "severity_reason_zh": self.reason_zh,
            "severity_reason_en": self.reason_en,
            "impact": {"by": self.by, "amount": self.amount, "share": self.share, "whole": self.whole},
        }


def _level(value: float | None, thresholds: tuple[float | None, float | None]) -> str | None:
    if value is None:
        return None
    p1, p2 = thresholds
    return "P1" if p1 is not None and value >= p1 else "P2" if p2 is not None and value >= p2 else "P3"


def _worst(*levels: str | None) -> str:
    return min((x for x in levels if x), key=RANK.__getitem__)


def _milder(level: str) -> str:
    return LEVELS[min(RANK[level], 2)]


def _pct(x: float) -> str:
    p = x * 100
    return f"{p:.0f}%" if abs(p) >= 10 or p == 0 else f"{p:.2g}%"


def _threshold_text(thresholds: tuple[float | None, float | None], fmt, lang: str) -> str:
    """The thresholds in words, e.g. 'P1 from 25%, P2 from 10%'."""
    p1, p2 = thresholds
    parts = [(lvl, t) for lvl, t in (("P1", p1), ("P2", p2)) if t is not None]
    if lang == "zh":
        return "，".join(f"{fmt(t)} 起为 {lvl}" for lvl, t in parts)
    return ", ".join(f"{lvl} from {fmt(t)}" for lvl, t in parts)


def decide(
    *,
    metric: MetricSpec,
    monitor: MonitorSpec,
    labels: dict[str, str],
    actual: float | None,
    expected: float | None,
    whole: float | None,
) -> Decision:
    """The severity of one anomaly, and why."""
    known = actual is not None and expected is not None and math.isfinite(actual) and math.isfinite(expected)
    dev = (abs(actual - expected) / abs(expected) if expected else math.inf) if known else 0.0
    amount = abs(actual - expected) if known else None
    share = amount / whole if amount is not None and whole and whole > 0 and additive(metric) else None
    text = _Text(metric, actual, expected, dev, amount, share, whole)

    for n, rule in enumerate(monitor.severity, start=1):
        if (
            matches_all(parse_matchers(rule.matchers), labels)
            and (rule.min_deviation_pct is None or dev * 100 >= rule.min_deviation_pct)
            and (rule.min_impact is None or (amount is not None and amount >= rule.min_impact))
            and (rule.min_share_pct is None or (share is not None and share * 100 >= rule.min_share_pct))
        ):
            return text.decision(rule.severity, "rule", *text.for_rule(n, rule))

    tier = metric.tier
    by_dev = _level(dev, DEVIATION[tier])
    by_share = _level(share, SHARE[tier])
    limits = monitor.impact
    by_amount = _level(amount, (limits.P1, limits.P2)) if limits is not None else None
    small = share is not None and share < SMALL_SHARE and by_dev != "P3"
    floor = _milder(by_dev) if small else by_dev
    severity = _worst(floor, by_share, by_amount)
    if by_amount is not None and RANK[by_amount] < RANK[floor] and by_amount == severity:
        return text.decision(severity, "amount", *text.for_amount((limits.P1, limits.P2)))
    if by_share is not None and RANK[by_share] < RANK[floor]:
        return text.decision(severity, "share", *text.for_share(tier))
    if small:
        return text.decision(severity, "small", *text.for_small(tier, by_dev))
    return text.decision(severity, "deviation", *text.for_deviation(tier))


@dataclass
class _Text:
    """The words of a decision, zh and en."""

    metric: MetricSpec
    actual: float | None
    expected: float | None
    dev: float
    amount: float | None
    share: float | None
    whole: float | None

    def decision(self, severity: str, by: str, zh: str, en: str) -> Decision:
        return Decision(severity, by, f"{severity}：{zh}", f"{severity}: {en}", self.amount, self.share, self.whole)

    def money(self, x: float, lang: str) -> str:
        unit = self.metric.unit
        plain = not unit or unit in PERCENT_UNITS | PERMILLE_UNITS
        return format_number(x, lang, unit) + ("" if plain else f" {unit}")

    def deviated(self, lang: str) -> str:
        up = self.actual is not None and self.expected is not None and self.actual >= self.expected
        if lang == "zh":
            word = "高" if up else "低"
            return f"比预期的 0 {word}" if not math.isfinite(self.dev) else f"比预期{word} {_pct(self.dev)}"
        word = "above" if up else "below"
        return f"{word} an expected 0" if not math.isfinite(self.dev) else f"{_pct(self.dev)} {word} expected"

    def stake(self, lang: str) -> str:
        if self.amount is None:
            return ""
        if self.share is None:
            return f"涉及 {self.money(self.amount, 'zh')}" if lang == "zh" else f"{self.money(self.amount, 'en')} off"
        if lang == "zh":
            return f"涉及 {self.money(self.amount, 'zh')}，占总量 {_pct(self.share)}"
        return f"{self.money(self.amount, 'en')} at stake, {_pct(self.share)} of the total"

    def tier(self, tier: str, lang: str) -> str:
        return f"{TIER_ZH[tier]}指标" if lang == "zh" else f"{tier} metric"

    def for_deviation(self, tier: str) -> tuple[str, str]:
        rule = {lang: _threshold_text(DEVIATION[tier], _pct, lang) for lang in ("zh", "en")}
        zh = f"{self.deviated('zh')}（{self.tier(tier, 'zh')}：偏离 {rule['zh']}）"
        en = f"{self.deviated('en')} ({self.tier(tier, 'en')}: {rule['en']})"
        return self._with_stake(zh, en)

    def for_share(self, tier: str) -> tuple[str, str]:
        rule = {lang: _threshold_text(SHARE[tier], _pct, lang) for lang in ("zh", "en")}
        zh = f"{self.stake('zh')}（{self.tier(tier, 'zh')}：占总量 {rule['zh']}）；{self.deviated('zh')}"
        en = f"{self.stake('en')} ({self.tier(tier, 'en')}: {rule['en']} of the total); {self.deviated('en')}"
        return zh, en

    def for_amount(self, thresholds: tuple[float | None, float | None]) -> tuple[str, str]:
        zh = f"{self.stake('zh')}（本监控：{_threshold_text(thresholds, lambda t: self.money(t, 'zh'), 'zh')}）"
        en = f"{self.stake('en')} (this monitor: {_threshold_text(thresholds, lambda t: self.money(t, 'en'), 'en')})"
        return f"{zh}；{self.deviated('zh')}", f"{en}; {self.deviated('en')}"

    def for_small(self, tier: str, by_dev: str) -> tuple[str, str]:
        zh = (
            f"{self.deviated('zh')}（{self.tier(tier, 'zh')}本为 {by_dev}），但只{self.stake('zh').replace('，', '、')}"
            f"（不到 {_pct(SMALL_SHARE)}）：降一级"
        )
        en = (
            f"{self.deviated('en')} would be {by_dev} ({self.tier(tier, 'en')}), but only {self.stake('en')} "
            f"(under {_pct(SMALL_SHARE)}): one level milder"
        )
        return zh, en

    def for_rule(self, n: int, rule) -> tuple[str, str]:
        zh, en = list(rule.matchers), list(rule.matchers)
        for value, zh_text, en_text in (
            (rule.min_deviation_pct, "偏离 ≥ {}%", "deviation ≥ {}%"),
            (rule.min_impact, "涉及 ≥ {}", "at stake ≥ {}"),
            (rule.min_share_pct, "占总量 ≥ {}%", "share of the total ≥ {}%"),
        ):
            if value is not None:
                zh.append(zh_text.format(f"{value:g}"))
                en.append(en_text.format(f"{value:g}"))
        return self._with_stake(
            f"监控的第 {n} 条严重度规则（{'；'.join(zh) or '任何告警'}）；{self.deviated('zh')}",
            f"severity rule {n} of the monitor ({'; '.join(en) or 'any alert'}); {self.deviated('en')}",
        )

    def _with_stake(self, zh: str, en: str) -> tuple[str, str]:
        if self.amount is None or self.share is None:
            return zh, en
        return f"{zh}；{self.stake('zh')}", f"{en}; {self.stake('en')}"
