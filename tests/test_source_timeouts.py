"""Every source query is bounded by the source's statement_timeout, for real on each database."""

from __future__ import annotations

import time

import pytest

from metricloop.definitions.schemas import DuckDBSourceSpec, SQLSourceSpec
from metricloop.limits import DEFAULT_STATEMENT_TIMEOUT
from metricloop.sources.base import SourceTimeout
from metricloop.sources.duckdb import DuckDBSource
from metricloop.sources.sql import SQLSource


def sql_source(url: str, timeout: str = "1s") -> SQLSource:
    return SQLSource(SQLSourceSpec(name="slow", type="sql", url=url, statement_timeout=timeout))


def assert_cancelled(source, sql: str, *, within: float = 15.0) -> None:
    t0 = time.monotonic()
    with pytest.raises(SourceTimeout) as e:
        source.query(sql)
    assert time.monotonic() - t0 < within  # the query would run far longer
    assert e.value.where == "source 'slow'"
    assert "cancelled after 1s (the source's statement_timeout)" in e.value.message
    assert e.value.status_code == 504
    # the connection is usable afterwards: the limit does not leak into the next query
    assert source.query("SELECT 1 AS one")["one"].tolist() == [1]


@pytest.mark.postgres
def test_postgres_cancels_pg_sleep(pg_admin):
    source = sql_source(pg_admin.url.render_as_string(hide_password=False))
    try:
        assert_cancelled(source, "SELECT pg_sleep(30)")
    finally:
        source.close()


@pytest.mark.mariadb
def test_mariadb_cancels_sleep(mariadb_admin):
    source = sql_source(mariadb_admin.url.render_as_string(hide_password=False))
    try:
        assert_cancelled(source, "SELECT SLEEP(30) AS s FROM (SELECT 1) t")
    finally:
        source.close()


def test_sqlite_is_interrupted(tmp_path):
    source = sql_source(f"sqlite:///{tmp_path / 'x.db'}")
    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000000) "
        "SELECT count(*) AS c FROM n"
    )
    try:
        assert_cancelled(source, slow)
    finally:
        source.close()


def test_duckdb_is_interrupted(tmp_path):
    (tmp_path / "t.csv").write_text("a\n1\n")
    spec = DuckDBSourceSpec(name="slow", type="duckdb", tables={"t": "t.csv"}, statement_timeout="1s")
    source = DuckDBSource(spec, base_dir=tmp_path)
    try:
        assert_cancelled(source, "SELECT sum(i * j) AS s FROM range(100000) a(i), range(100000) b(j)")
    finally:
        source.close()


def test_a_fast_query_is_not_touched_and_the_default_is_sane(tmp_path):
    source = sql_source(f"sqlite:///{tmp_path / 'x.db'}", timeout=DEFAULT_STATEMENT_TIMEOUT)
    assert source.timeout_seconds == 60
    assert source.query("SELECT 2 AS two")["two"].tolist() == [2]
    source.close()


@pytest.mark.parametrize("bad", ["0s", "2d", "soon"])
def test_a_bad_statement_timeout_is_refused(bad):
    with pytest.raises(ValueError, match="statement_timeout"):
        SQLSourceSpec(name="s", type="sql", url="sqlite://", statement_timeout=bad)
