"""Detection over a CSV file: one output row per input row, whatever shape the input is in.

Handling (each produces a warning, never a crash):

- unsorted rows: sorted by time for detection; the output keeps the input order;
- duplicate timestamps: the detector sees their mean; each row is judged against that bucket's band;
- any regular step (every 5, 10 or 30 minutes, 2 hours, a day...): the step is the most common
  spacing (`prepare.infer_step`), robust to gaps, jitter, duplicates and daylight-saving days;
- gaps: the series is put on a regular grid of that step; missing buckets are just missing;
- irregular timestamps (off the step's grid): each point is put in its bucket of the inferred step
  (rounded to the nearest when the spacing is jittered, floored otherwise); the warning names the step;
- a step that changes mid-series (hourly, then every 5 minutes): a warning says where; the series is
  put on the grid of the more common step;
- long form (one column names the series, `id_col`, detected when it is a text column with a few
  distinct values): each id is its own series, with its own step; output rows keep the id;
- mixed time zones (offsets that differ, or some timestamps with one and some without): all are
  converted to UTC, a naive one is taken as UTC (warning); one offset throughout keeps local time;
- too few points to learn (3 points): every row gets score 0, never an anomaly (warning);
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
from metricloop.detect.prepare import DAY, GRAIN_SECONDS, grain_kind, infer_step, step_name
from metricloop.detect.stats import score_points
from metricloop.errors import MetricloopError

OUTPUT_COLUMNS = ["timestamp", "value", "expected", "lower", "upper", "score", "is_anomaly"]
TIME_NAMES = re.compile(r"^(time|timestamp|ts|date|datetime|day|hour|period|dt|bucket)$|time|date", re.I)


@dataclass
class CsvResult:
    frame: pd.DataFrame
    time_col: str
    value_col: str
    warnings: list[str] = field(default_factory=list)
    id_col: str | None = None
    steps: dict[str, str | None] = field(default_factory=dict)  # per series id ("" = the only one): its step


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise MetricloopError("the file is empty", where=str(path)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise MetricloopError(f"cannot read CSV: {exc}", where=str(path)) from None


def _parse_times(col: pd.Series, notes: list[str] | None = None) -> pd.Series:
    """Timestamps as naive datetimes: local wall time when every one has the same offset, UTC
    when offsets differ (or some have none: those are taken as UTC, and `notes` says so)."""
    if pd.api.types.is_numeric_dtype(col):
        return pd.Series(pd.NaT, index=col.index)  # bare numbers are not timestamps
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = pd.to_datetime(col, errors="coerce", format="mixed")
        except ValueError as exc:
            if "timezone" not in str(exc).lower():
                return pd.Series(pd.NaT, index=col.index)
            try:
                out = pd.to_datetime(col, errors="coerce", format="mixed", utc=True)
            except (ValueError, TypeError):
                return pd.Series(pd.NaT, index=col.index)
            if notes is not None:
                notes.append("timestamps have different time-zone offsets (or some have none): all are converted "
                             "to UTC, one without an offset is taken as UTC")
            return out.dt.tz_localize(None)
        except TypeError:
            return pd.Series(pd.NaT, index=col.index)
    if isinstance(out.dtype, pd.DatetimeTZDtype):
        out = out.dt.tz_localize(None)  # one offset throughout: its local wall time
    elif out.dtype == object:
        return pd.Series(pd.NaT, index=col.index)
    return out


def pick_id_col(df: pd.DataFrame, time_col: str, value_col: str, id_col: str | None, where: str) -> str | None:
    """The column naming the series in a long-form file: `id_col`, or else a text column (not the
    time or value) with 2 to n/3 distinct values."""
    if id_col is not None:
        if id_col not in df.columns:
            raise MetricloopError(f"no column {id_col!r} (columns: {', '.join(map(str, df.columns))})", where=where)
        if id_col in (time_col, value_col):
            raise MetricloopError(f"--id-col {id_col!r} is also the time or value column", where=where)
        return id_col
    n = len(df)
    for c in df.columns:
        if c in (time_col, value_col):
            continue
        col = df[c]
        if pd.api.types.is_numeric_dtype(col) or pd.to_numeric(col, errors="coerce").notna().mean() >= 0.5:
            continue
        k = col.nunique(dropna=True)
        if 2 <= k <= max(2, n // 3) and col.notna().mean() >= 0.9:
            return str(c)
    return None


def pick_columns(df: pd.DataFrame, time_col: str | None, value_col: str | None, where: str,
                 id_col: str | None = None) -> tuple[str, str]:
    if time_col is not None and time_col not in df.columns:
        raise MetricloopError(f"no column {time_col!r} (columns: {', '.join(map(str, df.columns))})", where=where)
    if value_col is not None and value_col not in df.columns:
        raise MetricloopError(f"no column {value_col!r} (columns: {', '.join(map(str, df.columns))})", where=where)
    if time_col is None:
        named = [c for c in df.columns if TIME_NAMES.search(str(c)) and c != id_col]
        others = [c for c in df.columns if c not in named and c not in (value_col, id_col)]
        for c in named + others:
            if _parse_times(df[c]).notna().mean() >= 0.5:
                time_col = str(c)
                break
        if time_col is None:
            raise MetricloopError("no timestamp column found; name it with --time-col", where=where)
    if value_col is None:
        for c in df.columns:
            if c in (time_col, id_col):
                continue
            if pd.to_numeric(df[c], errors="coerce").notna().mean() >= 0.5:
                value_col = str(c)
                break
        if value_col is None:
            # an entirely empty column is a numeric series with every value missing
            empty = [c for c in df.columns if c not in (time_col, id_col) and df[c].isna().all()]
            if not empty:
                raise MetricloopError("no numeric column found; name one with --value-col", where=where)
            value_col = str(empty[0])
    return time_col, value_col


def detect_csv(
    path: Path,
    *,
    time_col: str | None = None,
    value_col: str | None = None,
    id_col: str | None = None,
    detector: str = "auto",
    sensitivity: float = 5.0,
    params: dict[str, Any] | None = None,
    calendar: Calendar | None = None,
) -> CsvResult:
    where = str(path)
    df = read_csv(path)
    if df.empty or len(df.columns) == 0:
        raise MetricloopError("the file has no rows", where=where)
    tcol, vcol = pick_columns(df, time_col, value_col, where, id_col)
    icol = pick_id_col(df, tcol, vcol, id_col, where)
    warnings: list[str] = []
    times = _parse_times(df[tcol], warnings)
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

    n = len(df)
    cols = {c: np.full(n, np.nan) for c in ("expected", "lower", "upper", "score")}
    flags = np.zeros(n, bool)
    ok = times.notna().to_numpy()
    cfg = {"sensitivity": sensitivity, **(params or {})}
    det_obj = get_detector(detector, cfg)
    steps: dict[str, str | None] = {}
    if icol is None:
        groups = [("", np.flatnonzero(ok))]
    else:
        ids = df[icol].astype("string").fillna("")
        groups = [(str(k), np.flatnonzero(ok & (ids == k).to_numpy())) for k in pd.unique(ids)]
        warnings.append(f"long form: {len(groups)} series named by column {icol!r}, each detected on its own")
    for key, rows in groups:
        if not len(rows):
            continue
        got, notes, step = _detect_series(pd.DatetimeIndex(times.to_numpy()[rows]).as_unit("ns"),
                                          values.to_numpy()[rows], det_obj, calendar)
        steps[key] = step_name(step)
        for c in cols:
            cols[c][rows] = got[c]
        flags[rows] = got["is_anomaly"]
        warnings.extend(f"{icol} {key}: {w}" if icol else w for w in notes)

    out = pd.DataFrame({"timestamp": df[tcol], "value": values})
    if icol is not None:
        out.insert(1, icol, df[icol])
    for c, arr in cols.items():
        out[c] = arr
    out["score"] = out["score"].fillna(0.0).clip(0.0, 1.0)
    out["is_anomaly"] = flags
    assert len(out) == n
    columns = OUTPUT_COLUMNS if icol is None else [OUTPUT_COLUMNS[0], icol, *OUTPUT_COLUMNS[1:]]
    return CsvResult(out[columns], tcol, vcol, warnings, icol, steps)


def _detect_series(t_ok: pd.DatetimeIndex, vals_ok: np.ndarray, det_obj: Any,
                   calendar: Calendar | None) -> tuple[dict[str, np.ndarray], list[str], float | None]:
    """Detection over one series' rows (timestamps parsed, in file order): per-row results."""
    warnings: list[str] = []
    if len(t_ok) > 1 and not (np.diff(t_ok.asi8) >= 0).all():
        warnings.append("rows are not sorted by time: sorted for detection, output kept in input order")
    uniq = t_ok.unique().sort_values()
    info = infer_step(uniq)
    step = info.step if info.step else float(DAY)  # one timestamp: call it a day
    name = step_name(step)
    if info.change is not None:
        at, before, after = info.change
        warnings.append(f"the spacing changes around {at}: every {step_name(before)} before, every "
                        f"{step_name(after)} after; the series is put on a {name} grid (the most common spacing)")
    bucket_of = _bucket_times(t_ok, uniq, step, info.regular, info.share, warnings)
    grid = _grid(bucket_of, step, warnings)
    dups = int(pd.Index(bucket_of).duplicated().sum())
    if dups:
        warnings.append(f"{dups} row(s) share a timestamp with another row: "
                        "the detector sees the mean, each row is judged against that bucket's band")
    pos = grid.get_indexer(bucket_of)
    sums = np.zeros(len(grid))
    counts = np.zeros(len(grid))
    finite = np.isfinite(vals_ok)
    np.add.at(sums, pos[finite], vals_ok[finite])
    np.add.at(counts, pos[finite], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        series = np.where(counts > 0, sums / counts, np.nan)
    grain = grain_kind(step)
    warm = det_obj.warmup_points(grain, step)
    if int(finite.sum()) < warm:
        warnings.append(f"only {int(finite.sum())} point(s) with a value, fewer than the {warm} the detector "
                        f"learns from at this step ({name}): no point can be an anomaly")

    scores = det_obj.score(series, grid, calendar=calendar, grain=None, step=step)
    det = apply_conditions(scores, det_obj.config)
    warnings.extend(scores.warnings)

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
    got = {"expected": exp, "lower": lo, "upper": hi, "score": row_score, "is_anomaly": flag & np.isfinite(vals_ok)}
    return got, warnings, step


def _bucket_times(t: pd.DatetimeIndex, uniq: pd.DatetimeIndex, step: float, regular: bool, share: float,
                  warnings: list[str]) -> pd.DatetimeIndex:
    """Each row's bucket: its own timestamp on a regular series; on an irregular one, its bucket of
    the step, on the series' own phase (the first timestamp's offset within a step): rounded to the
    nearest when most spacings are the step give or take jitter, floored otherwise."""
    if regular or len(uniq) < 3 or step >= GRAIN_SECONDS["month"]:
        return t
    ns = int(round(step * 1e9))
    offset = int(uniq.asi8[0] % ns)
    rel = t.asi8 - offset
    jitter = share >= 0.5
    k = np.floor_divide(rel + (ns // 2 if jitter else 0), ns)
    how = "nearest" if jitter else "its"
    warnings.append(f"irregular timestamps: each point is put in {how} {step_name(step)} bucket "
                    "(the most common spacing)")
    return pd.DatetimeIndex(k * ns + offset).as_unit("ns")


def _grid(buckets: pd.DatetimeIndex, step: float, warnings: list[str]) -> pd.DatetimeIndex:
    uniq = buckets.unique().sort_values()
    if step >= GRAIN_SECONDS["month"] or len(uniq) < 2:
        return uniq
    full = pd.date_range(uniq[0], uniq[-1], freq=pd.Timedelta(seconds=step)).as_unit("ns")
    if len(full) > 20 * len(uniq) or not uniq.isin(full).all():
        # far too sparse for a grid, or a daily series in local time across a daylight-saving change
        return uniq
    if len(full) > len(uniq):
        warnings.append(f"{len(full) - len(uniq)} missing {step_name(step)} bucket(s) (gaps): treated as missing data")
    return full


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame
    if "score" in frame and pd.api.types.is_float_dtype(frame["score"]):
        # the score keeps its order to 1 − 1e-13 (stats.tail_score): six digits would write every score
        # above 0.9999995 as 1, and a threshold swept over the file could no longer rank the largest deviations
        out = frame.copy()
        out["score"] = frame["score"].map(lambda v: f"{v:.15g}")
    out.to_csv(path, index=False, float_format="%.6g")
