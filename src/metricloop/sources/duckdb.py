"""Embedded DuckDB: views over CSV, Parquet and JSON files (globs too), or a .duckdb file."""

from __future__ import annotations

import glob
import threading
from pathlib import Path

import duckdb
import pandas as pd
from sqlglot import exp

from metricloop.definitions.schemas import DuckDBSourceSpec
from metricloop.errors import SourceError
from metricloop.sources.base import Source
from metricloop.sources.secrets import expand, mask

READERS = {
    ".parquet": "read_parquet",
    ".csv": "read_csv_auto",
    ".tsv": "read_csv_auto",
    ".json": "read_json_auto",
    ".jsonl": "read_json_auto",
    ".ndjson": "read_json_auto",
}


def _reader(pattern: str) -> str:
    p = pattern.lower().removesuffix(".gz")  # DuckDB reads gzip itself; the type is the extension before .gz
    for ext, fn in READERS.items():
        if p.endswith(ext):
            return fn
    raise SourceError(f"cannot tell the file type of '{pattern}' (use .parquet, .csv, .tsv, .json or .jsonl)")


class DuckDBSource(Source):
    dialect = "duckdb"

    def __init__(self, spec: DuckDBSourceSpec, *, base_dir: Path) -> None:
        self.name = spec.name
        self.spec = spec
        self.base_dir = base_dir
        self._secrets: list[str] = []
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def _where(self, extra: str = "") -> str:
        return f"source '{self.name}'" + (f", {extra}" if extra else "")

    def _resolve(self, value: str, what: str) -> str:
        expanded, secrets = expand(value, where=self._where(what))
        self._secrets += secrets
        path = Path(expanded)
        return str(path if path.is_absolute() else (self.base_dir / path))

    def _connect(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._conn is not None:
                return self._conn
            config = {"autoinstall_known_extensions": "false"}
            # One in-memory database holds every view, so each per-query cursor sees them all.
            conn = duckdb.connect(":memory:", config=config)
            if self.spec.path:
                db_path = self._resolve(self.spec.path, "path")
                if not Path(db_path).exists():
                    conn.close()
                    raise SourceError(f"database file {db_path} does not exist", where=self._where("path"))
                try:
                    conn.execute(f"ATTACH {exp.Literal.string(db_path).sql('duckdb')} AS src (READ_ONLY)")
                    names = conn.execute(
                        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'src' AND schema_name = 'main' "
                        "UNION SELECT view_name FROM duckdb_views() WHERE database_name = 'src' "
                        "AND schema_name = 'main' AND NOT internal"
                    ).fetchall()
                    for (name,) in names:
                        source = exp.select(exp.Star()).from_(exp.table_(name, db="main", catalog="src", quoted=True))
                        conn.execute(
                            exp.Create(
                                this=exp.to_table(name, quoted=True), kind="VIEW", expression=source, replace=True
                            ).sql(dialect="duckdb")
                        )
                except duckdb.Error as e:
                    conn.close()
                    raise SourceError(f"cannot open {db_path}: {e}", where=self._where("path")) from None
            for view, pattern in self.spec.tables.items():
                full = self._resolve(pattern, f"tables.{view}")
                if not glob.glob(full, recursive=True):
                    conn.close()
                    raise SourceError(f"no file matches {full}", where=self._where(f"tables.{view}"))
                reader = exp.Anonymous(this=_reader(full), expressions=[exp.Literal.string(full)])
                if reader.name == "read_parquet":
                    reader.append("expressions", exp.EQ(this=exp.column("union_by_name"), expression=exp.true()))
                select = exp.select(exp.Star()).from_(reader)
                ddl = exp.Create(this=exp.to_table(view), kind="VIEW", expression=select, replace=True)
                try:
                    conn.execute(ddl.sql(dialect="duckdb"))
                except duckdb.Error as e:
                    conn.close()
                    raise SourceError(
                        mask(f"cannot read {full}: {e}", self._secrets), where=self._where(f"tables.{view}")
                    ) from None
            self._conn = conn
            return conn

    @staticmethod
    def _mirror(conn: duckdb.DuckDBPyConnection, db_path: str) -> None:
        """Attach a .duckdb file read-only and give each of its tables a view of the same name in memory.

        A read-only file cannot hold the views over files, and cursors do not inherit a search_path, so the
        file's tables are made visible by name (schema.table too) next to the file views.
        """
        attach = exp.Attach(
            this=exp.alias_(exp.Literal.string(db_path), "attached"),
            expressions=[exp.AttachOption(this=exp.var("READ_ONLY"))],
        )
        conn.execute(attach.sql(dialect="duckdb"))
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = 'attached'"
        ).fetchall()
        for schema, table in rows:
            conn.execute(exp.Create(this=exp.to_identifier(schema), kind="SCHEMA", exists=True).sql(dialect="duckdb"))
            target = exp.Table(this=exp.to_identifier(table), db=exp.to_identifier(schema))
            source = exp.Table(
                this=exp.to_identifier(table), db=exp.to_identifier(schema), catalog=exp.to_identifier("attached")
            )
            view = exp.Create(this=target, kind="VIEW", expression=exp.select(exp.Star()).from_(source))
            conn.execute(view.sql(dialect="duckdb"))

    def _run(self, sql: str, fetch, timezone: str | None = None):
        """Run `sql` on a cursor of its own and `fetch` its result, interrupted after the statement_timeout."""
        cur = self._connect().cursor()  # a cursor per call: DuckDB connections are not thread-safe
        fired = threading.Event()

        def interrupt() -> None:
            fired.set()
            cur.interrupt()

        timer = threading.Timer(self.timeout_seconds, interrupt)
        timer.daemon = True
        timer.start()
        try:
            if timezone:  # a setting of this cursor only
                cur.execute(f"SET TimeZone = {exp.Literal.string(timezone).sql(dialect='duckdb')}")
            return fetch(cur.execute(sql))
        except duckdb.Error as e:
            if fired.is_set() or isinstance(e, duckdb.InterruptException):
                raise self._timed_out() from None
            raise SourceError(mask(f"query failed: {e}", self._secrets), where=self._where()) from None
        finally:
            timer.cancel()
            cur.close()

    def query(self, sql: str, *, timezone: str | None = None) -> pd.DataFrame:
        return self._run(sql, lambda rel: rel.df(), timezone)

    def _describe(self, sql: str) -> list[str]:
        return self._run(sql, lambda rel: [d[0] for d in rel.description])

    def test(self) -> list[str]:
        # DISTINCT: a .duckdb file's tables are listed under its attached catalog and again as views
        return self._run(
            "SELECT DISTINCT table_name FROM information_schema.tables ORDER BY 1",
            lambda rel: [r[0] for r in rel.fetchall()],
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
