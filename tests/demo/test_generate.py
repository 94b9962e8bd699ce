"""The demo data generator: deterministic, with the promised schema, volume, calendar and incidents.

Everything runs on real files written by `generate` (and real servers for `load_into`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import chinese_calendar
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from metricloop.demo.generate import CATEGORIES, CHANNELS, DEFAULT_END, generate
from metricloop.demo.load import load_into
from metricloop.errors import SourceError

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
SCALE = 0.02

STRING = pa.string()
TS = pa.timestamp("us")
SCHEMAS = {
    "orders": [("order_id", pa.int64()), ("order_time", TS), ("region", STRING), ("province", STRING),
               ("city", STRING), ("store", STRING), ("channel", STRING), ("category", STRING), ("sku", STRING),
               ("amount", pa.float64()), ("quantity", pa.int32()), ("status", STRING), ("warehouse", STRING),
               ("carrier", STRING), ("promised_at", TS), ("delivered_at", TS)],
    "inventory": [("date", pa.date32()), ("store", STRING), ("region", STRING), ("province", STRING),
                  ("city", STRING), ("category", STRING), ("sku", STRING), ("on_hand", pa.int32()),
                  ("is_stockout", pa.int8())],
    "visitors": [("visit_hour", TS), ("store", STRING), ("region", STRING), ("province", STRING),
                 ("city", STRING), ("visitors", pa.int32())],
    "complaints": [("complaint_id", pa.int64()), ("created_at", TS), ("region", STRING), ("province", STRING),
                   ("city", STRING), ("store", STRING), ("channel", STRING), ("type", STRING),
                   ("order_id", pa.int64())],
}
CSV_COLUMNS = {
    "stores": ["store", "store_name", "region", "province", "city", "manager", "manager_email", "opened"],
    "promotions": ["name", "name_zh", "start", "end", "scope_dimension", "scope_value", "expected_lift", "kind",
                   "after_days"],
    "holidays": ["date", "name", "is_off_day", "is_makeup_workday"],
    "labels": ["incident_id", "kind", "metric", "slice", "start", "end", "grain", "is_anomaly", "direction",
               "description", "description_zh"],
}


def read(root: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(root / "data" / table)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    calls: list[tuple[str, float]] = []
    summary = generate(root, scale=SCALE, progress=lambda stage, fraction: calls.append((stage, fraction)))
    return root, summary, calls


@pytest.fixture(scope="module")
def frames(demo):
    root = demo[0]
    data = {t: read(root, t) for t in SCHEMAS}
    data["inventory"]["date"] = pd.to_datetime(data["inventory"]["date"])
    data["labels"] = pd.read_csv(root / "data" / "labels.csv", parse_dates=["start", "end"], keep_default_na=False)
    data["stores"] = pd.read_csv(root / "data" / "stores.csv")
    return data


# ------------------------------------------------------------------ determinism, schema, volume


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(demo, tmp_path):
    root, summary, _ = demo
    again = generate(tmp_path / "again", scale=SCALE)
    assert again["rows"] == summary["rows"] and again["files"] == summary["files"]
    for rel in summary["files"]:
        assert (tmp_path / "again" / rel).read_bytes() == (root / rel).read_bytes(), rel
    pd.testing.assert_frame_equal(read(tmp_path / "again", "orders"), read(root, "orders"))

    generate(tmp_path / "other", scale=SCALE, seed=7)
    a, b = read(root, "orders"), read(tmp_path / "other", "orders")
    assert len(a) != len(b) or not a["amount"].equals(b["amount"])


def test_files_have_the_exact_columns_and_types(demo):
    root, summary, _ = demo
    for table, columns in SCHEMAS.items():
        files = sorted((root / "data" / table).glob(f"{table}_*.parquet"))
        assert len(files) == 25  # Nov 2024 .. Nov 2026, one file per month
        assert files[0].name == f"{table}_2024_11.parquet" and files[-1].name == f"{table}_2026_11.parquet"
        for f in (files[0], files[-1]):
            schema = pq.read_schema(f)
            assert [(field.name, field.type) for field in schema] == columns, f
    for name, columns in CSV_COLUMNS.items():
        assert list(pd.read_csv(root / "data" / f"{name}.csv", nrows=1).columns) == columns
    assert set(summary["rows"]) == {*SCHEMAS, *CSV_COLUMNS}


def test_values_follow_the_rules(frames):
    o = frames["orders"]
    assert o["order_id"].is_unique and o["order_time"].is_monotonic_increasing
    assert set(o["channel"]) == set(CHANNELS) and set(o["category"]) == set(CATEGORIES)
    assert set(o["carrier"].dropna()) == {"SF", "JD", "ZTO", "YTO", "EMS"}
    assert o["sku"].nunique() >= 30 and o["sku"].str.fullmatch(r"[A-Z]{3}-\d{4}").all()
    store = o["channel"] == "store"
    for col in ("warehouse", "carrier", "promised_at", "delivered_at"):
        assert o.loc[store, col].isna().all() and o.loc[~store, col].notna().sum() > 0
    assert o.loc[~store, "warehouse"].str.fullmatch(r"WH-(East|North|South|Central|Southwest)-[12]").all()
    assert o.loc[o["status"] == "cancelled", "delivered_at"].isna().all()
    delivered = ~store & (o["status"] != "cancelled")
    assert o.loc[delivered, "delivered_at"].notna().all()
    assert (o["amount"] > 0).all() and (o["quantity"] >= 1).all()
    status = o["status"].value_counts(normalize=True)
    assert 0.02 < status["cancelled"] < 0.04 and 0.012 < status["returned"] < 0.03

    s = frames["stores"]
    assert 38 <= len(s) <= 45 and s["store"].is_unique
    assert set(s["region"]) == {"East", "North", "South", "Central", "Southwest"}
    assert s["manager_email"].str.fullmatch(r"[a-z]+\.[a-z]+@demo\.metricloop\.dev").all()
    share = o["store"].value_counts(normalize=True)
    assert 0.06 <= share.iloc[0] <= 0.105 and (share >= 0.06).sum() >= 3 and share.iloc[10] < 0.03

    c = frames["complaints"]
    assert c["complaint_id"].is_unique and set(c["type"]) <= {"late_delivery", "quality", "service", "refund",
                                                               "other"}
    assert c["order_id"].isna().any() and c["order_id"].dropna().isin(o["order_id"]).all()


def test_volume_follows_scale(demo, tmp_path):
    _, summary, _ = demo
    assert summary["start"] == "2024-11-01" and summary["end"] == DEFAULT_END.isoformat()
    assert abs(summary["rows"]["orders"] / (10_000_000 * SCALE) - 1) < 0.06
    small = generate(tmp_path / "small", scale=0.01, days=120)
    assert small["start"] == (DEFAULT_END - dt.timedelta(days=119)).isoformat()
    assert abs(small["rows"]["orders"] / (summary["rows"]["orders"] / 2 * 120 / 750) - 1) < 0.25
    assert summary["rows"]["inventory"] < 3_000_000


def test_progress_advances_to_one(demo):
    fractions = [f for _, f in demo[2]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 20


def test_patterns_and_normal_rates(frames):
    o, labels = frames["orders"], frames["labels"]
    day = o["order_time"].dt.normalize()
    incident_days = set()
    for _, r in labels.iterrows():
        incident_days.update(pd.date_range(r["start"].normalize(), r["end"] - pd.Timedelta(seconds=1)))
    normal = ~day.isin(incident_days) & ~o["order_time"].dt.month.isin([1, 2, 6, 11])

    parcels = o[normal & (o["channel"] != "store") & (o["status"] != "cancelled")]
    on_time = (parcels["delivered_at"] <= parcels["promised_at"]).mean()
    assert 0.985 < on_time < 0.996

    store = o[normal & (o["channel"] == "store")]
    per_day = store.groupby(store["order_time"].dt.normalize()).size()
    weekend = per_day[per_day.index.day_of_week >= 5].mean() / per_day[per_day.index.day_of_week < 5].mean()
    assert 1.12 < weekend < 1.4
    assert (store["order_time"].dt.hour.between(8, 21)).all()

    drinks = o[o["category"] == "Drinks"].groupby(o["order_time"].dt.month).size() / o.groupby(
        o["order_time"].dt.month).size()
    assert drinks[7] > 1.3 * drinks[12]

    year1 = (day >= "2025-03-01") & (day < "2025-06-01")
    year2 = (day >= "2026-03-01") & (day < "2026-06-01")
    assert 1.06 < year2.sum() / year1.sum() < 1.2  # about +12 % a year

    visitors = frames["visitors"]["visitors"].sum()
    assert 0.08 < len(o) / visitors < 0.2
    stockout = frames["inventory"]["is_stockout"].mean()
    assert 0.01 < stockout < 0.03
    assert 1.0 < len(frames["complaints"]) / len(o) * 1000 < 2.5


def test_festivals_show_up(frames):
    o = frames["orders"]
    online = o[o["channel"].isin(["app", "miniapp"])]
    per_day = online.groupby(online["order_time"].dt.date).size()
    assert per_day[dt.date(2025, 11, 11)] > 2 * per_day[dt.date(2025, 10, 14)]
    assert per_day[dt.date(2026, 6, 18)] > 2 * per_day[dt.date(2026, 5, 19)]
    store = o[o["channel"] == "store"].groupby(o["order_time"].dt.date).size()
    assert store[dt.date(2025, 1, 30)] < 0.6 * store[dt.date(2025, 1, 16)]  # Spring Festival week
    assert per_day.get(dt.date(2026, 2, 15), 0) < 0.3 * per_day[dt.date(2026, 1, 25)]  # e-commerce pauses


# ------------------------------------------------------------------ calendar


def test_holidays_come_from_chinese_calendar(demo):
    h = pd.read_csv(demo[0] / "data" / "holidays.csv", parse_dates=["date"])
    rows = {r.date.date(): r for r in h.itertuples()}
    for day in pd.date_range("2025-01-28", "2025-02-04").date:
        assert rows[day].is_off_day and rows[day].name == "Spring Festival"
    assert rows[dt.date(2025, 1, 26)].is_makeup_workday and not rows[dt.date(2025, 1, 26)].is_off_day
    for day, r in rows.items():
        off, name = chinese_calendar.get_holiday_detail(day)
        assert (r.is_off_day, r.name) == (off, name)
        assert r.is_makeup_workday == (chinese_calendar.is_workday(day) and day.weekday() >= 5)
    assert h["date"].min() >= pd.Timestamp("2024-11-01") and h["date"].max() <= pd.Timestamp(DEFAULT_END)
    assert {"National Day", "Labour Day"} <= set(h["name"])


def test_promotions_cover_the_festivals(demo):
    p = pd.read_csv(demo[0] / "data" / "promotions.csv", parse_dates=["start", "end"], keep_default_na=False)
    spans = {(r.name, r.start.date(), r.end.date()) for r in p.itertuples()}
    for year in (2024, 2025, 2026):
        assert ("Double 11", dt.date(year, 11, 1), dt.date(year, 11, 11)) in spans
    for year in (2025, 2026):
        assert ("618 Shopping Festival", dt.date(year, 6, 1), dt.date(year, 6, 18)) in spans
    assert ("Spring Festival shopping", dt.date(2025, 1, 21), dt.date(2025, 1, 27)) in spans
    assert (p["expected_lift"] > 0).all() and set(p["kind"]) == {"promotion", "festival"}
    assert set(p["scope_dimension"]) <= {"", "region", "category", "channel"}
    dairy = p[p["scope_value"] == "Dairy"].iloc[0]
    assert dairy.expected_lift == 0.6 and (pd.Timestamp(DEFAULT_END) - dairy.end).days <= 30


# ------------------------------------------------------------------ incidents


def test_labels_cover_every_kind_with_a_showcase_in_the_last_30_days(frames):
    labels = frames["labels"]
    first = labels.groupby("incident_id").first()
    counts = first["kind"].value_counts()
    for kind in ("stockout", "carrier_delay", "complaint_surge", "channel_outage"):
        assert counts[kind] >= 2
        assert (first.loc[first["kind"] == kind, "start"] >= pd.Timestamp(DEFAULT_END) - pd.Timedelta(days=29)).any()
    assert first["is_anomaly"].sum() >= 12
    assert not first.loc[first["kind"].isin(["late_feed", "promotion"]), "is_anomaly"].any()
    assert first.loc[~first["kind"].isin(["late_feed", "promotion"]), "is_anomaly"].all()
    for sl in labels["slice"]:
        keys = [part.split("=")[0] for part in sl.split(",")] if sl else []
        assert keys == sorted(keys)
    assert (labels["end"] > labels["start"]).all() and set(labels["grain"]) == {"day", "hour"}
    assert labels["description_zh"].str.len().min() > 5


def _window(labels: pd.DataFrame, kind: str, metric: str):
    rows = labels[(labels["kind"] == kind) & (labels["metric"] == metric) & (labels["grain"] == "day")]
    assert len(rows) >= 2
    return rows.drop_duplicates("incident_id").itertuples()


def _between(frame: pd.DataFrame, col: str, start, end) -> pd.DataFrame:
    return frame[(frame[col] >= start) & (frame[col] < end)]


def _where(frame: pd.DataFrame, sl: str) -> pd.DataFrame:
    for part in filter(None, sl.split(",")):
        key, value = part.split("=")
        frame = frame[frame[key] == value]
    return frame


LAST_30_DAYS = pd.Timestamp(DEFAULT_END) - pd.Timedelta(days=29)


def test_stockouts_empty_the_shelves_and_cut_the_store_gmv(frames):
    o, inv, labels = frames["orders"], frames["inventory"], frames["labels"]
    for r in _window(labels, "stockout", "gmv"):
        store = _where(o, r.slice)
        window = _between(store, "order_time", r.start, r.end)
        weeks = [_between(store, "order_time", r.start - pd.Timedelta(weeks=k), r.end - pd.Timedelta(weeks=k))
                 for k in (1, 2, 3, 4)]
        # One category is gone: it sold every week before and not at all in the window.
        gone = set.intersection(*(set(w["category"]) for w in weeks)) - set(window["category"])
        assert len(gone) == 1, (r.slice, gone)
        shelf = _between(_where(inv, r.slice), "date", r.start, r.end)
        assert shelf.loc[shelf["category"] == gone.pop(), "is_stockout"].all()
        assert shelf["is_stockout"].mean() > 0.15
        before = _between(_where(inv, r.slice), "date", r.start - pd.Timedelta(weeks=4), r.start)
        assert before["is_stockout"].mean() < 0.05
        baseline = float(np.median([w["amount"].sum() for w in weeks]))
        assert window["amount"].sum() < 0.9 * baseline
        if r.start >= LAST_30_DAYS:  # the showcase flagship: GMV ≥ 30 % under the same weekdays
            assert window["amount"].sum() <= 0.7 * baseline, (r.slice, window["amount"].sum(), baseline)


def test_carrier_delays_break_the_fulfilment_rate(frames):
    o = frames["orders"]
    parcels = o[(o["channel"] != "store") & (o["status"] != "cancelled")]
    labels = frames["labels"]
    for r in _window(labels, "carrier_delay", "fulfilment_rate"):
        slices = labels.loc[labels["incident_id"] == r.incident_id, "slice"].tolist()
        assert slices[0].startswith("carrier=") and slices[1].startswith("region=") and slices[2] == ""
        window = _between(parcels, "order_time", r.start, r.end)
        rates = [(lambda f: (f["delivered_at"] <= f["promised_at"]).mean())(_where(window, sl)) for sl in slices]
        assert rates[0] < 0.9 and rates[1] < 0.98 and rates[2] < 0.99, (slices, rates)
        if r.start >= LAST_30_DAYS:  # the showcase: region and total under 98 %
            assert rates[1] < 0.95 and rates[2] < 0.98, (slices, rates)
        others = window[~window.index.isin(_where(window, slices[0]).index)]
        assert (others["delivered_at"] <= others["promised_at"]).mean() > 0.98  # confined to the slice


def test_complaint_surges_stand_out(frames):
    c = frames["complaints"]
    for r in _window(frames["labels"], "complaint_surge", "complaints"):
        city = _where(c, r.slice)
        days = (r.end - r.start).days
        now = len(_between(city, "created_at", r.start, r.end))
        before = len(_between(city, "created_at", r.start - pd.Timedelta(days=28), r.start)) / 28 * days
        assert now >= max(8, 4 * before), (r.slice, now, before)


def test_channel_outages_empty_their_hours(frames):
    o, labels = frames["orders"], frames["labels"]
    hourly = labels[(labels["kind"] == "channel_outage") & (labels["grain"] == "hour") & (labels["metric"] == "orders")]
    assert len(hourly) >= 3
    for r in hourly.itertuples():
        channel = _where(o, r.slice)
        assert len(_between(channel, "order_time", r.start, r.end)) == 0
        week_before = _between(channel, "order_time", r.start - pd.Timedelta(weeks=1), r.end - pd.Timedelta(weeks=1))
        assert len(week_before) >= 10


def test_late_feed_leaves_rows_missing(frames):
    v, labels = frames["visitors"], frames["labels"]
    r = labels[labels["kind"] == "late_feed"].iloc[0]
    assert r["slice"] == "region=North" and r["start"] == pd.Timestamp(DEFAULT_END)
    last = v[v["visit_hour"] >= r["start"]]
    assert len(last) > 0 and "North" not in set(last["region"])
    day_before = _between(v, "visit_hour", r["start"] - pd.Timedelta(days=1), r["start"])
    assert "North" in set(day_before["region"])


def test_promotion_lift_is_labelled_as_expected(frames):
    o, labels = frames["orders"], frames["labels"]
    r = labels[(labels["kind"] == "promotion") & (labels["slice"] == "category=Dairy")].iloc[0]
    assert not r["is_anomaly"] and r["direction"] == "up"
    dairy = o[o["category"] == "Dairy"]
    now = len(_between(dairy, "order_time", r["start"], r["end"]))
    week = pd.Timedelta(weeks=1)
    week_before = len(_between(dairy, "order_time", r["start"] - week, r["end"] - week))
    assert now > 1.3 * week_before


def test_other_end_dates_move_the_incidents(tmp_path):
    summary = generate(tmp_path, scale=0.01, end=dt.date(2025, 12, 31), days=200)
    labels = pd.read_csv(tmp_path / "data" / "labels.csv", parse_dates=["start", "end"])
    labels = labels[labels["kind"] != "promotion"]  # company promotions keep their calendar dates
    assert labels["start"].min() >= pd.Timestamp(summary["start"]) + pd.Timedelta(days=35)
    assert labels["end"].max() <= pd.Timestamp("2026-01-01")
    assert {"stockout", "carrier_delay", "complaint_surge", "channel_outage", "late_feed"} <= set(labels["kind"])
    holidays = set(pd.read_csv(tmp_path / "data" / "holidays.csv", parse_dates=["date"])["date"])
    for r in labels[labels["kind"] != "late_feed"].itertuples():
        assert not holidays & set(pd.date_range(r.start, r.end - pd.Timedelta(seconds=1), freq="D").normalize())


# ------------------------------------------------------------------ loading into servers


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    generate(root, scale=SCALE, days=90)
    return root


def _parquet_rows(root: Path, table: str) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in (root / "data" / table).glob("*.parquet"))


def _check_round_trip(engine: sa.Engine, schema: str, root: Path, summary: dict) -> None:
    expected = {t: _parquet_rows(root, t) for t in SCHEMAS}
    expected |= {t: len(pd.read_csv(root / "data" / f"{t}.csv")) for t in ("stores", "promotions", "holidays")}
    assert summary["tables"] == expected
    with engine.connect() as conn:
        for table, rows in expected.items():
            assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {schema}.{table}")).scalar() == rows
        first = conn.execute(sa.text(f"SELECT MIN(order_time), COUNT(carrier), SUM(amount) FROM {schema}.orders")).one()
        orders = read(root, "orders")
        assert first[0] == orders["order_time"].min().to_pydatetime()
        assert first[1] == orders["carrier"].notna().sum()
        assert float(first[2]) == pytest.approx(orders["amount"].sum())
        store = conn.execute(sa.text(f"SELECT store_name FROM {schema}.stores WHERE store = 'SH-003'")).scalar()
        assert store == "上海陆家嘴旗舰店"
        assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {schema}.complaints WHERE order_id IS NULL")).scalar() > 0
    indexes = sa.inspect(engine).get_indexes("orders", schema=schema)
    assert any(ix["column_names"] == ["order_time"] for ix in indexes)


@pytest.mark.postgres
def test_load_into_postgres_round_trips(small_demo):
    schema = f"demo_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        calls = []
        summary = load_into(PG_URL, small_demo / "data", schema=schema, progress=lambda s, f: calls.append(f))
        assert calls[-1] == 1.0
        _check_round_trip(engine, schema, small_demo, summary)
        load_into(PG_URL, small_demo, schema=schema)  # again, from the workspace directory: tables replaced
        _check_round_trip(engine, schema, small_demo, summary)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


@pytest.mark.mariadb
def test_load_into_mariadb_round_trips(small_demo):
    database = f"demo_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(MARIADB_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    try:
        summary = load_into(MARIADB_URL, small_demo / "data", schema=database)
        _check_round_trip(engine, database, small_demo, summary)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database}"))
        engine.dispose()


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://postgres:hunter2secret@127.0.0.1:1/test",
    pytest.param("mysql+pymysql://root:hunter2secret@127.0.0.1:3306/test", marks=pytest.mark.mariadb),
])
def test_unreachable_server_is_a_clear_error_without_the_password(small_demo, url):
    with pytest.raises(SourceError) as err:
        load_into(url, small_demo / "data")
    assert "hunter2secret" not in str(err.value) and "***" in str(err.value)
    assert "cannot connect" in str(err.value)


def test_unsupported_url_and_missing_data_are_clear_errors(tmp_path, small_demo):
    with pytest.raises(SourceError, match="PostgreSQL and MariaDB"):
        load_into("sqlite:///x.db", small_demo)
    with pytest.raises(SourceError, match="run the demo generator"):
        load_into(PG_URL, tmp_path)
