"""Real instances for the tests: state databases (SQLite, PostgreSQL), data files, workspaces.

Nothing of ours is mocked. The data set is small and deterministic, and the same frame is loaded into
every source (DuckDB over files, PostgreSQL, MariaDB), so a query on any of them can be checked
against a pandas computation on the frame itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from metricloop.definitions import service
from metricloop.metrics.validate import column_check, reference_check
from metricloop.settings import Settings
from metricloop.workspace import Workspace

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"

FIRST_DAY = date(2024, 1, 1)  # a Monday
DAYS = 60
REGIONS = ["East", "North", "South", "West"]
CHANNELS = ["app", "web", "store"]
CATEGORIES = ["Drinks", "Snacks", "Fresh"]
NORTH_GAP = date(2024, 2, 20)  # North has no orders at all on this day
WEB_OUTAGE = date(2024, 1, 20)  # no web orders on this day: web ratios have a zero denominator


# ------------------------------------------------------------------ the data set


def make_orders(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    order_id = 0
    for d in range(DAYS):
        day = FIRST_DAY + timedelta(days=d)
        for region in REGIONS:
            if region == "North" and day == NORTH_GAP:
                continue
            for _ in range(int(rng.integers(6, 14))):
                order_id += 1
                channel = str(rng.choice(CHANNELS, p=[0.5, 0.3, 0.2]))
                if day == WEB_OUTAGE and channel == "web":
                    channel = "app"
                seconds = int(rng.integers(0, 86400))
                rows.append(
                    {
                        "order_id": order_id,
                        "order_time": datetime(day.year, day.month, day.day) + timedelta(seconds=seconds),
                        "region": region,
                        "channel": channel,
                        "category": str(rng.choice(CATEGORIES)),
                        "customer_id": int(rng.integers(1, 150)),
                        "amount": round(float(rng.uniform(5, 300)), 2),
                        "quantity": int(rng.integers(1, 6)),
                        "status": str(rng.choice(["paid", "cancelled", "returned"], p=[0.85, 0.08, 0.07])),
                    }
                )
    df = pd.DataFrame(rows)
    df["order_time"] = df["order_time"].astype("datetime64[us]")
    return df


def make_visitors(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {"visit_date": FIRST_DAY + timedelta(days=d), "region": r, "visitors": int(rng.integers(200, 400))}
        for d in range(DAYS)
        for r in REGIONS
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def orders_df() -> pd.DataFrame:
    return make_orders()


@pytest.fixture(scope="session")
def visitors_df() -> pd.DataFrame:
    return make_visitors()


@dataclass
class DataFiles:
    root: Path
    orders_parquet: Path
    orders_glob: str
    orders_csv: Path
    orders_json: Path
    visitors_parquet: Path
    duckdb_file: Path


@pytest.fixture(scope="session")
def data_files(tmp_path_factory, orders_df, visitors_df) -> DataFiles:
    root = tmp_path_factory.mktemp("data")
    orders_df.to_parquet(root / "orders.parquet", index=False)
    parts = root / "orders_parts"
    parts.mkdir()
    third = len(orders_df) // 3 + 1
    for i in range(3):
        orders_df.iloc[i * third : (i + 1) * third].to_parquet(parts / f"part-{i}.parquet", index=False)
    orders_df.to_csv(root / "orders.csv", index=False)
    # ISO 8601 as most producers write it (DuckDB does not detect pandas' default "…T15:00:08.000")
    json_df = orders_df.assign(order_time=orders_df["order_time"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
    json_df.to_json(root / "orders.jsonl", orient="records", lines=True)
    visitors_df.to_parquet(root / "visitors.parquet", index=False)
    db_file = root / "shop.duckdb"
    con = duckdb.connect(str(db_file))
    con.register("orders_frame", orders_df)
    con.register("visitors_frame", visitors_df)
    con.execute("CREATE TABLE orders AS SELECT * FROM orders_frame")
    con.execute("CREATE TABLE visitors AS SELECT * FROM visitors_frame")
    con.close()
    return DataFiles(
        root=root,
        orders_parquet=root / "orders.parquet",
        orders_glob=str(parts / "*.parquet"),
        orders_csv=root / "orders.csv",
        orders_json=root / "orders.jsonl",
        visitors_parquet=root / "visitors.parquet",
        duckdb_file=db_file,
    )


# ------------------------------------------------------------------ definitions


def duckdb_source(files: DataFiles, name: str = "shop", orders: str | Path | None = None) -> dict:
    return {
        "name": name,
        "type": "duckdb",
        "owner": "data@example.com",
        "tables": {"orders": str(orders or files.orders_parquet), "visitors": str(files.visitors_parquet)},
    }


def shop_metrics(source: str = "shop") -> list[dict]:
    """The metrics every source is tested with: each aggregation, ratios, filters and a derived ratio."""
    dims = ["region", "channel", "category"]
    base = {"owner": "ana@example.com", "domain": "sales", "source": source, "table": "orders"}
    base |= {"time_column": "order_time", "timezone": "Asia/Shanghai"}

    def m(name: str, **kw) -> dict:
        return {"name": name, "title": {"en": name.replace("_", " "), "zh": name}, **base, **kw}

    not_cancelled = ["status <> 'cancelled'"]
    return [
        m("gmv", aliases=["sales", "销售额"], measure={"agg": "sum", "column": "amount"}, filters=not_cancelled,
          dimensions=dims,
          quality={"completeness_by": ["region"]}),
        m("orders", measure={"agg": "count"}, filters=not_cancelled, dimensions=dims, fill="zero"),
        m("customers", measure={"agg": "count_distinct", "column": "customer_id"}, dimensions=dims),
        m("avg_amount", measure={"agg": "avg", "column": "amount"}, dimensions=dims),
        m("min_amount", measure={"agg": "min", "column": "amount"}, dimensions=dims),
        m("max_amount", measure={"agg": "max", "column": "amount"}, dimensions=dims),
        m("paid_amount", measure={"agg": "sum", "column": "amount", "filter": "status = 'paid'"}, dimensions=dims),
        m("aov", ratio={"numerator": {"agg": "sum", "column": "amount"}, "denominator": {"agg": "count"}},
          filters=not_cancelled, dimensions=dims),
        m("web_return_rate", unit="%", good_direction="down", dimensions=["region", "category"],
          ratio={"numerator": {"agg": "count", "filter": "channel = 'web' AND status = 'returned'"},
                 "denominator": {"agg": "count", "filter": "channel = 'web'"}, "scale": 100}),
        {"name": "visitors", "title": {"en": "Visitors"}, "owner": "ana@example.com", "domain": "traffic",
         "source": source, "table": "visitors", "time_column": "visit_date", "timezone": "Asia/Shanghai",
         "measure": {"agg": "sum", "column": "visitors"}, "dimensions": ["region"]},
        {"name": "conversion_rate", "title": {"en": "Conversion rate"}, "owner": "ana@example.com",
         "domain": "traffic", "unit": "%", "dimensions": ["region"],
         "ratio": {"numerator": {"metric": "orders"}, "denominator": {"metric": "visitors"}, "scale": 100}},
    ]  # fmt: skip


def defs_yaml(sources: list[dict] | None = None, metrics: list[dict] | None = None) -> str:
    doc: dict = {}
    if sources:
        doc["sources"] = sources
    if metrics:
        doc["metrics"] = metrics
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def apply_text(ws: Workspace, text_: str, *, file: str = "defs.yaml", check: bool = True, author: str | None = None):
    """What `metricloop apply FILE` does: read, validate (references and columns), write all or nothing."""
    path = ws.defs_dir / file
    path.write_text(text_, encoding="utf-8")
    return apply_paths(ws, [path], check=check, author=author)


def apply_paths(ws: Workspace, paths: list[Path], *, check: bool = True, author: str | None = None):
    entries, problems = service.read_definitions(paths)
    checks = [reference_check, column_check(ws)] if check else [reference_check]
    with ws.db.session() as s:
        return service.apply(
            s, entries=entries, problems=problems, author=author or ws.settings.author, checks=checks
        )


def db_state(ws: Workspace) -> tuple[list, list]:
    """Every definition and version row, to show that a failed apply wrote nothing."""
    from metricloop.db.models import Definition, DefinitionVersion

    with ws.db.session() as s:
        defs = sorted((d.kind, d.name, d.version, repr(d.spec)) for d in s.query(Definition))
        versions = sorted((v.kind, v.name, v.version) for v in s.query(DefinitionVersion))
    return defs, versions


@pytest.fixture(scope="session")
def helpers():
    """Helper functions as a fixture, so test modules need not import conftest."""

    class H:
        pass

    h = H()
    for f in (duckdb_source, shop_metrics, defs_yaml, apply_text, apply_paths, db_state):
        setattr(h, f.__name__, staticmethod(f))
    return h


# ------------------------------------------------------------------ servers


def _reachable(url: str, what: str, start: str):
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        engine.dispose()
        pytest.fail(f"{what} is not reachable at {url} ({str(e).splitlines()[0]}); start it with `{start}`",
                    pytrace=False)  # fmt: skip
    return engine


@pytest.fixture(scope="session")
def pg_admin():
    engine = _reachable(PG_URL, "PostgreSQL", "make services")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def mariadb_admin():
    engine = _reachable(MARIADB_URL, "MariaDB", "make services")
    yield engine
    engine.dispose()


def fresh_name() -> str:
    return "ml_" + uuid.uuid4().hex[:12]


@pytest.fixture
def pg_schema(pg_admin):
    """A fresh PostgreSQL schema, dropped after the test."""
    name = fresh_name()
    with pg_admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    yield name
    with pg_admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))


def pg_url_for(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """The state database: SQLite in the workspace, or a fresh schema on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return pg_url_for(request.getfixturevalue("pg_schema"))


@pytest.fixture
def make_ws(tmp_path, monkeypatch):
    """Build workspaces (closed at the end of the test)."""
    monkeypatch.delenv("METRICLOOP_DB", raising=False)
    monkeypatch.delenv("METRICLOOP_HOME", raising=False)
    opened: list[Workspace] = []

    def make(db: str | None = None, name: str = "ws", user: str = "tester") -> Workspace:
        home = tmp_path / name
        ws = Workspace.init(home, Settings(home=home, db=db, user=user))
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


@pytest.fixture
def ws(db_url, make_ws) -> Workspace:
    """An empty workspace whose state lives in `db_url` (SQLite and PostgreSQL).

    db_url comes first so that it is torn down last: the workspace's connections close before the schema goes."""
    return make_ws(db_url)


@pytest.fixture
def shop_ws(make_ws, data_files) -> Workspace:
    """A workspace (SQLite state) with the shop source on DuckDB over Parquet and every shop metric applied."""
    ws = make_ws()
    apply_text(ws, defs_yaml([duckdb_source(data_files)], shop_metrics()))
    return ws


@pytest.fixture(scope="module")
def shared_shop_ws(tmp_path_factory, data_files):
    """Like shop_ws, shared by a module's read-only tests."""
    home = tmp_path_factory.mktemp("shop")
    ws = Workspace.init(home, Settings(home=home, db=f"sqlite:///{home / 'state.db'}", user="tester"))
    apply_text(ws, defs_yaml([duckdb_source(data_files)], shop_metrics()))
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def pg_shop(pg_admin, orders_df, visitors_df):
    """The shop data in a fresh PostgreSQL schema (read-only for tests); yields the schema name."""
    schema = fresh_name()
    with pg_admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    orders_df.to_sql("orders", pg_admin, schema=schema, index=False)
    visitors_df.to_sql("visitors", pg_admin, schema=schema, index=False)
    yield schema
    with pg_admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


@pytest.fixture(scope="session")
def mariadb_shop(mariadb_admin, orders_df, visitors_df):
    """The shop data in a fresh MariaDB database; yields its URL (no password: root on the test server)."""
    name = fresh_name()
    with mariadb_admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = MARIADB_URL.rsplit("/", 1)[0] + "/" + name
    engine = create_engine(url)
    try:
        orders_df.to_sql("orders", engine, index=False)
        visitors_df.to_sql("visitors", engine, index=False)
    finally:
        engine.dispose()
    yield url
    with mariadb_admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))


@pytest.fixture(scope="session")
def sqlite_shop(tmp_path_factory, orders_df, visitors_df):
    """The shop data in an SQLite file (timestamps stored as text, as pandas writes them)."""
    path = tmp_path_factory.mktemp("sqlite_shop") / "shop.db"
    engine = create_engine(f"sqlite:///{path}")
    orders_df.to_sql("orders", engine, index=False)
    visitors_df.to_sql("visitors", engine, index=False)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def server_urls():
    return {"postgres": PG_URL, "mariadb": MARIADB_URL}
