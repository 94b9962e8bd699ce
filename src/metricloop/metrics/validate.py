"""Checks run by `apply`: metric references resolve, and every column a metric names exists in its source."""

from __future__ import annotations

from metricloop.definitions.kinds import Catalog
from metricloop.definitions.schemas import MetricSpec
from metricloop.errors import MetricloopError, Problem
from metricloop.metrics.compile import columns_used


def _entry_for(entries, metric: MetricSpec):
    for e in entries:
        if e.kind == "metric" and e.name == metric.name:
            return e
    return None


def reference_check(catalog: Catalog, entries) -> list[Problem]:
    problems: list[Problem] = []
    for e in entries:
        if e.kind != "metric":
            continue
        m: MetricSpec = e.spec
        if m.source and m.source not in catalog.sources:
            problems.append(e.problem(f"unknown source '{m.source}'", ("source",)))
        for i, ref in enumerate(m.related):
            if ref == m.name:
                problems.append(e.problem("a metric is not related to itself", ("related", i)))
            elif ref not in catalog.metrics:
                problems.append(e.problem(f"unknown related metric '{ref}'", ("related", i)))
        if m.derived:
            for side in ("numerator", "denominator"):
                ref = getattr(m.ratio, side).metric
                target = catalog.metrics.get(ref)
                if target is None:
                    problems.append(e.problem(f"unknown metric '{ref}'", ("ratio", side, "metric")))
                elif target.derived or ref == m.name:
                    problems.append(e.problem(f"metric '{ref}' is itself a ratio of metrics", ("ratio", side)))
                else:
                    missing = [d for d in m.dimensions if d not in target.dimensions]
                    if missing:
                        problems.append(
                            e.problem(f"dimensions {missing} are not dimensions of '{ref}'", ("dimensions",))
                        )
    return problems


def column_check(ws):
    """Build a check that opens each source a changed metric uses and verifies the columns."""

    def check(catalog: Catalog, entries) -> list[Problem]:
        problems: list[Problem] = []
        changed_sources = {e.name for e in entries if e.kind == "source"}
        metrics = [m for m in catalog.metrics.values() if _entry_for(entries, m) or m.source in changed_sources]
        cache: dict[tuple, list[str] | Exception] = {}
        for m in metrics:
            if m.derived or m.source not in catalog.sources:
                continue
            entry = _entry_for(entries, m)
            key = (m.source, m.table, m.sql)
            if key not in cache:
                try:
                    source = ws.source(m.source, catalog)
                    cache[key] = [c.lower() for c in source.columns(table=m.table, sql=m.sql)]
                except MetricloopError as err:
                    cache[key] = err
            cols = cache[key]

            def report(msg: str, field: tuple, m=m, entry=entry) -> None:
                if entry is not None:
                    problems.append(entry.problem(msg, field))
                else:
                    problems.append(Problem(msg, field=f"metric {m.name}"))

            if isinstance(cols, Exception):
                report(f"cannot check columns: {cols} (apply with --no-check to skip)", ("source",))
                continue
            relation = m.table or "the query"
            for column, field in columns_used(m).items():
                if column.lower() not in cols:
                    shown = ", ".join(sorted(cols)[:25])
                    report(f"unknown column '{column}' in {relation} (columns: {shown})", tuple(field.split(".")))
        return problems

    return check
