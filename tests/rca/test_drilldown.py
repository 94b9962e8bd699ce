"""Dimension drill-down on real cubes made here: the true cause is found at its depth, nothing is invented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metricloop.errors import MetricloopError
from metricloop.rca.drilldown import find_causes, find_ratio_causes


def cube(seed=0, dims=("region", "channel", "category"), cards=(5, 4, 6), noise=0.03):
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([[f"{d}{i}" for i in range(c)] for d, c in zip(dims, cards, strict=True)],
                                     names=list(dims))
    frame = idx.to_frame(index=False)
    base = rng.lognormal(4, 1, size=len(frame))
    frame["expected"] = base
    frame["actual"] = rng.poisson(base * np.exp(rng.normal(0, noise, len(frame)))).astype(float)
    return frame


def hit(frame, **values):
    m = np.ones(len(frame), dtype=bool)
    for k, v in values.items():
        m &= (frame[k] == v).to_numpy()
    return m


def test_a_depth_one_cause():
    f = cube()
    m = hit(f, region="region2")
    f.loc[m, "actual"] *= 0.5
    res = find_causes(f)
    assert [c.dimensions for c in res.causes] == [{"region": "region2"}]
    c = res.causes[0]
    assert c.deviation_pct == pytest.approx(-50, abs=5)
    assert c.share == pytest.approx(1.0, abs=0.15)


def test_a_depth_two_cause_is_not_its_parent_nor_its_children():
    f = cube(1)
    f.loc[hit(f, region="region1", channel="channel3"), "actual"] *= 0.3
    res = find_causes(f)
    assert [c.dimensions for c in res.causes] == [{"region": "region1", "channel": "channel3"}]


def test_two_causes_in_opposite_directions():
    f = cube(2)
    f.loc[hit(f, category="category0"), "actual"] *= 0.4
    f.loc[hit(f, region="region4", channel="channel1"), "actual"] *= 2.5
    got = {frozenset(c.dimensions.items()) for c in find_causes(f).causes}
    assert got == {frozenset({("category", "category0")}), frozenset({("region", "region4"), ("channel", "channel1")})}


def test_no_anomaly_invents_no_cause():
    for seed in range(5):
        res = find_causes(cube(10 + seed))
        assert res.causes == [], res.causes
        assert "no significant deviation" in res.message


def test_a_cube_with_one_dimension():
    f = cube(3, dims=("store",), cards=(40,))
    f.loc[hit(f, store="store7"), "actual"] *= 0.2
    assert [c.dimensions for c in find_causes(f).causes] == [{"store": "store7"}]


def test_expected_all_zero_says_so():
    f = cube()
    f["expected"] = 0.0
    res = find_causes(f)
    assert res.causes == [] and "all are 0" in res.message


def test_negative_values_are_scored_on_size():
    """A margin metric: some leaves lose money. A channel that lost 60 more per leaf is still the cause."""
    rng = np.random.default_rng(4)
    f = cube(4)
    f["expected"] = rng.normal(100, 80, len(f))
    f["actual"] = f["expected"] + rng.normal(0, 5, len(f))
    f.loc[hit(f, channel="channel2"), "actual"] -= 60
    res = find_causes(f)
    assert any("negative" in w for w in res.warnings)
    assert [c.dimensions for c in res.causes] == [{"channel": "channel2"}]


def test_duplicate_leaf_rows_are_summed_with_a_warning():
    f = cube(5)
    f.loc[hit(f, region="region0"), "actual"] *= 0.4
    doubled = pd.concat([f, f.iloc[:10]])
    res = find_causes(doubled)
    assert any("duplicate" in w for w in res.warnings)
    assert [c.dimensions for c in res.causes] == [{"region": "region0"}]


def test_nan_values_are_left_out_with_a_warning():
    f = cube(6)
    f.loc[hit(f, region="region3"), "actual"] *= 0.4
    f.loc[f.index[:7], "actual"] = np.nan
    f.loc[f.index[7:9], "region"] = None
    res = find_causes(f)
    assert any("7 leaf row(s)" in w for w in res.warnings)
    assert [c.dimensions for c in res.causes] == [{"region": "region3"}]


def test_a_dimension_with_100k_values():
    rng = np.random.default_rng(7)
    n = 100_000
    f = pd.DataFrame({"sku": [f"sku{i}" for i in range(n)], "region": rng.choice(["N", "S", "E", "W"], n)})
    f["expected"] = rng.lognormal(2, 1, n)
    f["actual"] = rng.poisson(f["expected"]).astype(float)
    f.loc[f.region == "S", "actual"] *= 0.6
    res = find_causes(f)
    assert [c.dimensions for c in res.causes] == [{"region": "S"}]


def test_no_dimensions_is_a_clear_error():
    f = pd.DataFrame({"actual": [1.0, 2.0], "expected": [1.0, 2.0]})
    with pytest.raises(MetricloopError, match="no dimension columns"):
        find_causes(f)
    with pytest.raises(MetricloopError, match="no column 'real'"):
        find_causes(f, actual="real")


def test_ratio_rate_effect_against_mix_effect():
    """Fulfilment: on-time / orders by carrier × region. ZTO in South got slower (rate); elsewhere orders
    moved to a carrier that is always slower (mix)."""
    rng = np.random.default_rng(8)
    rows = []
    for carrier, rate in [("SF", 0.99), ("ZTO", 0.97), ("YTO", 0.90)]:
        for region in ["North", "South", "East", "West", "Central"]:
            for wh in range(6):
                orders = rng.integers(800, 1200)
                rows.append({"carrier": carrier, "region": region, "warehouse": f"W{wh}", "orders_e": orders,
                             "ontime_e": orders * rate, "orders_a": orders, "ontime_a": rng.binomial(orders, rate)})
    f = pd.DataFrame(rows)
    slow = hit(f, carrier="ZTO", region="South")
    f.loc[slow, "ontime_a"] = (f.loc[slow, "orders_a"] * 0.80).round()
    res = find_ratio_causes(f, actual_num="ontime_a", actual_den="orders_a", expected_num="ontime_e",
                            expected_den="orders_e", dims=["carrier", "region", "warehouse"])
    assert [c.dimensions for c in res.causes] == [{"carrier": "ZTO", "region": "South"}]
    c = res.causes[0]
    assert c.effects["rate"] < 0 and abs(c.effects["mix"]) < abs(c.effects["rate"]) / 10
    assert c.actual == pytest.approx(0.80, abs=0.01)
    # a pure mix shift: YTO's volume triples in North at its usual rate; no rate moved anywhere
    g = f.copy()
    g["ontime_a"] = g["ontime_e"].round()
    north_yto = hit(g, carrier="YTO", region="North")
    g.loc[north_yto, "orders_a"] *= 3
    g.loc[north_yto, "ontime_a"] = (g.loc[north_yto, "orders_a"] * 0.90).round()
    res = find_ratio_causes(g, actual_num="ontime_a", actual_den="orders_a", expected_num="ontime_e",
                            expected_den="orders_e", dims=["carrier", "region", "warehouse"])
    assert res.causes == []
    assert res.actual < res.expected  # the total fell, by mix alone
