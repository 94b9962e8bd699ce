"""Ad hoc root-cause analysis of a governed metric over a real DuckDB source, and what it says to bad requests.

The shop here sells by region × channel × category for 10 weeks; on the last day North's app orders fall by 80 %
and carrier Y delivers late in the South (on-time 60 % instead of 98 %)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from metricloop.errors import MetricloopError
from metricloop.rca.report import analyse

LAST = date(2024, 3, 10)


def _orders() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for d in range(70):
        day = LAST - timedelta(days=69 - d)
        for region in ("East", "North", "South", "West"):
            for channel in ("app", "web", "store"):
                for category in ("Food", "Drinks", "Home"):
                    n = rng.poisson(30 * (1.2 if day.weekday() >= 5 else 1.0))
                    if day == LAST and region == "North" and channel == "app":
                        n = rng.poisson(6)
                    for _ in range(n):
                        carrier = str(rng.choice(["X", "Y"]))
                        late = rng.random() > (0.6 if (day == LAST and region == "South" and carrier == "Y") else 0.98)
                        at = pd.Timestamp(day) + pd.Timedelta(seconds=int(rng.integers(0, 86400)))
                        rows.append({"order_time": at,
                                     "region": region, "channel": channel, "category": category, "carrier": carrier,
                                     "amount": round(float(rng.gamma(4, 10)), 2), "on_time": int(not late)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def orders_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rca_shop") / "orders.parquet"
    _orders().to_parquet(path, index=False)
    return path


@pytest.fixture
def shop(make_ws, orders_file, helpers):
    ws = make_ws()
    base = {"owner": "ana@example.com", "domain": "sales", "source": "shop", "table": "orders",
            "time_column": "order_time", "timezone": "Asia/Shanghai"}
    dims = ["region", "channel", "category", "carrier"]
    metrics = [
        {"name": "gmv", "title": {"en": "GMV", "zh": "成交额"}, **base, "measure": {"agg": "sum", "column": "amount"},
         "dimensions": dims, "fill": "zero", "related": ["on_time_rate"]},
        {"name": "orders", "title": {"en": "Orders", "zh": "订单量"}, **base, "measure": {"agg": "count"},
         "dimensions": dims, "fill": "zero"},
        {"name": "on_time_rate", "title": {"en": "On-time rate", "zh": "准时率"}, **base, "unit": "%",
         "ratio": {"numerator": {"agg": "sum", "column": "on_time"}, "denominator": {"agg": "count"}, "scale": 100},
         "dimensions": dims},
        {"name": "gmv_total", "title": {"en": "GMV total"}, **base, "measure": {"agg": "sum", "column": "amount"}},
        {"name": "avg_amount", "title": {"en": "Average amount"}, **base,
         "measure": {"agg": "avg", "column": "amount"}, "dimensions": dims},
    ]
    source = {"name": "shop", "type": "duckdb", "owner": "data@example.com", "tables": {"orders": str(orders_file)}}
    helpers.apply_text(ws, helpers.defs_yaml([source], metrics))
    return ws


def test_a_channel_of_a_region_that_fell_is_the_cause(shop):
    r = analyse(shop, "orders", at=LAST.isoformat())
    assert r.causes and r.causes[0]["dimensions"] == {"region": "North", "channel": "app"}
    assert r.causes[0]["share"] > 0.5  # most of the total's drop
    # the leaves came from one pushed-down GROUP BY with the total as a grouping set
    assert len(r.sql) == 1 and "GROUPING SETS" in r.sql[0].upper()
    assert "North" in r.explanation_zh and "North" in r.explanation_en


def test_a_ratio_names_the_carrier_where_it_got_worse_as_a_rate_effect(shop):
    r = analyse(shop, "on_time_rate", at=LAST.isoformat(), by=["region", "carrier", "channel"])
    top = r.causes[0]
    assert top["dimensions"] == {"region": "South", "carrier": "Y"}
    assert top["actual"] < 75 and top["expected"] > 95
    assert top["effects"]["rate"] < 0 and abs(top["effects"]["rate"]) > abs(top["effects"]["mix"])


def test_the_expectation_never_sees_the_point_it_is_compared_with(shop):
    from metricloop.rca.cube import leaf_cube

    cube = leaf_cube(shop, "orders", at=LAST.isoformat(), dims=["region", "channel"])
    north = cube.leaves[(cube.leaves["region"] == "North") & (cube.leaves["channel"] == "app")].iloc[0]
    assert north["actual"] < 40 and north["expected"] > 70  # the day's fall is not in its own baseline


def test_an_ordinary_day_has_no_significant_deviation_and_no_cause(shop):
    r = analyse(shop, "orders", at=(LAST - timedelta(days=3)).isoformat())
    assert r.causes == [] and "no significant deviation" in r.message


def test_a_metric_with_no_dimensions_is_refused_clearly(shop):
    with pytest.raises(MetricloopError, match="no dimensions"):
        analyse(shop, "gmv_total", at=LAST.isoformat())


def test_an_average_is_refused_since_it_does_not_add_up(shop):
    with pytest.raises(MetricloopError, match="average"):
        analyse(shop, "avg_amount", at=LAST.isoformat())


def test_an_unknown_dimension_and_an_empty_time_are_refused(shop):
    with pytest.raises(MetricloopError, match="colour"):
        analyse(shop, "gmv", at=LAST.isoformat(), by=["colour"])
    with pytest.raises(MetricloopError, match="no rows|no data"):
        analyse(shop, "gmv", at="2031-01-01")


def test_a_related_metric_must_exist(make_ws, data_files, helpers):
    ws = make_ws(name="rel")
    metrics = helpers.shop_metrics()
    metrics[0]["related"] = ["stockouts"]
    with pytest.raises(MetricloopError, match=r"gmv\)\.related\[0\]: unknown related metric 'stockouts'"):
        helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files)], metrics))


def test_inside_a_slice_causes_are_named_with_it_and_a_slice_that_fell_whole_is_the_cause(shop):
    r = analyse(shop, "orders", at=LAST.isoformat(), where={"region": ["North"]}, slices=["region=North"])
    assert r.causes[0]["dimensions"] == {"region": "North", "channel": "app"}
    # every category of North's app fell alike: the slice itself, not its largest category
    whole = analyse(shop, "orders", at=LAST.isoformat(), where={"region": ["North"], "channel": ["app"]},
                    slices=["channel=app,region=North"])
    assert [c["dimensions"] for c in whole.causes] == [{"channel": "app", "region": "North"}]
