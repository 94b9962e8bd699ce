"""Query a metric into a long-form series: time, dimensions, value, row_count (+ numerator, denominator), flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd
import sqlglot
from sqlglot import exp

from metricloop.definitions.kinds import Catalog
from metricloop.definitions.schemas import GRAINS, MetricSpec
from metricloop.errors import MetricloopError, QueryError
from metricloop.grains import canonical_grain
from metricloop.limits import LimitExceeded
from metricloop.metrics.compile import aggregate_query
from metricloop.metrics.timeutil import buckets, parse_time

NULL_VALUE = "(null)"
# The shortest length of each grain: a conservative count of the buckets in a window, without building them.
GRAIN_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 28 * 86400}
NARROW = (
    "narrow the query: a shorter from/to window, a coarser grain, fewer dimensions in `by`, or `where` filters"
)


class SeriesTooLarge(LimitExceeded):
    """A series query that would return more rows than the caller allows (API: METRICLOOP_SERIES_MAX_ROWS)."""


def _too_many(max_rows: int, what: str) -> SeriesTooLarge:
    return SeriesTooLarge(f"the series would have more than {max_rows:,} rows ({what}); {NARROW}", where="series")


def _bucket_count(first, last, grain: str) -> int:
    """About how many buckets [first, last] holds at `grain` (never fewer than the real count, for months)."""
    span = (pd.Timestamp(last) - pd.Timestamp(first)).total_seconds()
    return max(int(span // GRAIN_SECONDS[grain]) + 1, 0)


@dataclass
class MetricFrame:
    metric: MetricSpec
    by: list[str]
    grain: str
    start: datetime | None
    end: datetime | None
    df: pd.DataFrame
    sql: list[str] = field(default_factory=list)

    @property
    def value_columns(self) -> list[str]:
        return ["value", "row_count"] + (["numerator", "denominator"] if self.metric.is_ratio else [])


def parse_where(items: list[str] | dict | None, metric: MetricSpec) -> dict[str, list[str]]:
    """`region=East`, `region=East|North` → {region: [East, North]}; only declared dimensions allowed."""
    if not items:
        return {}
    if isinstance(items, dict):
        pairs = [(k, v if isinstance(v, list) else [v]) for k, v in items.items()]
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise QueryError(f"'{item}' is not DIM=VALUE", where="where")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), [x for x in v.split("|")]))
    out: dict[str, list[str]] = {}
    for k, values in pairs:
        check_dimensions(metric, [k], what="where")
        out.setdefault(k, []).extend(str(v) for v in values)
    return out


def check_dimensions(metric: MetricSpec, dims: list[str], *, what: str) -> None:
    for d in dims:
        if d not in metric.dimensions:
            allowed = ", ".join(metric.dimensions) or "none"
            raise QueryError(f"metric '{metric.name}' cannot be sliced by '{d}' (allowed: {allowed})", where=what)


# Dialects whose GROUP BY GROUPING SETS and GROUPING() we rely on: one scan for many combinations.
GROUPING_SETS_DIALECTS = {
    "duckdb",
    "postgres",
    "trino",
    "presto",
    "snowflake",
    "bigquery",
    "tsql",
    "oracle",
    "databricks",
    "spark",
}


def _run_groups(
    ws,
    catalog: Catalog,
    metric: MetricSpec,
    groups: list[list[str]],
    grain,
    start,
    end,
    where,
    sqls: list[str],
    max_rows: int | None = None,
) -> dict[tuple[str, ...], pd.DataFrame]:
    """Aggregate one metric at the source for each group of dimensions. Derived ratios aggregate both metrics
    and join them here. With `max_rows`, the source returns at most one row more than that, and more than
    `max_rows` is refused (SeriesTooLarge)."""
    if metric.derived:
        sides = {
            side: _run_groups(
                ws,
                catalog,
                catalog.metric(getattr(metric.ratio, side).metric),
                groups,
                grain,
                start,
                end,
                where,
                sqls,
                max_rows,
            )
            for side in ("numerator", "denominator")
        }
        out = {}
        for key in sides["numerator"]:
            keys = ["time", *key]
            num = sides["numerator"][key][[*keys, "value"]].rename(columns={"value": "numerator"})
            den = sides["denominator"][key][[*keys, "value", "row_count"]].rename(columns={"value": "denominator"})
            df = num.merge(den, on=keys, how="outer")
            # A side with no rows in a bucket is 0 where that metric zero-fills (no orders = 0 orders), else unknown.
            for side in ("numerator", "denominator"):
                if catalog.metric(getattr(metric.ratio, side).metric).fill == "zero":
                    df[side] = pd.to_numeric(df[side], errors="coerce").fillna(0.0)
            out[key] = df
        return out
    source = ws.source(metric.source, catalog)
    relation = source.relation(table=metric.table, sql=metric.sql)

    def fetch(sql: str) -> pd.DataFrame:
        sqls.append(sql)
        if max_rows is not None:  # the source stops at max_rows + 1: enough to know it is too many
            inner = exp.Subquery(
                this=sqlglot.parse_one(sql, read=source.dialect), alias=exp.TableAlias(this=exp.to_identifier("q"))
            )
            sql = exp.select(exp.Star()).from_(inner).limit(max_rows + 1).sql(dialect=source.dialect)
        df = source.query(sql, timezone=metric.timezone)
        if max_rows is not None and len(df) > max_rows:
            raise _too_many(max_rows, f"the source returned more than {max_rows:,} aggregated rows")
        df["time"] = pd.to_datetime(df["time"])
        if getattr(df["time"].dt, "tz", None) is not None:
            df["time"] = df["time"].dt.tz_convert(metric.timezone).dt.tz_localize(None)
        return df

    if len(groups) > 1 and source.dialect in GROUPING_SETS_DIALECTS:
        union = list(dict.fromkeys(d for g in groups for d in g))
        df = fetch(
            aggregate_query(
                metric,
                relation,
                source.dialect,
                by=union,
                grain=grain,
                start=start,
                end=end,
                where=where,
                grouping_sets=groups,
            )
        )
        flags = df[[f"__g_{d}" for d in union]].to_numpy(dtype=np.int64) if union else np.zeros((len(df), 0))
        out = {}
        for group in groups:
            want = np.array([0 if d in group else 1 for d in union], dtype=np.int64)
            rows = (flags == want).all(axis=1) if union else np.ones(len(df), bool)
            part = df.loc[
                rows,
                ["time", *group] + [c for c in df.columns if c not in ("time", *union) and not c.startswith("__g_")],
            ]
            out[tuple(group)] = part.reset_index(drop=True)
        return out
    return {
        tuple(group): fetch(
            aggregate_query(metric, relation, source.dialect, by=group, grain=grain, start=start, end=end, where=where)
        )
        for group in groups
    }


def _fill(
    df: pd.DataFrame, metric: MetricSpec, by: list[str], grain: str, start, end, max_rows: int | None = None
) -> pd.DataFrame:
    if df.empty and (start is None or end is None):
        return df
    first = start if start is not None else df["time"].min()
    last = end if end is not None else df["time"].max()
    combos = df[by].drop_duplicates().reset_index(drop=True) if by else None
    if max_rows is not None:
        n_buckets = _bucket_count(first, last, grain)
        n_slices = len(combos) if combos is not None else 1
        if n_buckets * n_slices > max_rows:
            raise _too_many(max_rows, f"{n_slices:,} slices × about {n_buckets:,} {grain} buckets")
    times = buckets(first, end, grain, last=None if end is not None else df["time"].max())
    if by:
        if combos.empty:
            return df
        grid = combos.loc[np.repeat(combos.index.to_numpy(), len(times))].reset_index(drop=True)
        grid.insert(0, "time", np.tile(times.to_numpy(), len(combos)))
    else:
        grid = pd.DataFrame({"time": times})
    out = grid.merge(df, on=["time", *by], how="left")
    missing = out["row_count"].isna()
    out["row_count"] = out["row_count"].fillna(0)
    out.loc[missing, "flag"] = "missing"
    if metric.fill == "zero":
        for c in ("value", "numerator", "denominator"):
            if c in out:
                out[c] = out[c].fillna(0.0)
        out.loc[missing, "flag"] = "zero_filled"
    return out


def _prepare(catalog: Catalog, name: str, dims: list[str], grain, start, end, where):
    metric = catalog.metric(name)
    check_dimensions(metric, dims, what="by")
    grain = grain or metric.grain
    try:
        grain = canonical_grain(grain)
    except MetricloopError:
        raise QueryError(f"grain must be one of {', '.join(GRAINS)} or a step such as 5min, 15min, 2h, "
                         f"not '{grain}'", where="grain") from None
    t0 = parse_time(start, metric.timezone, what="from")
    t1 = parse_time(end, metric.timezone, what="to")
    if t0 and t1 and t0 >= t1:
        raise QueryError(f"the window is empty: from {t0} is not before to {t1}", where="from/to")
    return metric, grain, t0, t1, parse_where(where, metric)


def _finish(
    df: pd.DataFrame, metric: MetricSpec, by: list[str], grain: str, t0, t1, fill_missing: bool, max_rows=None
):
    """Values of ratios, flags, explicit missing buckets, and the long-form column order."""
    for d in by:
        df[d] = df[d].astype(object).where(df[d].notna(), NULL_VALUE).astype(str)
    df["flag"] = pd.Series([None] * len(df), dtype=object, index=df.index)
    if metric.is_ratio:
        num = pd.to_numeric(df["numerator"], errors="coerce").astype(float)
        den = pd.to_numeric(df["denominator"], errors="coerce").astype(float)
        df["numerator"], df["denominator"] = num, den
        zero = den == 0
        df["value"] = (num / den.where(~zero)) * metric.ratio.scale
        df.loc[zero, "flag"] = "zero_denominator"
        df.loc[~zero & (num.isna() | den.isna()), "flag"] = "missing"  # a side has no value in this bucket
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    df["row_count"] = pd.to_numeric(df["row_count"], errors="coerce").fillna(0)
    if fill_missing:
        df = _fill(df, metric, by, grain, t0, t1, max_rows)
    if max_rows is not None and len(df) > max_rows:
        raise _too_many(max_rows, f"{len(df):,}")
    df["row_count"] = df["row_count"].astype("int64")
    cols = ["time", *by, "value", "row_count"] + (["numerator", "denominator"] if metric.is_ratio else []) + ["flag"]
    return df[cols].sort_values(["time", *by], kind="stable").reset_index(drop=True)


def query_metric(
    ws,
    name: str,
    *,
    by: list[str] | tuple[str, ...] = (),
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    grain: str | None = None,
    where: list[str] | dict | None = None,
    fill_missing: bool = True,
    catalog: Catalog | None = None,
    max_rows: int | None = None,
) -> MetricFrame:
    """The metric's series. `max_rows` bounds what one call may cost (the API passes METRICLOOP_SERIES_MAX_ROWS):
    a window with more buckets is refused before the source is asked, the source returns at most one row more,
    and filling missing buckets never builds more: each refusal is a SeriesTooLarge saying how to narrow it."""
    catalog = catalog or ws.catalog()
    by = list(dict.fromkeys(by))
    metric, grain, t0, t1, where_map = _prepare(catalog, name, by, grain, start, end, where)
    if max_rows is not None and t0 is not None and t1 is not None:
        n_buckets = _bucket_count(t0, t1 - pd.Timedelta(microseconds=1), grain)
        if n_buckets > max_rows:
            raise _too_many(max_rows, f"about {n_buckets:,} {grain} buckets from {t0} to {t1}")
    sqls: list[str] = []
    df = _run_groups(ws, catalog, metric, [by], grain, t0, t1, where_map, sqls, max_rows)[tuple(by)]
    df = _finish(df, metric, by, grain, t0, t1, fill_missing, max_rows)
    return MetricFrame(metric=metric, by=by, grain=grain, start=t0, end=t1, df=df, sql=sqls)


def query_groups(
    ws,
    name: str,
    *,
    groups: list[list[str]],
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    grain: str | None = None,
    where: list[str] | dict | None = None,
    fill_missing: bool = True,
    catalog: Catalog | None = None,
) -> dict[tuple[str, ...], MetricFrame]:
    """Like query_metric for several groupings at once: one scan where the source supports GROUPING SETS."""
    catalog = catalog or ws.catalog()
    groups = [list(dict.fromkeys(g)) for g in groups]
    metric, grain, t0, t1, where_map = _prepare(catalog, name, [d for g in groups for d in g], grain, start, end, where)
    sqls: list[str] = []
    raw = _run_groups(ws, catalog, metric, groups, grain, t0, t1, where_map, sqls)
    return {
        key: MetricFrame(
            metric=metric,
            by=list(key),
            grain=grain,
            start=t0,
            end=t1,
            df=_finish(df, metric, list(key), grain, t0, t1, fill_missing),
            sql=sqls,
        )
        for key, df in raw.items()
    }
