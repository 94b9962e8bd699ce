"""The leaf cube of a metric at one bucket: one pushed-down GROUP BY, and each leaf's expected value.

The source aggregates the metric by every dimension asked for, over the bucket and the history before it, in
one query (GROUPING SETS with the scope's total where the dialect has it: `metrics.query.query_groups`). The
expected value of each leaf comes from the same causal detector as the alert, run over all leaves at once (the
engine is vectorised across series), on the history only: the bucket itself is blanked before the detector
sees it, so a leaf's expectation never contains the point it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from metricloop.definitions.schemas import MetricSpec
from metricloop.detect.stats import band
from metricloop.errors import MetricloopError
from metricloop.grains import ByGrain
from metricloop.metrics.query import query_groups
from metricloop.metrics.slices import slice_keys
from metricloop.metrics.timeutil import FREQ, buckets, floor

# how far back the detector looks for each leaf: long enough for its warm-up and a weekly rhythm, short enough
# that leaves × buckets stays small (the alert's own history is longer; the baseline settles well within this)
RCA_HISTORY = ByGrain({"minute": "2d", "hour": "21d", "day": "84d", "week": "730d", "month": "1460d"})
DEFAULT_DETECTOR = {"detector": "auto"}
# a dimension joins the default drill-down only while the leaves keep at least this many source rows a bucket on
# average: finer leaves are mostly empty, and a drop read over empty leaves is lost in their noise
MIN_ROWS_PER_LEAF = 10.0


class RcaError(MetricloopError):
    """Root-cause analysis cannot run as asked (no dimensions, an unknown dimension, no data)."""


@dataclass
class LeafCube:
    metric: MetricSpec
    dims: list[str]
    at: datetime  # the bucket judged (metric-local, its start)
    grain: str
    leaves: pd.DataFrame  # one row per leaf: dims…, actual, expected (+ actual_num/den, expected_num/den)
    total_actual: float
    total_expected: float
    total_lower: float | None
    total_upper: float | None
    total_flagged: bool
    history_buckets: int
    sql: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def bucket_of(at: str | datetime, grain: str, timezone: str) -> datetime:
    from metricloop.metrics.timeutil import parse_time

    t = parse_time(at, timezone, what="--at")
    if t is None:
        raise RcaError("give the time to explain (--at), e.g. 2026-11-18", where="--at")
    return floor(pd.Timestamp(t), grain).to_pydatetime()


def additive(metric: MetricSpec) -> bool:
    """Sums, counts and ratios of them roll up by addition; an average, a minimum or a distinct count does not."""
    measures = [metric.measure] if metric.measure is not None else []
    if metric.ratio is not None and not metric.derived:
        measures = [metric.ratio.numerator, metric.ratio.denominator]
    return all(m.agg in ("sum", "count") for m in measures)


def choose_dims(df: pd.DataFrame, dims: list[str], *, keep: list[str], before) -> list[str]:
    """`keep` (else the first dimension), then each further dimension in turn while the history's leaves keep
    MIN_ROWS_PER_LEAF rows a bucket. A dimension that adds no leaves (a store's city) always joins: it only names
    them better."""
    hist = df[pd.to_datetime(df["time"]) < pd.Timestamp(before)]
    if hist.empty:
        return list(keep) or dims[:1]
    n_buckets = max(hist["time"].nunique(), 1)
    rows = float(pd.to_numeric(hist["row_count"], errors="coerce").fillna(0).sum())

    def leaves(cols: list[str]) -> int:
        return int(hist[cols].drop_duplicates().shape[0]) if cols else 1

    chosen = list(keep)
    count = leaves(chosen)
    for d in dims:
        if d in chosen:
            continue
        n = leaves([*chosen, d])
        if not chosen or n == count or rows / (n * n_buckets) >= MIN_ROWS_PER_LEAF:
            chosen.append(d)
            count = n
    return chosen or dims[:1]


def bucket_end(t, grain: str) -> datetime:
    """The start of the bucket after the one starting at `t`."""
    return (pd.Timestamp(t) + pd.tseries.frequencies.to_offset(FREQ[grain])).to_pydatetime()


def _wide(df: pd.DataFrame, dims: list[str], times: pd.DatetimeIndex, cols: list[str], fill: float):
    """Long rows (time, dims…, cols…) → the leaf keys and one leaves × times matrix per column."""
    if dims:
        keys = df[dims].astype(str)
        codes, uniques = pd.factorize(pd.MultiIndex.from_frame(keys), sort=False)
        leaf_keys = pd.DataFrame(list(uniques), columns=dims) if len(uniques) else pd.DataFrame(columns=dims)
    else:
        codes = np.zeros(len(df), dtype=np.int64)
        leaf_keys = pd.DataFrame(index=[0])
    t_index = times.get_indexer(pd.DatetimeIndex(df["time"]))
    ok = t_index >= 0
    out = {}
    for c in cols:
        m = np.full((len(leaf_keys), len(times)), fill, dtype=np.float64)
        vals = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        m[codes[ok], t_index[ok]] = vals[ok]
        out[c] = m
    return leaf_keys.reset_index(drop=True), out


def _expected_last(det, values, times, grain, *, calendar, numerator=None, denominator=None, ratio_scale=None,
                   names=None):
    """The detector's expectation for the last bucket of each row, from the buckets before it only."""
    blank = values.copy()
    blank[:, -1] = np.nan
    num = den = None
    if numerator is not None:
        num, den = numerator.copy(), denominator.copy()
        num[:, -1] = np.nan
        den[:, -1] = np.nan
    # the leaves' slice keys, so an event scoped to a slice (a Dairy promotion) marks only the leaves inside it
    scores = det.score(blank, times, calendar=calendar, numerator=num, denominator=den, grain=grain,
                       ratio_scale=ratio_scale, names=names)
    exp_last = scores.expected[:, -1].astype(np.float64)
    lower, upper = band(scores, 1.0)  # one sd either side, in the family's own terms (counts, proportions)
    sd_last = np.fmax(upper[:, -1] - exp_last, exp_last - lower[:, -1])
    # a leaf the detector has not learnt yet (too little history): the median of its own past, else 0
    missing = ~np.isfinite(exp_last)
    if missing.any():
        past = values[missing, :-1]
        seen = np.isfinite(past).any(axis=1)
        med = np.zeros(int(missing.sum()))
        if seen.any():
            med[seen] = np.nanmedian(past[seen], axis=1)
        exp_last[missing] = med
    return exp_last, sd_last


def leaf_cube(
    ws,
    metric_name: str,
    *,
    at: str | datetime,
    dims: list[str] | None = None,
    keep: list[str] | None = None,
    grain: str | None = None,
    where: dict[str, list[str]] | None = None,
    detector: dict | None = None,
    calendar=None,
    history: str | None = None,
    catalog=None,
) -> LeafCube:
    """Aggregate the metric by `dims` at bucket `at` and before, and give each leaf its actual and expected value.

    Without `dims`, the source groups by all the metric's dimensions and the cube keeps `keep` (a monitor's
    slicing dimensions) and every other dimension that leaves the leaves dense enough (`choose_dims`)."""
    from metricloop.definitions.durations import parse_duration
    from metricloop.detect import detector_from_dict
    from metricloop.grains import canonical_grain

    catalog = catalog or ws.catalog()
    metric = catalog.metric(metric_name)
    if not metric.dimensions:
        raise RcaError(
            f"metric '{metric.name}' has no dimensions, so there is nothing to drill into: add `dimensions:` to its "
            "definition (指标没有维度，无法下钻)",
            where=f"metric {metric.name}",
        )
    if not additive(metric) and not metric.derived:
        raise RcaError(
            f"metric '{metric.name}' is an {metric.measure.agg if metric.measure else 'aggregate'} that does not add "
            "up over dimensions (an average, minimum, maximum or distinct count): explain its parts, or define it "
            "as a ratio (e.g. sum / count) · 该指标不可按维度相加，无法下钻",
            where=f"metric {metric.name}",
        )
    chosen_by_user = bool(dims)
    dims = list(dict.fromkeys(dims or [*(keep or []), *metric.dimensions]))
    unknown = [d for d in dims if d not in metric.dimensions]
    if unknown:
        raise RcaError(
            f"metric '{metric.name}' cannot be sliced by {', '.join(map(repr, unknown))} "
            f"(its dimensions: {', '.join(metric.dimensions)})",
            where="--by",
        )
    grain = canonical_grain(grain or metric.grain)
    t = bucket_of(at, grain, metric.timezone)
    span = parse_duration(history or RCA_HISTORY[grain])
    start = floor(pd.Timestamp(t) - span, grain).to_pydatetime()
    times = buckets(start, None, grain, last=t)
    end = bucket_end(t, grain)
    frames = query_groups(ws, metric.name, groups=[dims, []], start=start, end=end, grain=grain, where=where,
                          fill_missing=False, catalog=catalog)
    leaf_df = frames[tuple(dims)].df
    sql = frames[tuple(dims)].sql
    if not chosen_by_user and additive(metric):
        dims = choose_dims(leaf_df, dims, keep=[d for d in keep or [] if d in dims], before=t)
        sum_cols = [c for c in ("value", "numerator", "denominator", "row_count") if c in leaf_df]
        leaf_df = leaf_df.groupby(["time", *dims], as_index=False, sort=False, dropna=False)[sum_cols].sum(
            min_count=1)
    fill = 0.0 if metric.fill == "zero" or not metric.is_ratio else np.nan
    cols = ["value"] + (["numerator", "denominator"] if metric.is_ratio else [])
    keys, mats = _wide(leaf_df, dims, times, cols, fill)
    informative = [d for d in dims if keys[d].nunique() > 1]  # a dimension the slice fixes says nothing
    if informative and len(informative) < len(dims) and additive(metric):
        dims = informative
        leaf_df = leaf_df.groupby(["time", *dims], as_index=False, sort=False, dropna=False)[
            [c for c in ("value", "numerator", "denominator", "row_count") if c in leaf_df]].sum(min_count=1)
        keys, mats = _wide(leaf_df, dims, times, cols, fill)
    if metric.is_ratio:
        for c in ("numerator", "denominator"):
            mats[c] = np.nan_to_num(mats[c], nan=0.0)  # a leaf with no rows in a bucket had 0 of each side
    if len(keys) == 0:
        raise RcaError(f"metric '{metric.name}' has no rows from {start} to {end}", where="--at")
    cur = mats["value"][:, -1]
    present = mats["denominator"][:, -1] != 0 if metric.is_ratio else np.isfinite(cur) & (cur != 0)
    if not present.any() and not (np.nan_to_num(mats["value"][:, :-1]) != 0).any():
        raise RcaError(f"metric '{metric.name}' has no data at {t:%Y-%m-%d %H:%M}", where="--at")
    det = detector_from_dict(detector or DEFAULT_DETECTOR)
    names = list(slice_keys(keys, dims)) if calendar is not None else None
    scale = metric.ratio.scale if metric.ratio is not None else None
    leaves = keys.copy()
    if metric.is_ratio:
        num, den = mats["numerator"], mats["denominator"]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(den != 0, num / np.where(den != 0, den, 1.0) * scale, np.nan)
        rate_e, rate_sd = _expected_last(det, rate, times, grain, calendar=calendar, numerator=num, denominator=den,
                                ratio_scale=scale, names=names)
        den_e, _ = _expected_last(det, den, times, grain, calendar=calendar, names=names)
        den_e = np.maximum(den_e, 0.0)
        leaves["actual_num"], leaves["actual_den"] = num[:, -1], den[:, -1]
        leaves["expected_den"] = den_e
        leaves["expected_num"] = np.nan_to_num(rate_e / scale, nan=0.0) * den_e
        leaves["expected_rate"] = rate_e
        # the numerator's sd at the expected rate on the bucket's own volume: the detector's rate sd (its band is
        # drawn without the blanked bucket's volume) and, where the sides count things, the binomial chance
        d_now = den[:, -1]
        p_e = np.clip(np.nan_to_num(rate_e / scale, nan=0.0), 0.0, 1.0)
        binomial = d_now * p_e * (1 - p_e) if (num >= 0).all() and (num <= den + 1e-9).all() else 0.0
        leaves["noise"] = np.sqrt((np.nan_to_num(rate_sd) / scale * d_now) ** 2 + binomial)
    else:
        vals = mats["value"]
        leaves["actual"] = np.nan_to_num(vals[:, -1], nan=0.0)
        seen = np.nan_to_num(vals, nan=0.0) if metric.fill == "zero" else vals
        leaves["expected"], leaves["noise"] = _expected_last(det, seen, times, grain, calendar=calendar,
                                                             names=names)
        if metric.is_count or (vals[np.isfinite(vals)] >= 0).all():
            leaves["expected"] = leaves["expected"].clip(lower=0.0)
    # the total is asked only whether it left its widest usual range (sensitivity 10: 3 sd for a day): the history
    # here is shorter than the alert's, and `--at` names a time a person already finds suspect
    gate = detector_from_dict({**(detector or DEFAULT_DETECTOR), "sensitivity": 10, "min_duration": 1})
    total = _scope_total(frames[()].df, metric, times, gate, calendar, grain)
    warnings = []
    if metric.is_ratio:
        warnings += [] if leaves["actual_den"].sum() else ["the denominator is 0 at this time"]
    return LeafCube(metric=metric, dims=dims, at=t, grain=grain, leaves=leaves, history_buckets=len(times) - 1,
                    sql=sql, warnings=warnings, **total)


def _scope_total(df: pd.DataFrame, metric: MetricSpec, times, det, calendar, grain) -> dict:
    """The scope's own series, judged by the same detector as the alert: is the total abnormal at the bucket?"""
    cols = ["value"] + (["numerator", "denominator"] if metric.is_ratio else [])
    _, mats = _wide(df, [], times, cols, 0.0 if (metric.fill == "zero" or metric.is_ratio) else np.nan)
    if metric.is_ratio:
        num, den = mats["numerator"], mats["denominator"]
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.where(den != 0, num / np.where(den != 0, den, 1.0) * metric.ratio.scale, np.nan)
    else:
        num = den = None
        vals = mats["value"]
    detection = det.detect(vals, times, calendar=calendar, numerator=num, denominator=den, grain=grain,
                           good_direction=metric.good_direction,
                           ratio_scale=metric.ratio.scale if metric.ratio is not None else None)

    def last(a) -> float | None:
        x = float(a[0, -1])
        return x if np.isfinite(x) else None

    return {
        "total_actual": float(np.nan_to_num(vals[0, -1])),
        "total_expected": last(detection.expected) if last(detection.expected) is not None else float("nan"),
        "total_lower": last(detection.lower),
        "total_upper": last(detection.upper),
        "total_flagged": bool(detection.is_anomaly[0, -1]),
    }
