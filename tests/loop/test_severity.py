"""Default severity from the deviation, the metric's tier and the business impact (the share of the whole at stake),
the monitor's amounts and rules, and the reason a person reads. Pure functions: no database."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from metricloop.alerting.severity import Wholes, additive, decide
from metricloop.definitions.schemas import MetricSpec
from metricloop.monitors.schemas import MonitorSpec

BASE = {"title": {"en": "GMV", "zh": "GMV"}, "owner": "o@x.test", "domain": "sales", "source": "s", "table": "t",
        "time_column": "ts", "unit": "CNY"}  # fmt: skip


def metric(tier: str = "core", **shape) -> MetricSpec:
    shape = shape or {"measure": {"agg": "sum", "column": "amount"}}
    return MetricSpec.model_validate({"name": "gmv", "tier": tier, **BASE, **shape})


def monitor(**fields) -> MonitorSpec:
    return MonitorSpec.model_validate({"name": "m", "metric": "gmv", **fields})


def severity(actual, expected, whole, *, m=None, mon=None, labels=None):
    return decide(metric=m or metric(), monitor=mon or monitor(), labels=labels or {}, actual=actual,
                  expected=expected, whole=whole)  # fmt: skip


@pytest.mark.parametrize(
    ("agg", "ratio", "expected"),
    [("sum", None, True), ("count", None, True), ("avg", None, False), ("count_distinct", None, False),
     ("max", None, False), (None, True, False)],
)  # fmt: skip
def test_only_sums_and_counts_are_shares_of_a_whole(agg, ratio, expected):
    if ratio:
        shape = {"ratio": {"numerator": {"agg": "sum", "column": "a"}, "denominator": {"agg": "count"}}}
    else:
        shape = {"measure": {"agg": agg, "column": "amount"}}
    assert additive(metric(**shape)) is expected


def test_a_slice_that_is_a_large_share_of_the_business_is_raised():
    # region East is 60 % of the business and 8 % below: the deviation alone says P3 (core: P2 from 10 %),
    # but 4.8 % of the whole business is at stake (core: P2 from 3 %)
    d = severity(552, 600, 1000)
    assert (d.severity, d.by) == ("P2", "share")
    assert d.share == pytest.approx(0.048) and d.amount == 48 and d.whole == 1000
    assert d.reason_en == "P2: 48 CNY at stake, 4.8% of the total (core metric: P1 from 10%, P2 from 3% of the " \
                         "total); 8% below expected"  # fmt: skip
    assert d.reason_zh.startswith("P2：涉及 48 CNY，占总量 4.8%（核心指标：占总量 10% 起为 P1，3% 起为 P2）")
    # 12 % of the business at stake: P1
    assert severity(480, 600, 1000).severity == "P1"


def test_a_big_deviation_on_a_tiny_slice_is_lowered():
    # a kiosk selling 10 a day sells 3: 70 % below (P1 for a core metric), but 0.07 % of the business
    d = severity(3, 10, 10_000)
    assert (d.severity, d.by) == ("P2", "small")
    assert d.reason_en == "P2: 70% below expected would be P1 (core metric), but only 7 CNY at stake, 0.07% of the " \
                          "total (under 1%): one level milder"  # fmt: skip
    assert "降一级" in d.reason_zh and "不到 1%" in d.reason_zh
    assert severity(9, 10, 10_000).severity == "P3"  # P3 stays P3


def test_the_deviation_decides_when_the_stake_says_no_more():
    d = severity(880, 1000, 3600)  # 12 % below (P2), 3.3 % of the whole (P2)
    assert (d.severity, d.by) == ("P2", "deviation")
    assert d.reason_en == "P2: 12% below expected (core metric: P1 from 25%, P2 from 10%); 120 CNY at stake, 3.3% " \
                          "of the total"  # fmt: skip
    assert d.reason_zh == "P2：比预期低 12%（核心指标：偏离 25% 起为 P1，10% 起为 P2）；涉及 120 CNY，占总量 3.3%"


def test_for_the_total_its_deviation_is_its_share():
    # the total 12 % below: 12 % of the business is at stake, P1 for a core metric, P2 for an important one
    assert severity(8800, 10_000, 10_000).severity == "P1"
    assert severity(8800, 10_000, 10_000, m=metric("important")).severity == "P2"
    assert severity(9600, 10_000, 10_000, m=metric("normal")).severity == "P3"
    assert severity(7000, 10_000, 10_000, m=metric("normal")).severity == "P2"  # normal: never P1 by default


def test_ratios_and_averages_keep_the_deviation_and_tier():
    rate = metric(unit="%", ratio={"numerator": {"agg": "count", "filter": "ok"}, "denominator": {"agg": "count"}})
    d = severity(60.0, 98.0, 1000.0, m=rate)  # a whole passed in is ignored: a rate is not a share of anything
    assert (d.severity, d.by, d.share) == ("P1", "deviation", None)
    assert d.reason_en == "P1: 39% below expected (core metric: P1 from 25%, P2 from 10%)"
    avg = metric(measure={"agg": "avg", "column": "amount"})
    assert severity(3, 10, 10_000, m=avg).severity == "P1"  # the tiny-slice rule needs a sum or a count


def test_amounts_on_the_monitor_raise_by_the_money_itself():
    mon = monitor(impact={"P1": 100_000, "P2": 20_000})
    d = severity(880_000, 1_000_000, 50_000_000, mon=mon)  # 12 % below (P2), 0.24 % of the whole (small)
    assert (d.severity, d.by) == ("P1", "amount")
    assert d.reason_en.startswith(
        "P1: 120K CNY at stake, 0.24% of the total (this monitor: P1 from 100K CNY, P2 from 20K CNY)"
    )
    assert d.reason_zh.startswith("P1：涉及 12万 CNY，占总量 0.24%（本监控：10万 CNY 起为 P1，2万 CNY 起为 P2）")
    assert severity(975_000, 1_000_000, 50_000_000, mon=mon).severity == "P2"  # 25K
    assert severity(999_000, 1_000_000, 1_000_000, mon=monitor(impact={"P2": 500})).severity == "P2"


def test_rules_override_the_default_and_say_which_rule():
    mon = monitor(severity=[
        {"matchers": ["store=SH-1"], "severity": "P3"},
        {"matchers": [], "min_share_pct": 5, "severity": "P1"},
    ])  # fmt: skip
    d = severity(400, 1000, 3600, mon=mon, labels={"store": "SH-1"})  # by default: P1
    assert (d.severity, d.by) == ("P3", "rule")
    assert d.reason_en.startswith("P3: severity rule 1 of the monitor (store=SH-1); 60% below expected")
    d = severity(900, 1000, 1500, mon=mon, labels={"store": "BJ-1"})  # 6.7 % of the whole
    assert d.severity == "P1"
    assert d.reason_en.split(";")[0] == "P1: severity rule 2 of the monitor (share of the total ≥ 5%)"
    # a share rule never matches a rate: there is no share
    rate = metric(unit="%", ratio={"numerator": {"agg": "count", "filter": "ok"}, "denominator": {"agg": "count"}})
    assert severity(97, 98, None, m=rate, mon=mon, labels={"store": "BJ-1"}).by == "deviation"


def test_impact_thresholds_are_checked():
    with pytest.raises(ValidationError, match="give P1, P2 or both"):
        monitor(impact={})
    with pytest.raises(ValidationError, match="P1's amount must be at least P2's"):
        monitor(impact={"P1": 10, "P2": 20})
    with pytest.raises(ValidationError):
        monitor(impact={"P0": 10})


def test_the_whole_is_the_total_else_the_sum_of_the_slices_cut_the_same_way():
    times = pd.date_range("2026-11-15", periods=2, freq="D")
    names = ["*", "region=East", "region=North", "region=East,store=SH-1", "region=North,store=BJ-1"]
    expected = np.array([[100.0, np.nan], [60, 70], [40, 20], [30, 35], [10, 5]])
    w = Wholes(names, times, expected)
    assert w.at("region=East", datetime(2026, 11, 15)) == 100  # the total's expected value
    assert w.at("region=East", datetime(2026, 11, 16)) == 90  # the total is still learning: East + North
    assert w.at("region=East,store=SH-1", datetime(2026, 11, 16)) == 40  # the watched stores
    assert w.at("region=East", datetime(2026, 11, 17)) is None  # not in this run
    without_total = Wholes(names[1:], times, expected[1:])
    assert without_total.at("region=North", datetime(2026, 11, 15)) == 100
    assert Wholes(["a=1"], times, np.array([[0.0, -5]])).at("a=1", datetime(2026, 11, 15)) is None  # no whole
