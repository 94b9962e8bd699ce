"""Metric queries: every aggregation against pandas, ratios at roll-up, filters, long form, missing buckets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metricloop.errors import NotFound, QueryError
from metricloop.metrics.query import query_metric

WINDOW = {"start": "2024-01-08", "end": "2024-02-05"}  # four whole weeks


def bucket(times: pd.Series, grain: str) -> pd.Series:
    if grain == "week":
        return times.dt.normalize() - pd.to_timedelta(times.dt.day_of_week, unit="D")
    if grain == "month":
        return times.dt.to_period("M").dt.start_time
    return times.dt.floor({"hour": "h", "day": "D", "5min": "5min", "15min": "15min", "2h": "2h", "6h": "6h"}[grain])


def in_window(df: pd.DataFrame, column: str, start=WINDOW["start"], end=WINDOW["end"]) -> pd.DataFrame:
    t = pd.to_datetime(df[column])
    return df[(t >= pd.Timestamp(start)) & (t < pd.Timestamp(end))]


def expected(orders: pd.DataFrame, fn, *, by=(), grain="day", rows=None) -> pd.DataFrame:
    """pandas' answer: fn over each (bucket, dims…) group of the windowed orders."""
    df = in_window(orders, "order_time")
    if rows is not None:
        df = df[rows(df)]
    keys = [bucket(df["order_time"], grain).rename("time"), *[df[d] for d in by]]
    return df.groupby(keys).apply(fn, include_groups=False).rename("value").reset_index()


def compare(got: pd.DataFrame, want: pd.DataFrame, by=()) -> None:
    keys = ["time", *by]
    got = got[got["row_count"] > 0]
    merged = want.merge(got, on=keys, how="outer", suffixes=("_want", ""), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    np.testing.assert_allclose(merged["value"].astype(float), merged["value_want"].astype(float), rtol=1e-9)


def not_cancelled(df):
    return df["status"] != "cancelled"


AGGREGATIONS = {
    "gmv": (lambda g: g["amount"].sum(), not_cancelled),
    "orders": (len, not_cancelled),
    "customers": (lambda g: g["customer_id"].nunique(), None),
    "avg_amount": (lambda g: g["amount"].mean(), None),
    "min_amount": (lambda g: g["amount"].min(), None),
    "max_amount": (lambda g: g["amount"].max(), None),
    "paid_amount": (lambda g: g.loc[g["status"] == "paid", "amount"].sum(), None),
    "aov": (lambda g: g["amount"].sum() / len(g), not_cancelled),
}


@pytest.mark.parametrize("by", [(), ("region",), ("region", "category")], ids=["total", "region", "region+category"])
@pytest.mark.parametrize("name", list(AGGREGATIONS))
def test_every_aggregation_equals_pandas(shared_shop_ws, orders_df, name, by):
    fn, rows = AGGREGATIONS[name]
    got = query_metric(shared_shop_ws, name, by=list(by), **WINDOW).df
    compare(got, expected(orders_df, fn, by=by, rows=rows), by)


@pytest.mark.parametrize("grain", ["5min", "15min", "hour", "2h", "6h", "day", "week", "month"])
def test_grains_equal_pandas(shared_shop_ws, orders_df, grain):
    got = query_metric(shared_shop_ws, "gmv", grain=grain, by=["channel"], **WINDOW).df
    compare(got, expected(orders_df, lambda g: g["amount"].sum(), by=["channel"], grain=grain, rows=not_cancelled),
            ["channel"])  # fmt: skip
    assert got["time"].is_monotonic_increasing


def test_hour_buckets_are_complete_and_missing_hours_explicit(shared_shop_ws):
    df = query_metric(shared_shop_ws, "gmv", grain="hour", start="2024-01-10", end="2024-01-11").df
    assert list(df["time"]) == list(pd.date_range("2024-01-10", periods=24, freq="h"))
    empty = df["row_count"] == 0
    assert empty.any()  # a few hours of a small shop have no orders
    assert df.loc[empty, "value"].isna().all() and (df.loc[empty, "flag"] == "missing").all()
    assert df.loc[~empty, "flag"].isna().all()


def test_ratio_stays_correct_at_roll_up(shared_shop_ws, orders_df):
    weekly = query_metric(shared_shop_ws, "aov", grain="week", **WINDOW).df
    daily = query_metric(shared_shop_ws, "aov", grain="day", **WINDOW).df
    paid = in_window(orders_df, "order_time")
    paid = paid[paid["status"] != "cancelled"]
    week = bucket(paid["order_time"], "week")
    want = (paid.groupby(week)["amount"].sum() / paid.groupby(week).size()).to_numpy()
    np.testing.assert_allclose(weekly["value"], want, rtol=1e-9)
    np.testing.assert_allclose(weekly["numerator"], paid.groupby(week)["amount"].sum().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(weekly["denominator"], paid.groupby(week).size().to_numpy())
    # the mean of daily ratios is a different (wrong) number, so the check above can fail
    mean_of_days = daily.groupby(bucket(daily["time"], "week"))["value"].mean().to_numpy()
    assert not np.allclose(weekly["value"], mean_of_days, rtol=1e-6)
    # and summing the daily parts gives the weekly ratio back
    parts = daily.groupby(bucket(daily["time"], "week"))[["numerator", "denominator"]].sum()
    np.testing.assert_allclose(weekly["value"], (parts["numerator"] / parts["denominator"]).to_numpy(), rtol=1e-9)


def test_long_form_columns(shared_shop_ws):
    plain = query_metric(shared_shop_ws, "gmv", by=["region", "channel"], **WINDOW).df
    assert list(plain.columns) == ["time", "region", "channel", "value", "row_count", "flag"]
    ratio = query_metric(shared_shop_ws, "aov", by=["category"], **WINDOW).df
    assert list(ratio.columns) == ["time", "category", "value", "row_count", "numerator", "denominator", "flag"]
    total = query_metric(shared_shop_ws, "orders", **WINDOW).df
    assert list(total.columns) == ["time", "value", "row_count", "flag"]
    assert str(total["row_count"].dtype) == "int64"
    assert total["value"].dtype == float
    assert len(total) == 28 and total["time"].is_unique


def test_filters_apply_to_every_measure(shared_shop_ws, orders_df):
    """gmv drops cancelled orders; orders counts the rest; a per-measure filter narrows only its measure."""
    day = "2024-01-09"
    rows = orders_df[orders_df["order_time"].dt.strftime("%Y-%m-%d") == day]
    gmv = query_metric(shared_shop_ws, "gmv", start=day, end="2024-01-10").df.iloc[0]
    assert gmv["value"] == pytest.approx(rows.loc[rows["status"] != "cancelled", "amount"].sum())
    assert gmv["row_count"] == (rows["status"] != "cancelled").sum()
    paid = query_metric(shared_shop_ws, "paid_amount", start=day, end="2024-01-10").df.iloc[0]
    assert paid["value"] == pytest.approx(rows.loc[rows["status"] == "paid", "amount"].sum())
    assert paid["row_count"] == len(rows)  # the measure filter does not drop rows, only what they add


def test_where_restricts_and_accepts_several_values(shared_shop_ws, orders_df):
    one = query_metric(shared_shop_ws, "orders", where=["region=East"], **WINDOW).df
    two = query_metric(shared_shop_ws, "orders", where=["region=East|West", "channel=app"], **WINDOW).df
    rows = in_window(orders_df, "order_time")
    rows = rows[rows["status"] != "cancelled"]
    assert one["value"].sum() == (rows["region"] == "East").sum()
    assert two["value"].sum() == (rows["region"].isin(["East", "West"]) & (rows["channel"] == "app")).sum()
    as_dict = query_metric(shared_shop_ws, "orders", where={"region": ["East", "West"], "channel": "app"}, **WINDOW)
    assert as_dict.df["value"].sum() == two["value"].sum()


def test_missing_buckets_are_explicit(shared_shop_ws):
    """North has no orders on 2024-02-20: a null value flagged 'missing', not a zero."""
    df = query_metric(shared_shop_ws, "gmv", by=["region"], start="2024-02-19", end="2024-02-22").df
    assert len(df) == 3 * 4
    gap = df[(df["region"] == "North") & (df["time"] == "2024-02-20")].iloc[0]
    assert np.isnan(gap["value"]) and gap["row_count"] == 0 and gap["flag"] == "missing"
    others = df.drop(index=gap.name)
    assert others["value"].notna().all() and others["flag"].isna().all()


def test_zero_only_with_fill_zero(shared_shop_ws):
    df = query_metric(shared_shop_ws, "orders", by=["region"], start="2024-02-19", end="2024-02-22").df
    gap = df[(df["region"] == "North") & (df["time"] == "2024-02-20")].iloc[0]
    assert gap["value"] == 0 and gap["row_count"] == 0 and gap["flag"] == "zero_filled"
    assert (df["flag"] == "zero_filled").sum() == 1


def test_a_window_past_the_data_is_all_missing(shared_shop_ws):
    df = query_metric(shared_shop_ws, "gmv", start="2024-03-01", end="2024-03-04").df
    assert list(df["time"]) == list(pd.date_range("2024-03-01", periods=3))
    assert df["value"].isna().all() and (df["flag"] == "missing").all()
    zero = query_metric(shared_shop_ws, "orders", start="2024-03-01", end="2024-03-04").df
    assert (zero["value"] == 0).all() and (zero["flag"] == "zero_filled").all()


def test_zero_denominator_is_null_and_flagged(shared_shop_ws, orders_df):
    """No web orders on 2024-01-20: the web return rate is null that day, flagged, and nothing crashes."""
    df = query_metric(shared_shop_ws, "web_return_rate", start="2024-01-19", end="2024-01-22").df
    outage = df[df["time"] == "2024-01-20"].iloc[0]
    assert np.isnan(outage["value"]) and outage["flag"] == "zero_denominator"
    assert outage["denominator"] == 0 and outage["numerator"] == 0
    assert outage["row_count"] == (orders_df["order_time"].dt.strftime("%Y-%m-%d") == "2024-01-20").sum()
    normal = df[df["time"] != "2024-01-20"]
    assert normal["value"].notna().all() and normal["flag"].isna().all()
    by_region = query_metric(shared_shop_ws, "web_return_rate", by=["region"], start="2024-01-20", end="2024-01-21")
    assert (by_region.df["flag"] == "zero_denominator").all()


def test_derived_ratio_across_two_tables(shared_shop_ws, orders_df, visitors_df):
    """conversion_rate = orders (orders table) / visitors (visitors table) × 100, per region and day."""
    got = query_metric(shared_shop_ws, "conversion_rate", by=["region"], **WINDOW).df
    assert list(got.columns) == ["time", "region", "value", "row_count", "numerator", "denominator", "flag"]
    orders = in_window(orders_df, "order_time")
    orders = orders[orders["status"] != "cancelled"]
    num = orders.groupby([orders["order_time"].dt.floor("D").rename("time"), "region"]).size().rename("num")
    visitors = in_window(visitors_df, "visit_date").assign(time=lambda d: pd.to_datetime(d["visit_date"]))
    den = visitors.groupby(["time", "region"])["visitors"].sum().rename("den")
    want = pd.concat([num, den], axis=1).reset_index()
    merged = want.merge(got, on=["time", "region"], how="outer")
    assert len(merged) == len(got) == 28 * 4
    np.testing.assert_allclose(merged["numerator"], merged["num"].fillna(0))
    np.testing.assert_allclose(merged["denominator"], merged["den"])
    np.testing.assert_allclose(merged["value"], merged["num"].fillna(0) / merged["den"] * 100, rtol=1e-9)
    # week: sums of each side, then the ratio
    weekly = query_metric(shared_shop_ws, "conversion_rate", grain="week", **WINDOW).df
    np.testing.assert_allclose(weekly["value"], weekly["numerator"] / weekly["denominator"] * 100)
    assert weekly["denominator"].sum() == visitors["visitors"].sum()


def test_derived_ratio_with_a_missing_side_is_flagged(shared_shop_ws):
    """North has visitors but no orders on 2024-02-20; orders is zero-filled so the rate is 0, not a hole."""
    df = query_metric(shared_shop_ws, "conversion_rate", by=["region"], start="2024-02-20", end="2024-02-21").df
    north = df[df["region"] == "North"].iloc[0]
    assert north["numerator"] == 0 and north["denominator"] > 0 and north["value"] == 0
    # a window with no visitors at all: nothing to divide by, and the hole says so
    empty = query_metric(shared_shop_ws, "conversion_rate", start="2024-03-01", end="2024-03-02").df
    assert np.isnan(empty["value"].iloc[0]) and empty["flag"].iloc[0] == "missing"


def test_timezone_aware_bounds_convert_to_the_metric_timezone(shared_shop_ws):
    """The shop's metrics are in Asia/Shanghai (UTC+8): 00:00Z is 08:00 local."""
    aware = query_metric(
        shared_shop_ws, "gmv", grain="hour", start="2024-01-10T00:00:00Z", end="2024-01-10T04:00:00+00:00"
    )
    local = query_metric(shared_shop_ws, "gmv", grain="hour", start="2024-01-10T08:00", end="2024-01-10T12:00")
    assert aware.start == local.start == pd.Timestamp("2024-01-10 08:00")
    assert list(aware.df["time"]) == list(pd.date_range("2024-01-10 08:00", periods=4, freq="h"))
    pd.testing.assert_frame_equal(aware.df, local.df)
    tokyo = {"start": "2024-01-10T09:00+09:00", "end": "2024-01-10T10:00+09:00"}
    other_zone = query_metric(shared_shop_ws, "gmv", grain="hour", **tokyo)
    assert list(other_zone.df["time"]) == [pd.Timestamp("2024-01-10 08:00")]


def test_aliases_and_unknown_metric(shared_shop_ws):
    assert query_metric(shared_shop_ws, "sales", **WINDOW).metric.name == "gmv"
    with pytest.raises(NotFound, match=r"no metric named 'gvm'\. Did you mean gmv\?"):
        query_metric(shared_shop_ws, "gvm")


@pytest.mark.parametrize(
    ("kwargs", "where", "message"),
    [
        ({"by": ["regoin"]}, "by", "cannot be sliced by 'regoin' (allowed: region, channel, category)"),
        ({"where": ["store=7"]}, "where", "cannot be sliced by 'store'"),
        ({"where": ["region"]}, "where", "'region' is not DIM=VALUE"),
        ({"by": ["region;drop table orders"]}, "by", "cannot be sliced by 'region;drop table orders'"),
        ({"by": ['region" FROM orders; --']}, "by", "cannot be sliced by"),
        ({"grain": "fortnight"}, "grain", "grain must be one of"),
        ({"start": "yesterday-ish"}, "from", "'yesterday-ish' is not a date or time"),
        ({"start": "2024-02-01", "end": "2024-01-01"}, "from/to", "the window is empty"),
    ],
)
def test_bad_queries_name_the_parameter(shared_shop_ws, kwargs, where, message):
    with pytest.raises(QueryError) as err:
        query_metric(shared_shop_ws, "gmv", **kwargs)
    assert err.value.where == where
    assert message in err.value.message


@pytest.mark.parametrize(
    "value",
    [
        "East' OR 1=1 --",
        "East' OR '1'='1",
        "East\\' OR 1=1 -- ",
        "x'; DROP TABLE orders; --",
        'East" OR 1=1 --',
    ],
)
def test_sql_injection_in_where_values_is_just_a_value(shared_shop_ws, value):
    df = query_metric(shared_shop_ws, "gmv", where=[f"region={value}"], **WINDOW).df
    assert (df["row_count"] == 0).all() and df["value"].isna().all()
    # the data is intact
    assert query_metric(shared_shop_ws, "gmv", **WINDOW).df["row_count"].sum() > 800


def test_values_with_quotes_unicode_and_nulls(make_ws, helpers, tmp_path):
    """Real values that contain a quote or Chinese are found (literals, not escaped away); nulls get a name."""
    shops = ["O'Brien's", "Plain", "O'Brien's", "华东一店", None]
    data = pd.DataFrame({"t": pd.to_datetime(["2024-01-01 10:00"] * 5), "shop": shops})
    data.to_parquet(tmp_path / "shops.parquet", index=False)
    ws = make_ws()
    source = {"name": "files", "type": "duckdb", "tables": {"sales": str(tmp_path / "shops.parquet")}}
    metric = {"name": "sales", "title": {"en": "Sales"}, "owner": "a", "domain": "d", "source": "files",
              "table": "sales", "time_column": "t", "measure": {"agg": "count"}, "dimensions": ["shop"]}  # fmt: skip
    helpers.apply_text(ws, helpers.defs_yaml([source], [metric]))
    assert query_metric(ws, "sales", where=["shop=O'Brien's"]).df["value"].tolist() == [2]
    assert query_metric(ws, "sales", where=["shop=华东一店|Plain"]).df["value"].tolist() == [2]
    by_shop = query_metric(ws, "sales", by=["shop"]).df.set_index("shop")["value"].to_dict()
    assert by_shop == {"O'Brien's": 2, "Plain": 1, "华东一店": 1, "(null)": 1}
