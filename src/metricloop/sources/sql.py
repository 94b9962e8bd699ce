"""Any SQLAlchemy URL. Metric SQL is compiled in the database's own dialect and pushed down."""

from __future__ import annotations

import threading

import pandas as pd
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from metricloop.definitions.schemas import SQLSourceSpec
from metricloop.errors import SourceError
from metricloop.sources.base import Source
from metricloop.sources.secrets import expand_url, mask

# SQLAlchemy backend name → sqlglot dialect
DIALECTS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "mssql": "tsql",
    "oracle": "oracle",
    "clickhouse": "clickhouse",
    "clickhousedb": "clickhouse",
    "trino": "trino",
    "presto": "presto",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "redshift": "redshift",
    "databricks": "databricks",
    "hive": "hive",
    "duckdb": "duckdb",
}


def _first_line(e: Exception) -> str:
    text = str(getattr(e, "orig", None) or e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


class SQLSource(Source):
    def __init__(self, spec: SQLSourceSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self._engine: Engine | None = None
        self._secrets: list[str] = []
        self._mariadb: bool | None = None  # a mysql URL may reach MariaDB or MySQL: their time limits differ
        self._fired: set[int] = set()  # connections interrupted by their statement_timeout timer
        backend = make_url(spec.url.replace("${", "x").replace("}", "")).get_backend_name()
        self.dialect = DIALECTS.get(backend, backend)

    def _where(self) -> str:
        return f"source '{self.name}'"

    def _error(self, what: str, e: Exception) -> SourceError:
        return SourceError(mask(f"{what}: {_first_line(e)}", self._secrets), where=self._where())

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            try:
                parsed, self._secrets = expand_url(self.spec.url, where=self._where() + " url")
                self._secrets += [parsed.password] if parsed.password else []
                args: dict = {}
                if parsed.get_backend_name() == "postgresql":
                    args["connect_timeout"] = 10
                    if self.spec.db_schema:
                        args["options"] = f"-csearch_path={self.spec.db_schema}"
                elif parsed.get_backend_name() in ("mysql", "mariadb"):
                    args["connect_timeout"] = 10
                self._engine = create_engine(parsed, pool_pre_ping=True, connect_args=args)
            except (ArgumentError, NoSuchModuleError, ImportError) as e:
                raise self._error("bad URL or missing driver", e) from None
        return self._engine

    def _limit_time(self, raw, cur) -> threading.Timer | None:
        """Bound the next statement by the source's statement_timeout: on the server where the database has a
        setting for it (PostgreSQL, MariaDB, MySQL), else by interrupting the connection from a timer (SQLite)."""
        seconds = self.timeout_seconds
        if self.dialect == "postgres":
            # local to this transaction, which ends (rolled back) when the connection goes back to the pool
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(seconds * 1000)}ms",))
        elif self.dialect == "mysql":
            if self._mariadb is None:
                cur.execute("SELECT VERSION()")
                self._mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
            if self._mariadb:
                cur.execute("SET SESSION max_statement_time = %s", (seconds,))
            else:
                cur.execute("SET SESSION max_execution_time = %s", (int(seconds * 1000),))
        elif hasattr(raw.driver_connection, "interrupt"):  # sqlite3: interrupt() is safe from another thread
            timer = threading.Timer(seconds, self._interrupt, (raw.driver_connection,))
            timer.daemon = True
            timer.start()
            return timer
        return None

    def _interrupt(self, connection) -> None:
        self._fired.add(id(connection))
        connection.interrupt()

    def _is_timeout(self, e: Exception, raw) -> bool:
        orig = getattr(e, "orig", None) or e
        if getattr(orig, "sqlstate", None) == "57014":  # PostgreSQL query_canceled
            return True
        code = orig.args[0] if getattr(orig, "args", None) else None
        if code in (1969, 3024):  # MariaDB max_statement_time, MySQL max_execution_time exceeded
            return True
        return id(raw.driver_connection) in self._fired

    def _execute(self, sql: str, *, fetch: bool, timezone: str | None = None) -> tuple[list[str], list[tuple]]:
        try:
            raw = self.engine.raw_connection()
        except Exception as e:  # the pool raises the driver's own error here, not SQLAlchemy's
            raise self._error("cannot connect", e) from None
        timer = None
        try:
            cur = raw.cursor()
            if timezone and self.dialect == "postgres":
                # local to this transaction, which ends (rolled back) when the connection goes back to the pool
                cur.execute("SELECT set_config('TimeZone', %s, true)", (timezone,))
            timer = self._limit_time(raw, cur)
            cur.execute(sql)
            names = [d[0] for d in cur.description or []]
            rows = cur.fetchall() if fetch else []
            cur.close()
            return names, rows
        except Exception as e:  # driver errors differ per database
            if self._is_timeout(e, raw):
                raise self._timed_out() from None
            raise self._error("query failed", e) from None
        finally:
            if timer is not None:
                timer.cancel()
            self._fired.discard(id(raw.driver_connection))
            raw.close()

    def query(self, sql: str, *, timezone: str | None = None) -> pd.DataFrame:
        names, rows = self._execute(sql, fetch=True, timezone=timezone)
        return pd.DataFrame.from_records(rows, columns=names)

    def _describe(self, sql: str) -> list[str]:
        return self._execute(sql, fetch=False)[0]

    def test(self) -> list[str]:
        try:
            with self.engine.connect() as conn:
                return sorted(inspect(conn).get_table_names(schema=self.spec.db_schema))
        except SQLAlchemyError as e:
            raise self._error("cannot connect", e) from None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
