"""Slices: a metric exploded over its dimensions, with the total, top-N by volume and a volume floor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metricloop.errors import QueryError
from metricloop.metrics.query import query_metric
from metricloop.metrics.slices import TOTAL, explode, parse_slice

WINDOW = {"start": "2024-01-08", "end": "2024-02-05"}


def window_orders(orders: pd.DataFrame) -> pd.DataFrame:
    t = orders["order_time"]
    rows = orders[(t >= WINDOW["start"]) & (t < WINDOW["end"])]
    return rows[rows["status"] != "cancelled"]


@pytest.mark.parametrize(
    ("combos", "count"),
    [("all", 1 + 4 + 3 + 4 * 3), ("each", 1 + 4 + 3), ("full", 1 + 4 * 3), ([["channel"]], 1 + 3)],
)
def test_combinations(shared_shop_ws, combos, count):
    df = explode(shared_shop_ws, "gmv", dims=["region", "channel"], combos=combos, **WINDOW)
    assert df["slice"].nunique() == count
    assert TOTAL in set(df["slice"])
    assert (df.groupby("slice").size() == 28).all()  # every slice has every bucket
    assert list(df.columns[:4]) == ["time", "slice", "region", "channel"]


def test_without_the_total(shared_shop_ws):
    df = explode(shared_shop_ws, "gmv", dims=["region"], total=False, **WINDOW)
    assert TOTAL not in set(df["slice"])
    assert df["slice"].nunique() == 4


def test_slice_keys_and_values(shared_shop_ws, orders_df):
    df = explode(shared_shop_ws, "gmv", dims=["region", "channel"], **WINDOW)
    total = df[df["slice"] == TOTAL].reset_index(drop=True)
    plain = query_metric(shared_shop_ws, "gmv", **WINDOW).df
    np.testing.assert_allclose(total["value"], plain["value"])
    assert total["region"].isna().all() and total["channel"].isna().all()
    pair = df[df["slice"] == "channel=web,region=East"]  # keys sorted by dimension name
    assert (pair["region"] == "East").all() and (pair["channel"] == "web").all()
    rows = window_orders(orders_df)
    rows = rows[(rows["region"] == "East") & (rows["channel"] == "web")]
    assert pair["value"].sum() == pytest.approx(rows["amount"].sum())
    assert parse_slice("channel=web,region=East") == {"channel": "web", "region": "East"}
    assert parse_slice(TOTAL) == {}
    # the slices of one dimension add up to the total
    regions = df[df["slice"].str.startswith("region=")]
    np.testing.assert_allclose(regions.groupby("time")["value"].sum().to_numpy(), total["value"].to_numpy())


def test_top_n_by_volume(shared_shop_ws, orders_df):
    df = explode(shared_shop_ws, "orders", dims=["region", "category"], combos="each", top_n=2, **WINDOW)
    rows = window_orders(orders_df)
    for dim in ("region", "category"):
        want = rows[dim].value_counts().nlargest(2).index
        got = df.loc[df["slice"].str.startswith(f"{dim}="), dim].unique()
        assert sorted(got) == sorted(want)
    assert TOTAL in set(df["slice"])  # the total is always kept


def test_minimum_volume_floor(shared_shop_ws, orders_df):
    rows = window_orders(orders_df)
    per_day = rows.groupby("channel").size() / 28
    floor = float(per_day.sort_values().iloc[0] + per_day.sort_values().iloc[1]) / 2  # between the two smallest
    df = explode(shared_shop_ws, "orders", dims=["channel"], min_volume=floor, **WINDOW)
    kept = set(df["channel"].dropna())
    assert kept == set(per_day[per_day >= floor].index)
    assert len(kept) == 2
    assert df["volume"].equals(df["row_count"])


def test_ratio_volume_is_the_denominator(shared_shop_ws):
    df = explode(shared_shop_ws, "web_return_rate", dims=["region"], **WINDOW)
    assert df["volume"].equals(df["denominator"].fillna(0))
    floor = explode(shared_shop_ws, "web_return_rate", dims=["region"], min_volume=10_000, **WINDOW)
    assert set(floor["slice"]) == {TOTAL}


def test_bad_slicing(shared_shop_ws):
    with pytest.raises(QueryError, match="cannot be sliced by 'store'") as err:
        explode(shared_shop_ws, "gmv", dims=["store"])
    assert err.value.where == "dims"
    with pytest.raises(QueryError, match="combos must be all, each, full or a list"):
        explode(shared_shop_ws, "gmv", dims=["region"], combos="some")


@pytest.fixture(scope="module")
def many_stores_ws(tmp_path_factory):
    """20,000 stores × 30 days, one row each."""
    from metricloop.definitions import service
    from metricloop.metrics.validate import column_check, reference_check
    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    home = tmp_path_factory.mktemp("stores")
    n_stores, n_days = 20_000, 30
    rng = np.random.default_rng(3)
    stores = np.char.add("S", np.char.zfill(np.arange(n_stores).astype(str), 5))
    df = pd.DataFrame(
        {
            "day": np.repeat(pd.date_range("2024-01-01", periods=n_days).to_numpy(), n_stores),
            "store": np.tile(stores, n_days),
            "region": np.tile(np.array(["East", "North", "South", "West"])[np.arange(n_stores) % 4], n_days),
            "sales": rng.integers(1, 1000, n_stores * n_days),
        }
    )
    df.to_parquet(home / "sales.parquet", index=False)
    ws = Workspace.init(home, Settings(home=home, db=f"sqlite:///{home / 'state.db'}"))
    (home / "defs.yaml").write_text(
        f"""
sources:
  - {{name: shops, type: duckdb, tables: {{sales: {home / 'sales.parquet'}}}}}
metrics:
  - {{name: sales, title: {{en: Sales}}, owner: a, domain: d, source: shops, table: sales, time_column: day,
      measure: {{agg: sum, column: sales}}, dimensions: [region, store]}}
"""
    )
    entries, problems = service.read_definitions([home / "defs.yaml"])
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="t", checks=[reference_check, column_check(ws)])
    yield ws, df
    ws.close()


def test_tens_of_thousands_of_slices(many_stores_ws):
    ws, data = many_stores_ws
    df = explode(ws, "sales", dims=["store"])
    assert df["slice"].nunique() == 20_001
    assert len(df) == 20_001 * 30
    per_store = df[df["slice"] != TOTAL].groupby("store")["value"].sum()
    want = data.groupby("store")["sales"].sum()
    assert per_store.sort_index().to_numpy().tolist() == want.sort_index().to_numpy().astype(float).tolist()
    top = explode(ws, "sales", dims=["region", "store"], combos="each", top_n=100)
    assert top["slice"].nunique() == 1 + 4 + 100
