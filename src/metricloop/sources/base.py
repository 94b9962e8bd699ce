"""The Source protocol: run pushed-down SQL in the source's own dialect, list columns, test."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import pandas as pd
import sqlglot
from sqlglot import exp

from metricloop.definitions.durations import parse_duration
from metricloop.definitions.schemas import DuckDBSourceSpec, SQLSourceSpec
from metricloop.errors import SourceError


class SourceTimeout(SourceError):
    """A query ran longer than its source's statement_timeout and was cancelled."""

    status_code = 504


class Source(ABC):
    name: str
    dialect: str  # a sqlglot dialect name
    spec: DuckDBSourceSpec | SQLSourceSpec

    @property
    def timeout_seconds(self) -> float:
        """The source's statement_timeout: one query that runs longer is cancelled (SourceTimeout)."""
        return parse_duration(self.spec.statement_timeout).total_seconds()

    def _timed_out(self) -> SourceTimeout:
        return SourceTimeout(
            f"query cancelled after {self.spec.statement_timeout} (the source's statement_timeout): narrow the "
            "query (a shorter window, fewer dimensions, a coarser grain) or raise statement_timeout in the source "
            "definition",
            where=f"source '{self.name}'",
        )

    @abstractmethod
    def query(self, sql: str, *, timezone: str | None = None) -> pd.DataFrame:
        """Run one SELECT and return its rows. Raises SourceError with a clear, secret-free message.

        `timezone` (IANA name) is the session time zone for this query, where the database has one: columns with
        a time zone are then truncated and compared in the metric's zone, not the server's.
        """

    @abstractmethod
    def _describe(self, sql: str) -> list[str]:
        """Column names of a query's result, without fetching rows."""

    @abstractmethod
    def test(self) -> list[str]:
        """Connect and report what is there (tables). Raises SourceError when unreachable."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def relation(self, *, table: str | None = None, sql: str | None = None) -> exp.Expression:
        if table is not None:
            return exp.to_table(table, dialect=self.dialect)
        return exp.Subquery(
            this=sqlglot.parse_one(sql, read=self.dialect), alias=exp.TableAlias(this=exp.to_identifier("src"))
        )

    def columns(self, *, table: str | None = None, sql: str | None = None) -> list[str]:
        probe = exp.select(exp.Star()).from_(self.relation(table=table, sql=sql)).limit(0)
        return self._describe(probe.sql(dialect=self.dialect))


def open_source(spec: DuckDBSourceSpec | SQLSourceSpec, *, base_dir: Path) -> Source:
    if spec.type == "duckdb":
        from metricloop.sources.duckdb import DuckDBSource

        return DuckDBSource(spec, base_dir=base_dir)
    from metricloop.sources.sql import SQLSource

    return SQLSource(spec)
