"""Build a metric's SQL with sqlglot, in the source's dialect. Values are literals, never spliced text."""

from __future__ import annotations

from datetime import datetime

import sqlglot
from sqlglot import exp

from metricloop.definitions.schemas import Measure, MetricSpec
from metricloop.grains import grain_step

# Dialects where sqlglot's DATE_TRUNC rendering is missing or wrong get explicit templates.
_BUCKETS = {
    "mysql": {
        "minute": "CAST(DATE_FORMAT(__t__, '%Y-%m-%d %H:%i:00') AS DATETIME)",
        "hour": "CAST(DATE_FORMAT(__t__, '%Y-%m-%d %H:00:00') AS DATETIME)",
        "day": "CAST(DATE(__t__) AS DATETIME)",
        "week": "CAST(DATE_SUB(DATE(__t__), INTERVAL WEEKDAY(__t__) DAY) AS DATETIME)",
        "month": "CAST(DATE_FORMAT(__t__, '%Y-%m-01') AS DATETIME)",
    },
    "sqlite": {
        "minute": "STRFTIME('%Y-%m-%d %H:%M:00', __t__)",
        "hour": "STRFTIME('%Y-%m-%d %H:00:00', __t__)",
        "day": "STRFTIME('%Y-%m-%d 00:00:00', __t__)",
        "week": "STRFTIME('%Y-%m-%d 00:00:00', __t__, 'weekday 0', '-6 days')",
        "month": "STRFTIME('%Y-%m-01 00:00:00', __t__)",
    },
}


# a step grain (5min, 2h): the time truncated to its hour (day), plus the minutes (hours) past it
# rounded down to a multiple of the step. __n__ is the step count, __u__ the unit of the remainder.
_STEP_BUCKETS = {
    "mysql": {
        "minute": "DATE_ADD(CAST(DATE_FORMAT(__t__, '%Y-%m-%d %H:00:00') AS DATETIME), "
                  "INTERVAL FLOOR(MINUTE(__t__) / __n__) * __n__ MINUTE)",
        "hour": "DATE_ADD(CAST(DATE(__t__) AS DATETIME), INTERVAL FLOOR(HOUR(__t__) / __n__) * __n__ HOUR)",
    },
    "sqlite": {
        "minute": "DATETIME(STRFTIME('%Y-%m-%d %H:00:00', __t__), '+' || "
                  "((CAST(STRFTIME('%M', __t__) AS INTEGER) / __n__) * __n__) || ' minutes')",
        "hour": "DATETIME(STRFTIME('%Y-%m-%d 00:00:00', __t__), '+' || "
                "((CAST(STRFTIME('%H', __t__) AS INTEGER) / __n__) * __n__) || ' hours')",
    },
    # PostgreSQL, DuckDB and the rest: DATE_TRUNC plus a whole number of minutes (hours) as an interval
    # (the column cast to TIMESTAMP first: a DATE has no minutes, and PostgreSQL truncates it as a timestamptz)
    "": {
        "minute": "CAST(DATE_TRUNC('hour', CAST(__t__ AS TIMESTAMP)) + CAST(FLOOR(EXTRACT(MINUTE FROM "
                  "CAST(__t__ AS TIMESTAMP)) / __n__) * __n__ AS INT) * INTERVAL '1 minute' AS TIMESTAMP)",
        "hour": "CAST(DATE_TRUNC('day', CAST(__t__ AS TIMESTAMP)) + CAST(FLOOR(EXTRACT(HOUR FROM "
                "CAST(__t__ AS TIMESTAMP)) / __n__) * __n__ AS INT) * INTERVAL '1 hour' AS TIMESTAMP)",
    },
}


def col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def bucket(time_col: str, grain: str, dialect: str) -> exp.Expression:
    column = col(time_col)
    count, unit = grain_step(grain)
    if count > 1:
        text = _STEP_BUCKETS.get(dialect, _STEP_BUCKETS[""])[unit].replace("__n__", str(count))
        read = dialect if dialect in _STEP_BUCKETS else "postgres"
        parsed = sqlglot.parse_one(text, read=read)
        return parsed.transform(lambda n: column.copy() if isinstance(n, exp.Column) and n.name == "__t__" else n)
    grain = unit
    template = _BUCKETS.get(dialect, {}).get(grain)
    if template is None:
        trunc = exp.TimestampTrunc(this=column, unit=exp.Var(this=grain.upper()))
        if dialect == "postgres":
            # PostgreSQL truncates a DATE as a timestamptz in the session's zone; cast back to local time.
            return exp.cast(trunc, exp.DataType.build("timestamp"))
        return trunc
    parsed = sqlglot.parse_one(template, read=dialect)
    return parsed.transform(lambda n: column.copy() if isinstance(n, exp.Column) and n.name == "__t__" else n)


def time_literal(value: datetime, dialect: str) -> exp.Expression:
    text = exp.Literal.string(value.strftime("%Y-%m-%d %H:%M:%S"))
    if dialect == "sqlite":  # SQLite stores timestamps as text; CAST would make them numbers
        return text
    return exp.cast(text, exp.DataType.build("timestamp"))


def condition(sql: str) -> exp.Expression:
    """A filter from the definition, written in portable SQL, re-rendered for each dialect."""
    return sqlglot.parse_one(sql)


def measure_sql(m: Measure) -> exp.Expression:
    target: exp.Expression = col(m.column) if m.column else exp.Literal.number(1)
    if m.filter:
        target = exp.Case(ifs=[exp.If(this=condition(m.filter), true=target)])
        if m.agg == "count" and not m.column:
            target.set("default", exp.Literal.number(0))
            return exp.Sum(this=target)
        if m.agg == "sum":  # rows that match nothing add 0: a sum over no matching rows is 0, not null
            target.set("default", exp.Literal.number(0))
    if m.agg == "count":
        return exp.Count(this=target if (m.column or m.filter) else exp.Star())
    if m.agg == "count_distinct":
        return exp.Count(this=exp.Distinct(expressions=[target]))
    cls = {"sum": exp.Sum, "avg": exp.Avg, "min": exp.Min, "max": exp.Max}[m.agg]
    return cls(this=target)


def where_clause(
    metric: MetricSpec,
    dialect: str,
    *,
    start: datetime | None,
    end: datetime | None,
    where: dict[str, list[str]] | None,
) -> list[exp.Expression]:
    conds: list[exp.Expression] = []
    t: exp.Expression = col(metric.time_column)
    if dialect == "sqlite":
        # SQLite keeps times as text: '2024-01-08' sorts before '2024-01-08 00:00:00', and 'T' after ' '.
        # DATETIME() gives every stored form the literal's form, so the window compares like times.
        t = exp.Anonymous(this="DATETIME", expressions=[t])
    if start is not None:
        conds.append(exp.GTE(this=t.copy(), expression=time_literal(start, dialect)))
    if end is not None:
        conds.append(exp.LT(this=t.copy(), expression=time_literal(end, dialect)))
    conds.extend(condition(f) for f in metric.filters)
    for dim, values in (where or {}).items():
        conds.append(col(dim).isin(*[exp.Literal.string(str(v)) for v in values]))
    return conds


def aggregate_query(
    metric: MetricSpec,
    relation: exp.Expression,
    dialect: str,
    *,
    by: list[str],
    grain: str,
    start: datetime | None = None,
    end: datetime | None = None,
    where: dict[str, list[str]] | None = None,
    grouping_sets: list[list[str]] | None = None,
) -> str:
    """SELECT time, dims…, measures…, row_count … GROUP BY time, dims — the database does the work.

    With `grouping_sets`, one scan computes every combination: `by` must hold all their dimensions, and a
    column `__g_<dim>` (GROUPING(dim): 1 where the dimension is rolled up) tells the combinations apart.
    """
    measures: dict[str, Measure]
    if metric.measure is not None:
        measures = {"value": metric.measure}
    else:
        measures = {"numerator": metric.ratio.numerator, "denominator": metric.ratio.denominator}
    b = bucket(metric.time_column, grain, dialect)
    select = exp.select(b.as_("time", quoted=True))
    for d in by:
        select = select.select(col(d).as_(d, quoted=True))
    for alias, m in measures.items():
        select = select.select(measure_sql(m).as_(alias, quoted=True))
    select = select.select(exp.Count(this=exp.Star()).as_("row_count", quoted=True))
    if grouping_sets is not None:
        for d in by:
            select = select.select(exp.Anonymous(this="GROUPING", expressions=[col(d)]).as_(f"__g_{d}", quoted=True))
    select = select.from_(relation)
    for cond in where_clause(metric, dialect, start=start, end=end, where=where):
        select = select.where(cond)
    if grouping_sets is None:
        select = select.group_by(b.copy(), *[col(d) for d in by])
    else:
        sets = [exp.Tuple(expressions=[b.copy(), *[col(d) for d in group]]) for group in grouping_sets]
        select.set("group", exp.Group(grouping_sets=[exp.GroupingSets(expressions=sets)]))
    return select.sql(dialect=dialect)


def latest_query(metric: MetricSpec, relation: exp.Expression, dialect: str, *, until: datetime | None) -> str:
    """The newest timestamp and the row count, for freshness checks."""
    select = exp.select(
        exp.Max(this=col(metric.time_column)).as_("latest", quoted=True),
        exp.Count(this=exp.Star()).as_("row_count", quoted=True),
    ).from_(relation)
    for cond in where_clause(metric, dialect, start=None, end=until, where=None):
        select = select.where(cond)
    return select.sql(dialect=dialect)


def columns_used(metric: MetricSpec) -> dict[str, str]:
    """Every column a metric reads, mapped to the field that names it (for error messages)."""
    used: dict[str, str] = {}
    if metric.time_column:
        used[metric.time_column] = "time_column"
    for d in metric.dimensions:
        used.setdefault(d, "dimensions")
    measures = [("measure", metric.measure)] if metric.measure else []
    if metric.ratio is not None and not metric.derived:
        measures += [("ratio.numerator", metric.ratio.numerator), ("ratio.denominator", metric.ratio.denominator)]
    for where, m in measures:
        if m.column:
            used.setdefault(m.column, f"{where}.column")
        if m.filter:
            for c in condition(m.filter).find_all(exp.Column):
                used.setdefault(c.name, f"{where}.filter")
    for f in metric.filters:
        for c in condition(f).find_all(exp.Column):
            used.setdefault(c.name, "filters")
    return used
