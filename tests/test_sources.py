"""Sources: DuckDB over files and .duckdb files; PostgreSQL and MariaDB give the same numbers; secrets stay secret."""

from __future__ import annotations

import gzip
import logging
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.definitions import service
from metricloop.errors import DefinitionError, SourceError
from metricloop.metrics.query import query_metric
from metricloop.metrics.slices import explode

PG_SECRET = "pg-s3cret@horse/bat:tery#1?"  # characters that mean something in a URL
MARIADB_WRONG = "wrong-s3cret-staple"


def reference_gmv(orders: pd.DataFrame) -> pd.Series:
    rows = orders[orders["status"] != "cancelled"]
    return rows.groupby([rows["order_time"].dt.floor("D").rename("time"), "region"])["amount"].sum()


def gmv_by_region(ws) -> pd.Series:
    df = query_metric(ws, "gmv", by=["region"]).df
    df = df[df["row_count"] > 0]
    return df.set_index(["time", "region"])["value"]


def assert_same_series(got: pd.Series, want: pd.Series) -> None:
    got, want = got.sort_index(), want.sort_index()
    assert list(got.index) == list(want.index)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9)


# ------------------------------------------------------------------ DuckDB over files


@pytest.mark.parametrize("fmt", ["parquet", "glob", "csv", "json"])
def test_duckdb_over_files(make_ws, helpers, data_files, orders_df, fmt):
    path = {
        "parquet": data_files.orders_parquet,
        "glob": data_files.orders_glob,
        "csv": data_files.orders_csv,
        "json": data_files.orders_json,
    }[fmt]
    ws = make_ws()
    helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files, orders=path)], helpers.shop_metrics()))
    assert_same_series(gmv_by_region(ws), reference_gmv(orders_df))
    assert set(ws.source("shop").test()) >= {"orders", "visitors"}


def test_duckdb_over_a_duckdb_file(make_ws, helpers, data_files, orders_df):
    ws = make_ws()
    source = {"name": "shop", "type": "duckdb", "path": str(data_files.duckdb_file)}
    helpers.apply_text(ws, helpers.defs_yaml([source], helpers.shop_metrics()))
    assert_same_series(gmv_by_region(ws), reference_gmv(orders_df))
    assert query_metric(ws, "conversion_rate", start="2024-01-02", end="2024-01-03").df["value"].notna().all()


def test_duckdb_file_plus_file_views(make_ws, helpers, data_files, orders_df, tmp_path):
    """A read-only .duckdb file with more tables as views over files next to it."""
    db_file = tmp_path / "orders_only.duckdb"
    con = duckdb.connect(str(db_file))
    con.register("frame", orders_df)
    con.execute("CREATE TABLE orders AS SELECT * FROM frame")
    con.close()
    ws = make_ws()
    views = {"visitors": str(data_files.visitors_parquet)}
    source = {"name": "shop", "type": "duckdb", "path": str(db_file), "tables": views}
    helpers.apply_text(ws, helpers.defs_yaml([source], helpers.shop_metrics()))
    assert_same_series(gmv_by_region(ws), reference_gmv(orders_df))
    assert query_metric(ws, "visitors", start="2024-01-02", end="2024-01-03").df["value"].iloc[0] > 0
    assert ws.source("shop").test() == ["orders", "visitors"]


def test_relative_paths_are_inside_the_workspace(make_ws, helpers, data_files, orders_df):
    ws = make_ws()
    shutil.copytree(data_files.root / "orders_parts", ws.data_dir / "orders")
    shutil.copy(data_files.visitors_parquet, ws.data_dir / "visitors.parquet")
    views = {"orders": "data/orders/*.parquet", "visitors": "data/visitors.parquet"}
    source = {"name": "shop", "type": "duckdb", "tables": views}
    helpers.apply_text(ws, helpers.defs_yaml([source], helpers.shop_metrics()))
    assert_same_series(gmv_by_region(ws), reference_gmv(orders_df))


def test_compressed_json_lines(make_ws, helpers, data_files, orders_df, tmp_path):
    gz = tmp_path / "orders.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write(data_files.orders_json.read_bytes())
    ws = make_ws()
    helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files, orders=gz)], helpers.shop_metrics()))
    assert_same_series(gmv_by_region(ws), reference_gmv(orders_df))


def test_a_metric_over_a_sql_query(make_ws, helpers, data_files, orders_df):
    ws = make_ws()
    metric = {"name": "web_gmv", "title": {"en": "Web GMV"}, "owner": "a", "domain": "d", "source": "shop",
              "sql": "SELECT order_time, region, amount FROM orders WHERE channel = 'web'",
              "time_column": "order_time", "measure": {"agg": "sum", "column": "amount"},
              "dimensions": ["region"]}  # fmt: skip
    helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files)], [metric]))
    got = query_metric(ws, "web_gmv", grain="month").df
    web = orders_df[orders_df["channel"] == "web"]
    want = web.groupby(web["order_time"].dt.to_period("M"))["amount"].sum().to_numpy()
    np.testing.assert_allclose(got["value"], want, rtol=1e-9)


def test_missing_files_are_a_clear_error(make_ws, helpers, data_files, tmp_path):
    ws = make_ws()
    source = helpers.duckdb_source(data_files, orders=tmp_path / "nope" / "*.parquet")
    before = helpers.db_state(ws)
    with pytest.raises(DefinitionError) as err:
        helpers.apply_text(ws, helpers.defs_yaml([source], helpers.shop_metrics()[:1]))
    (problem,) = err.value.problems
    assert problem.field == "metrics[0] (gmv).source"
    assert problem.line is not None
    assert "source 'shop', tables.orders: no file matches" in problem.message
    assert "--no-check" in problem.message
    assert helpers.db_state(ws) == before
    # with --no-check it is stored, and testing the source says what is wrong
    helpers.apply_text(ws, helpers.defs_yaml([source], helpers.shop_metrics()[:1]), check=False)
    with pytest.raises(SourceError, match="no file matches .*nope") as err:
        ws.source("shop").test()
    assert err.value.where == "source 'shop', tables.orders"


def test_unknown_file_type(make_ws, helpers, data_files, tmp_path):
    (tmp_path / "orders.xlsx").write_bytes(b"not really")
    ws = make_ws()
    helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files, orders=tmp_path / "orders.xlsx")]))
    with pytest.raises(SourceError, match="cannot tell the file type"):
        ws.source("shop").test()


def test_a_broken_file_is_a_clear_error(make_ws, helpers, data_files, tmp_path):
    (tmp_path / "orders.parquet").write_bytes(b"PAR1 this is not parquet")
    ws = make_ws()
    helpers.apply_text(ws, helpers.defs_yaml([helpers.duckdb_source(data_files, orders=tmp_path / "orders.parquet")]))
    with pytest.raises(SourceError, match="cannot read .*orders.parquet") as err:
        ws.source("shop").test()
    assert err.value.where == "source 'shop', tables.orders"


# ------------------------------------------------------------------ PostgreSQL and MariaDB give DuckDB's numbers

SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
    "sqlite",  # an SQLAlchemy URL too, with its own bucket templates
]
METRICS = ["gmv", "orders", "customers", "avg_amount", "min_amount", "max_amount", "paid_amount", "aov",
           "web_return_rate", "visitors", "conversion_rate"]  # fmt: skip


@pytest.fixture(scope="module", params=SERVERS)
def server_ws(request, tmp_path_factory):
    """A workspace whose `shop` source is the PostgreSQL or MariaDB server holding the shop data."""
    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    from_conftest = request.getfixturevalue("helpers")
    if request.param == "postgres":
        source = {"name": "shop", "type": "sql", "url": request.getfixturevalue("server_urls")["postgres"],
                  "schema": request.getfixturevalue("pg_shop")}  # fmt: skip
    elif request.param == "mariadb":
        source = {"name": "shop", "type": "sql", "url": request.getfixturevalue("mariadb_shop")}
    else:
        source = {"name": "shop", "type": "sql", "url": f"sqlite:///{request.getfixturevalue('sqlite_shop')}"}
    home = tmp_path_factory.mktemp(request.param)
    ws = Workspace.init(home, Settings(home=home, db=f"sqlite:///{home / 'state.db'}", user="tester"))
    from_conftest.apply_text(ws, from_conftest.defs_yaml([source], from_conftest.shop_metrics()))
    yield ws
    ws.close()


def same_frames(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.assign(flag=got["flag"].astype(object).where(got["flag"].notna(), None))
    want = want.assign(flag=want["flag"].astype(object).where(want["flag"].notna(), None))
    for c in got.columns:
        if c not in ("time", "flag") and got[c].dtype.kind not in "fiu":
            got[c], want[c] = got[c].astype(str), want[c].astype(str)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9)


DUCKDB_ANSWERS: dict[tuple, object] = {}


@pytest.mark.parametrize(
    ("grain", "window"),
    [
        ("minute", ("2024-01-10 08:00", "2024-01-10 11:00")),
        ("5min", ("2024-01-10 08:00", "2024-01-10 14:00")),  # step grains: each dialect's own bucketing
        ("15min", ("2024-01-10", "2024-01-11")),
        ("hour", ("2024-01-10", "2024-01-12")),
        ("6h", ("2024-01-08", "2024-01-15")),
        ("day", ("2024-01-08", "2024-02-26")),
        ("week", ("2024-01-01", "2024-02-26")),
        ("month", ("2024-01-01", "2024-03-01")),
    ],
)
def test_servers_give_the_same_numbers_as_duckdb(server_ws, shared_shop_ws, grain, window):
    start, end = window
    catalogs = {id(ws): ws.catalog() for ws in (server_ws, shared_shop_ws)}
    for name in METRICS:
        for by in ([], ["region"]):
            kw = {"by": by, "grain": grain, "start": start, "end": end}
            got = query_metric(server_ws, name, catalog=catalogs[id(server_ws)], **kw)
            key = (name, tuple(by), grain, window)
            if key not in DUCKDB_ANSWERS:  # the same for every server: ask DuckDB once
                DUCKDB_ANSWERS[key] = query_metric(shared_shop_ws, name, catalog=catalogs[id(shared_shop_ws)], **kw)
            want = DUCKDB_ANSWERS[key]
            assert len(want.df) > 0 or by  # without dimensions every bucket is there, even when empty
            try:
                same_frames(got.df, want.df)
            except AssertionError as e:
                raise AssertionError(f"{name} by {by} per {grain}: {e}\nSQL: {got.sql}") from None


def test_servers_where_and_several_dimensions(server_ws, shared_shop_ws):
    kw = {"by": ["region", "category"], "where": ["category=Drinks|Fresh"], "start": "2024-01-08", "end": "2024-01-22"}
    for name in ("gmv", "aov", "web_return_rate"):
        same_frames(query_metric(server_ws, name, **kw).df, query_metric(shared_shop_ws, name, **kw).df)


@pytest.mark.parametrize(("name", "dims"), [("aov", ["region", "channel"]), ("conversion_rate", ["region"])])
def test_servers_slices_match_duckdb(server_ws, shared_shop_ws, name, dims):
    """Slices take one scan with GROUPING SETS where the database has them (PostgreSQL), else one per grouping."""
    kw = {"dims": dims, "combos": "all", "start": "2024-02-12", "end": "2024-02-26", "top_n": 3}
    got = explode(server_ws, name, **kw).sort_values(["slice", "time"], kind="stable").reset_index(drop=True)
    want = explode(shared_shop_ws, name, **kw).sort_values(["slice", "time"], kind="stable").reset_index(drop=True)
    assert got["slice"].nunique() == want["slice"].nunique() > 1
    same_frames(got, want)


def test_servers_metric_over_a_sql_query(server_ws, shared_shop_ws, helpers):
    """A metric defined by a SELECT runs as a subquery in each database's dialect."""
    metric = {"name": "web_gmv", "title": {"en": "Web GMV"}, "owner": "a", "domain": "d", "source": "shop",
              "sql": "SELECT order_time, region, amount FROM orders WHERE channel = 'web'",
              "time_column": "order_time", "measure": {"agg": "sum", "column": "amount"},
              "dimensions": ["region"]}  # fmt: skip
    for ws in (server_ws, shared_shop_ws):
        helpers.apply_text(ws, helpers.defs_yaml(metrics=[metric]), file="web_gmv.yaml")
    kw = {"by": ["region"], "grain": "week", "start": "2024-01-08", "end": "2024-02-05"}
    same_frames(query_metric(server_ws, "web_gmv", **kw).df, query_metric(shared_shop_ws, "web_gmv", **kw).df)


def test_servers_zero_denominator(server_ws):
    df = query_metric(server_ws, "web_return_rate", start="2024-01-20", end="2024-01-21").df
    assert np.isnan(df["value"].iloc[0]) and df["flag"].iloc[0] == "zero_denominator"


@pytest.mark.parametrize(
    "value", ["East' OR 1=1 --", "East\\' OR 1=1 -- ", "x'; DROP TABLE orders; --", "x\\'; DROP TABLE orders; -- "]
)
def test_servers_sql_injection_in_where(server_ws, value):
    df = query_metric(server_ws, "gmv", where=[f"region={value}"], start="2024-01-08", end="2024-01-15").df
    assert (df["row_count"] == 0).all()
    tables = server_ws.source("shop").test()
    assert {"orders", "visitors"} <= set(tables)
    assert query_metric(server_ws, "orders", start="2024-01-08", end="2024-01-15").df["value"].sum() > 100


@pytest.mark.postgres
def test_postgres_table_with_schema_prefix(make_ws, helpers, pg_shop, server_urls, orders_df):
    ws = make_ws()
    metric = {**helpers.shop_metrics()[0], "table": f"{pg_shop}.orders"}
    source = {"name": "shop", "type": "sql", "url": server_urls["postgres"]}
    helpers.apply_text(ws, helpers.defs_yaml([source], [metric]))
    assert_same_series(gmv_by_region(ws), reference_gmv(orders_df))


# ------------------------------------------------------------------ unreachable sources


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+psycopg://postgres@127.0.0.1:1/test", marks=pytest.mark.postgres),
        pytest.param("mysql+pymysql://root@127.0.0.1:1/test", marks=pytest.mark.mariadb),
    ],
)
def test_an_unreachable_source(make_ws, helpers, url):
    ws = make_ws()
    source = {"name": "down", "type": "sql", "url": url}
    metric = {**helpers.shop_metrics("down")[0]}
    before = helpers.db_state(ws)
    with pytest.raises(DefinitionError) as err:
        helpers.apply_text(ws, helpers.defs_yaml([source], [metric]))
    (problem,) = err.value.problems
    assert problem.field == "metrics[0] (gmv).source"
    assert "cannot check columns: source 'down': cannot connect" in problem.message
    assert helpers.db_state(ws) == before
    helpers.apply_text(ws, helpers.defs_yaml([source], [metric]), check=False)
    with pytest.raises(SourceError, match="cannot connect") as err:
        ws.source("down").test()
    assert err.value.where == "source 'down'"
    assert "Traceback" not in str(err.value) and len(str(err.value).splitlines()) == 1
    with pytest.raises(SourceError, match="cannot connect"):
        query_metric(ws, "gmv")


def test_a_missing_driver(make_ws, helpers):
    ws = make_ws()
    helpers.apply_text(ws, helpers.defs_yaml([{"name": "wh", "type": "sql", "url": "nosuchdb://host/db"}]))
    with pytest.raises(SourceError, match="bad URL or missing driver"):
        ws.source("wh").test()


# ------------------------------------------------------------------ secrets


@pytest.fixture
def secret_ws(make_ws, helpers, pg_shop, monkeypatch):
    """A PostgreSQL source whose user and password come from the environment."""
    monkeypatch.setenv("ML_TEST_PG_USER", "postgres")
    monkeypatch.setenv("ML_TEST_PG_PASSWORD", PG_SECRET)  # the server trusts local connections: any password works
    ws = make_ws()
    source = {"name": "shop", "type": "sql", "schema": pg_shop,
              "url": "postgresql+psycopg://${ML_TEST_PG_USER}:${ML_TEST_PG_PASSWORD}@127.0.0.1:5432/test"}  # fmt: skip
    helpers.apply_text(ws, helpers.defs_yaml([source], helpers.shop_metrics()))
    return ws


@pytest.mark.postgres
def test_env_secrets_are_used_to_connect_and_never_shown(secret_ws, caplog):
    caplog.set_level(logging.DEBUG)
    assert query_metric(secret_ws, "orders", start="2024-01-08", end="2024-01-09").df["value"].iloc[0] > 0
    with secret_ws.db.session() as s:
        exported = service.dump_yaml(service.export(s))
    assert "${ML_TEST_PG_PASSWORD}" in exported and PG_SECRET not in exported
    spec = secret_ws.catalog().source("shop")
    assert PG_SECRET not in repr(spec) and PG_SECRET not in str(spec.normalized())
    with secret_ws.db.session() as s:
        token = create_token(s, name="reader", role="viewer")  # reads of the API need a token
    body = TestClient(create_app(secret_ws)).get("/api/sources", headers={"Authorization": f"Bearer {token}"}).text
    assert "${ML_TEST_PG_PASSWORD}" in body and PG_SECRET not in body
    assert PG_SECRET not in caplog.text
    with secret_ws.db.engine.connect() as conn:  # nor in the state database
        rows = conn.execute(text("SELECT spec FROM definitions UNION ALL SELECT diff FROM definition_versions"))
        assert not any(PG_SECRET in str(r[0]) for r in rows)


@pytest.mark.postgres
def test_a_secret_user_name_is_masked_in_errors(make_ws, helpers, monkeypatch):
    monkeypatch.setenv("ML_TEST_PG_USER", "no-such-r0le@x")
    ws = make_ws()
    url = "postgresql+psycopg://${ML_TEST_PG_USER}@127.0.0.1:5432/test"
    helpers.apply_text(ws, helpers.defs_yaml([{"name": "wh", "type": "sql", "url": url}]))
    with pytest.raises(SourceError, match="cannot connect") as err:
        ws.source("wh").test()
    assert 'role "***" does not exist' in str(err.value)  # the server was reached: the @ did not move the host
    assert "r0le" not in str(err.value)


@pytest.mark.postgres
def test_env_secrets_are_read_at_connect_time(make_ws, helpers, pg_shop, monkeypatch):
    monkeypatch.delenv("ML_TEST_LATE_PASSWORD", raising=False)
    ws = make_ws()
    source = {"name": "shop", "type": "sql", "schema": pg_shop,
              "url": "postgresql+psycopg://postgres:${ML_TEST_LATE_PASSWORD}@127.0.0.1:5432/test"}  # fmt: skip
    helpers.apply_text(ws, helpers.defs_yaml([source], helpers.shop_metrics()[:1]), check=False)
    with pytest.raises(SourceError) as err:
        ws.source("shop").test()
    assert err.value.message == "environment variable ML_TEST_LATE_PASSWORD is not set"
    assert err.value.where == "source 'shop' url"
    monkeypatch.setenv("ML_TEST_LATE_PASSWORD", PG_SECRET)
    assert "orders" in ws.source("shop").test()


@pytest.mark.mariadb
def test_a_wrong_password_is_not_in_the_error(make_ws, helpers, mariadb_admin, monkeypatch):
    monkeypatch.setenv("ML_TEST_MARIADB_PASSWORD", MARIADB_WRONG)
    ws = make_ws()
    url = "mysql+pymysql://root:${ML_TEST_MARIADB_PASSWORD}@127.0.0.1:3306/test"
    helpers.apply_text(ws, helpers.defs_yaml([{"name": "wh", "type": "sql", "url": url}]))
    with pytest.raises(SourceError) as err:
        ws.source("wh").test()
    text_ = str(err.value)
    assert "cannot connect" in text_ and "Access denied" in text_
    assert MARIADB_WRONG not in text_


@pytest.mark.mariadb
def test_a_secret_that_shows_up_in_a_driver_error_is_masked(make_ws, helpers, mariadb_admin, monkeypatch):
    monkeypatch.setenv("ML_TEST_DB_NAME", "no_such_db_s3cret")
    ws = make_ws()
    url = "mysql+pymysql://root@127.0.0.1:3306/${ML_TEST_DB_NAME}"
    helpers.apply_text(ws, helpers.defs_yaml([{"name": "wh", "type": "sql", "url": url}]))
    with pytest.raises(SourceError) as err:
        ws.source("wh").test()
    assert "Unknown database '***'" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_a_missing_env_var_is_reported_at_apply(make_ws, helpers, monkeypatch):
    monkeypatch.delenv("ML_TEST_NOT_SET", raising=False)
    ws = make_ws()
    source = {"name": "wh", "type": "sql", "url": "postgresql+psycopg://u:${ML_TEST_NOT_SET}@127.0.0.1:5432/test"}
    metric = helpers.shop_metrics("wh")[0]
    with pytest.raises(DefinitionError, match="environment variable ML_TEST_NOT_SET is not set"):
        helpers.apply_text(ws, helpers.defs_yaml([source], [metric]))
    assert helpers.db_state(ws) == ([], [])


def test_duckdb_paths_can_use_env_vars(make_ws, helpers, data_files, orders_df, monkeypatch):
    monkeypatch.setenv("ML_TEST_DATA", str(data_files.root))
    ws = make_ws()
    views = {"orders": "${ML_TEST_DATA}/orders.parquet", "visitors": "${ML_TEST_DATA}/visitors.parquet"}
    source = {"name": "shop", "type": "duckdb", "tables": views}
    helpers.apply_text(ws, helpers.defs_yaml([source], helpers.shop_metrics()))
    assert_same_series(gmv_by_region(ws), reference_gmv(orders_df))


def test_server_tables_are_listed(server_ws):
    names = server_ws.source("shop").test()
    assert {"orders", "visitors"} <= set(names)


# ------------------------------------------------------------------ time columns that carry a time zone

# 23:30, 00:30 and 01:30 in Shanghai on the night of 1 to 2 January, stored as UTC instants
AWARE = pd.DataFrame(
    {"t": pd.to_datetime(["2024-01-01 15:30", "2024-01-01 16:30", "2024-01-01 17:30"]).tz_localize("UTC"),
     "v": [1, 2, 4]}
)  # fmt: skip


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def aware_source(request, tmp_path):
    """A source with a timestamptz column `t` in table `ev`."""
    if request.param == "duckdb":
        AWARE.to_parquet(tmp_path / "ev.parquet", index=False)
        return {"name": "s", "type": "duckdb", "tables": {"ev": str(tmp_path / "ev.parquet")}}
    schema = request.getfixturevalue("pg_schema")
    engine = request.getfixturevalue("pg_admin")
    AWARE.to_sql("ev", engine, schema=schema, index=False)
    return {"name": "s", "type": "sql", "url": request.getfixturevalue("server_urls")["postgres"], "schema": schema}


@pytest.mark.parametrize(
    ("timezone", "days"),
    [("Asia/Shanghai", {"2024-01-01": 1, "2024-01-02": 6}), ("UTC", {"2024-01-01": 7})],
)
def test_a_time_column_with_a_zone_is_bucketed_in_the_metric_zone(aware_source, make_ws, helpers, timezone, days):
    ws = make_ws()
    metric = {"name": "v", "title": {"en": "v"}, "owner": "a", "domain": "d", "source": "s", "table": "ev",
              "time_column": "t", "timezone": timezone, "measure": {"agg": "sum", "column": "v"}}  # fmt: skip
    helpers.apply_text(ws, helpers.defs_yaml([aware_source], [metric]))
    df = query_metric(ws, "v").df
    assert {f"{t:%Y-%m-%d}": v for t, v in zip(df["time"], df["value"], strict=True)} == days
    assert df["flag"].isna().all()
    # a window in local time selects local days
    last = max(days)
    one = query_metric(ws, "v", start=last, end=pd.Timestamp(last) + pd.Timedelta(days=1)).df
    assert one["value"].tolist() == [days[last]]
    hours = query_metric(ws, "v", grain="hour").df.dropna(subset=["value"])
    offset = pd.Timedelta(hours=8 if timezone == "Asia/Shanghai" else 0)
    assert list(hours["time"]) == list(AWARE["t"].dt.tz_localize(None).dt.floor("h") + offset)
