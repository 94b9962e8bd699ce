"""Detection over a CSV file: one output row per input row, whatever shape the input is in.

Handling (each produces a warning, never a crash):

- unsorted rows: sorted by time for detection; the output keeps the input order;
- duplicate timestamps: the detector sees their mean; each row is judged against that bucket's band;
- gaps: the series is put on a regular grid (the median spacing); missing buckets are just missing;
- irregular timestamps (no regular spacing): points are floored to the nearest standard grain
  (minute/hour/day/week/month) when one fits, else treated as an evenly spaced sequence;
- NaN / non-numeric values: kept as rows with an expected value and band, score 0, never an anomaly,
  and kept out of the baseline;
- unparseable timestamps: those rows get empty expected/lower/upper, score 0, not an anomaly
  (all of them unparseable is an error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metricloop.detect.base import get_detector
from metricloop.detect.calendar import Calendar
from metricloop.detect.conditions import apply_conditions
from metricloop.detect.prepare import GRAIN_SECONDS, infer_grain
from metricloop.detect.stats import score_points
from metricloop.errors import MetricloopError

OUTPUT_COLUMNS = ["timestamp", "value", "expected", "lower", "upper", "score", "is_anomaly"]
TIME_NAMES = re.compile(r"^(time|timestamp|ts|date|datetime|day|hour|period|dt|bucket)$|time|date", re.I)
FREQ = {"minute": "min", "hour": "h", "day": "D", "week": "7D"}


@dataclass
class CsvResult:
    frame: pd.DataFrame
    time_col: str
    value_col: str
    warnings: list[str] = field(default_factory=list)


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise MetricloopError("the file is empty", where=str(path)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise MetricloopError(f"cannot read CSV: {exc}", where=str(path)) from None


def _parse_times(col: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col):
        return pd.Series(pd.NaT, index=col.index)  # bare numbers are not timestamps
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pd.to_datetime(col, errors="coerce", format="mixed")
        except (ValueError, TypeError):
            return pd.Series(pd.NaT, index=col.index)


def pick_columns(df: pd.DataFrame, time_col: str | None, value_col: str | None, where: str) -> tuple[str, str]:
    if time_col is not None and time_col not in df.columns:
        raise MetricloopError(f"no column {time_col!r} (columns: {', '.join(map(str, df.columns))})", where=where)
    if value_col is not None and value_col not in df.columns:
        raise MetricloopError(f"no column {value_col!r} (columns: {', '.join(map(str, df.columns))})", where=where)
    if time_col is None:
        named = [c for c in df.columns if TIME_NAMES.search(str(c))]
        others = [c for c in df.columns if c not in named and c != value_col]
        for c in named + others:
            if _parse_times(df[c]).notna().mean() >= 0.5:
                time_col = str(c)
                break
        if time_col is None:
            raise MetricloopError("no timestamp column found; name it with --time-col", where=where)
    if value_col is None:
        for c in df.columns:
            if c == time_col:
                continue
            if pd.to_numeric(df[c], errors="coerce").notna().mean() >= 0.5:
                value_col = str(c)
                break
        if value_col is None:
            # an entirely empty column is a numeric series with every value missing
            empty = [c for c in df.columns if c != time_col and df[c].isna().all()]
            if not empty:
                raise MetricloopError("no numeric column found; name one with --value-col", where=where)
            value_col = str(empty[0])
    return time_col, value_col


def detect_csv(
    path: Path,
    *,
    time_col: str | None = None,
    value_col: str | None = None,
    detector: str = "auto",
    sensitivity: float = 5.0,
    params: dict[str, Any] | None = None,
    calendar: Calendar | None = None,
) -> CsvResult:
    where = str(path)
    df = read_csv(path)
    if df.empty or len(df.columns) == 0:
        raise MetricloopError("the file has no rows", where=where)
    tcol, vcol = pick_columns(df, time_col, value_col, where)
    warnings: list[str] = []
    times = _parse_times(df[tcol])
    if times.isna().all():
        raise MetricloopError(f"column {tcol!r} has no timestamp that parses (e.g. {df[tcol].iloc[0]!r})", where=where)
    bad_t = int(times.isna().sum())
    if bad_t:
        warnings.append(f"{bad_t} row(s) with an unparseable timestamp: left without a band, never an anomaly")
    raw = df[vcol]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    not_num = int((values.isna() & raw.notna()).sum())
    if not_num:
        warnings.append(f"{not_num} non-numeric value(s) in {vcol!r} treated as missing")
    inf = np.isinf(values.to_numpy())
    if inf.any():
        warnings.append(f"{int(inf.sum())} infinite value(s) treated as missing")
        values[inf] = np.nan
    nan = int(values.isna().sum()) - not_num - int(inf.sum())
    if nan:
        warnings.append(f"{nan} empty value(s): kept as rows, out of the baseline, never an anomaly")

    ok = times.notna().to_numpy()
    t_ok = pd.DatetimeIndex(times[ok]).as_unit("ns")
    if len(t_ok) > 1 and not (np.diff(t_ok.asi8) >= 0).all():
        warnings.append("rows are not sorted by time: sorted for detection, output kept in input order")
    order = np.argsort(t_ok.asi8, kind="stable")
    ts_sorted = t_ok[order]
    uniq = ts_sorted.unique()
    grain = infer_grain(uniq) if len(uniq) > 1 else "day"
    bucket_of = _bucket_times(t_ok, uniq, grain, warnings)
    grid = _grid(bucket_of, grain, warnings)
    if int(pd.Index(bucket_of).duplicated().sum()):
        warnings.append(f"{int(pd.Index(bucket_of).duplicated().sum())} row(s) share a timestamp with another row: "
                        "the detector sees the mean, each row is judged against that bucket's band")
    pos = grid.get_indexer(bucket_of)
    vals_ok = values.to_numpy()[ok]
    sums = np.zeros(len(grid))
    counts = np.zeros(len(grid))
    finite = np.isfinite(vals_ok)
    np.add.at(sums, pos[finite], vals_ok[finite])
    np.add.at(counts, pos[finite], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        series = np.where(counts > 0, sums / counts, np.nan)

    cfg = {"sensitivity": sensitivity, **(params or {})}
    det_obj = get_detector(detector, cfg)
    use_times = grid if grain is not None else None
    scores = det_obj.score(series, use_times, calendar=calendar if use_times is not None else None, grain=grain)
    det = apply_conditions(scores, det_obj.config)
    warnings.extend(scores.warnings)

    n = len(df)
    out = pd.DataFrame({"timestamp": df[tcol], "value": values})
    for col in ("expected", "lower", "upper", "score"):
        out[col] = np.nan
    out["is_anomaly"] = False
    rows = np.flatnonzero(ok)
    exp = scores.expected[0, pos]
    lo, hi = det.lower[0, pos], det.upper[0, pos]
    row_score = score_points(vals_ok[None, :], exp[None, :], scores.scale[0, pos][None, :], scores.family,
                             scores.unit[:1, pos] if scores.unit is not None else None)[0]
    if scores.fixed_lower is not None:  # fixed-band detectors score the bucket, not the row
        row_score = scores.score[0, pos]
    # a bucket of one row keeps the detector's own (calibrated) score
    row_score = np.where(counts[pos] > 1, row_score, scores.score[0, pos])
    learning = scores.learning[0, pos]
    row_score = np.where(learning | ~np.isfinite(vals_ok), 0.0, row_score)
    with np.errstate(invalid="ignore"):
        over = (vals_ok > hi) & ~np.isclose(vals_ok, hi, rtol=1e-9, atol=0.0)
        under = (vals_ok < lo) & ~np.isclose(vals_ok, lo, rtol=1e-9, atol=0.0)
        outside = np.where(det.alert_direction == "up", over,
                           np.where(det.alert_direction == "down", under, over | under))
    dup = counts[pos] > 1
    flag = np.where(dup, outside & ~learning & ~scores.suppressed[0, pos], det.is_anomaly[0, pos])
    out.loc[rows, "expected"] = exp
    out.loc[rows, "lower"] = lo
    out.loc[rows, "upper"] = hi
    out.loc[rows, "score"] = row_score
    out.loc[rows, "is_anomaly"] = flag & np.isfinite(vals_ok)
    out["score"] = out["score"].fillna(0.0).clip(0.0, 1.0)
    out["is_anomaly"] = out["is_anomaly"].astype(bool)
    assert len(out) == n
    return CsvResult(out[OUTPUT_COLUMNS], tcol, vcol, warnings)


def _bucket_times(t: pd.DatetimeIndex, uniq: pd.DatetimeIndex, grain: str | None,
                  warnings: list[str]) -> pd.DatetimeIndex:
    """Each row's bucket: its own timestamp on a regular series, floored to the grain on an irregular one."""
    if grain is None or len(uniq) < 3 or grain == "month":
        return t
    step = GRAIN_SECONDS[grain] * 10**9
    off_grid = (np.diff(uniq.asi8) % step != 0).mean()
    if off_grid > 0.1:
        warnings.append(f"irregular timestamps: each point is put in its {grain} bucket")
        return t.floor(FREQ[grain])
    return t


def _grid(buckets: pd.DatetimeIndex, grain: str | None, warnings: list[str]) -> pd.DatetimeIndex:
    uniq = buckets.unique().sort_values()
    if grain is None or grain == "month" or len(uniq) < 2:
        if grain is None and len(uniq) > 2:
            warnings.append("no regular spacing in the timestamps: points are treated as an evenly spaced sequence")
        return uniq
    full = pd.date_range(uniq[0], uniq[-1], freq=FREQ[grain])
    if len(full) > 20 * len(uniq) or not uniq.isin(full).all():
        return uniq
    if len(full) > len(uniq):
        warnings.append(f"{len(full) - len(uniq)} missing {grain} bucket(s) (gaps): treated as missing data")
    return full


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6g")
