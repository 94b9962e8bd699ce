"""Data quality per metric: freshness (is the newest row late?) and completeness (is a bucket thin?)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from scipy.stats import poisson

from metricloop.definitions.durations import format_duration, parse_duration
from metricloop.definitions.kinds import Catalog
from metricloop.definitions.schemas import MetricSpec
from metricloop.errors import MetricloopError
from metricloop.grains import GRAINS, ByGrain, parse_grain
from metricloop.metrics.compile import latest_query
from metricloop.metrics.query import query_metric
from metricloop.metrics.slices import slice_keys
from metricloop.metrics.timeutil import floor, now_local, parse_time

DEFAULT_LAG = ByGrain({
    "minute": timedelta(minutes=15),
    "hour": timedelta(hours=2),
    "day": timedelta(hours=30),
    "week": timedelta(days=8),
    "month": timedelta(days=32),
})
POISSON_ALPHA = 1e-4
SEASON = ByGrain({"minute": pd.Timedelta(days=7), "hour": pd.Timedelta(days=7), "day": pd.Timedelta(days=7)})


@dataclass
class QualityCheck:
    metric: str
    check: str  # freshness | completeness
    status: str  # ok | fail | error
    message: str
    slice: str = "*"
    time: datetime | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time"] = self.time.isoformat() if self.time else None
        return d


def base_metrics(catalog: Catalog, metric: MetricSpec) -> list[MetricSpec]:
    """The metrics whose tables hold the data (a derived ratio reads two)."""
    if not metric.derived:
        return [metric]
    return [catalog.metric(metric.ratio.numerator.metric), catalog.metric(metric.ratio.denominator.metric)]


def freshness(ws, catalog: Catalog, metric: MetricSpec, at: datetime) -> QualityCheck:
    max_lag = parse_duration(metric.quality.max_lag) if metric.quality.max_lag else DEFAULT_LAG[metric.grain]
    try:
        source = ws.source(metric.source, catalog)
        sql = latest_query(metric, source.relation(table=metric.table, sql=metric.sql), source.dialect, until=at)
        row = source.query(sql, timezone=metric.timezone).iloc[0]
    except MetricloopError as e:
        return QualityCheck(metric.name, "freshness", "error", str(e))
    latest = pd.to_datetime(row["latest"]) if row["latest"] is not None else None
    if latest is not None and latest.tzinfo is not None:  # a column with a time zone: compare in local time
        latest = latest.tz_convert(metric.timezone).tz_localize(None)
    if latest is None or pd.isna(latest):
        return QualityCheck(
            metric.name, "freshness", "fail", "no rows at all", details={"max_lag": format_duration(max_lag)}
        )
    # The newest row at time T means data is complete up to the end of T's bucket at best.
    lag = at - latest.to_pydatetime()
    ok = lag <= max_lag
    msg = f"newest row {latest:%Y-%m-%d %H:%M}, {format_duration(lag)} ago" + (
        "" if ok else f" — later than the allowed {format_duration(max_lag)}"
    )
    return QualityCheck(
        metric.name,
        "freshness",
        "ok" if ok else "fail",
        msg,
        time=latest.to_pydatetime(),
        details={"lag_seconds": int(lag.total_seconds()), "max_lag": format_duration(max_lag)},
    )


def completeness(ws, catalog: Catalog, metric: MetricSpec, at: datetime) -> list[QualityCheck]:
    """Compare each recent complete bucket's row count with the same bucket in the previous 4 weeks."""
    q = metric.quality
    end = floor(pd.Timestamp(at), metric.grain)  # the current bucket is still filling: leave it out
    season = SEASON.get(metric.grain)
    if season is not None:  # minute, hour, day: the same bucket 1–4 weeks before each recent one
        start = end - season * 5
    else:  # week, month: the 4 buckets before each recent one
        start = end - (pd.DateOffset(**{f"{metric.grain}s": q.recent_buckets + 4}) if metric.grain in GRAINS
                       else (q.recent_buckets + 4) * pd.Timedelta(seconds=parse_grain(metric.grain)))
    checks: list[QualityCheck] = []
    for dims in [[]] + [[d] for d in q.completeness_by]:
        try:
            df = query_metric(ws, metric.name, by=dims, start=start, end=end, catalog=catalog).df
        except MetricloopError as e:
            return [QualityCheck(metric.name, "completeness", "error", str(e))]
        df["slice"] = slice_keys(df, dims)
        wide = df.pivot_table(index="time", columns="slice", values="row_count", aggfunc="sum").sort_index()
        recent = wide.index[-q.recent_buckets :]
        for t in recent:
            if season is not None:
                refs = [t - season * k for k in range(1, 5)]
            else:
                pos = wide.index.get_loc(t)
                refs = list(wide.index[max(0, pos - 4) : pos])
            base = wide.reindex(refs).median()
            for s, count in wide.loc[t].items():
                usual = base.get(s, np.nan)
                if not usual or np.isnan(usual):
                    continue
                ratio = float(count) / float(usual)
                # Rare events (a city's complaints) have empty days by chance: flag a thin bucket only when
                # it is also very unlikely under a Poisson count with the usual rate.
                if ratio < q.min_completeness and poisson.cdf(int(count), float(usual)) < POISSON_ALPHA:
                    checks.append(
                        QualityCheck(
                            metric.name,
                            "completeness",
                            "fail",
                            f"bucket {t:%Y-%m-%d %H:%M} has {int(count)} rows, {ratio:.0%} of the usual {usual:.0f}",
                            slice=s,
                            time=t.to_pydatetime(),
                            details={"rows": int(count), "usual": float(usual), "ratio": round(ratio, 4)},
                        )
                    )
    if not checks:
        checks.append(
            QualityCheck(
                metric.name,
                "completeness",
                "ok",
                f"the last {q.recent_buckets} {metric.grain} buckets have their usual row counts",
            )
        )
    return checks


def check_metric(
    ws, name: str, *, at: str | datetime | None = None, catalog: Catalog | None = None
) -> list[QualityCheck]:
    catalog = catalog or ws.catalog()
    metric = catalog.metric(name)
    at_time = parse_time(at, metric.timezone, what="at") or now_local(metric.timezone)
    out: list[QualityCheck] = []
    for base in base_metrics(catalog, metric):
        out.append(freshness(ws, catalog, base, at_time))
        out.extend(completeness(ws, catalog, base, at_time))
    return out
