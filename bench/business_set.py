"""A labelled proxy for the held-out business sets, written independently of `demo/generate.py` and
`synthetic.py` (other shapes, other noise, other seeds), so that a fix tuned on those two is tested on
data it has not seen.

    from business_set import FAMILIES, make_family
    series = make_family("day_volume", n=30)   # list of LabelledSeries (one CSV's worth each)

Families (each series is a file of timestamp,value rows, as `metricloop detect` reads them):

- day_volume / hour_volume: orders or GMV, a weekly shape drawn per series (not "weekend up"), a daily
  shape for hours (one or two peaks), a piecewise trend with a change of slope, a yearly swing for
  days, AR(1) multiplicative noise, integers for about half; a third follow Chinese public holidays
  (days off like a weekend, scaled up or down; make-up workdays like a workday);
- day_ratio / hour_ratio: conversion = orders / visitors, visitors a volume series (some tiny: a few
  per hour), orders binomial with an overdispersed rate; written as a fraction or in %; empty where
  there were no visitors;
- day_count / hour_count: negative-binomial counts with small means (0.2 to 15), many zeros;
- minute_kpi: requests per minute, latency (ms, heavy-tailed noise) and error rate (%) over 10 days,
  with missing minutes and missing stretches (rows absent, as an exporter leaves them).

Anomalies (labelled windows): spike, dip, level shift (permanent: the label covers its onset),
variance change, drop to zero; about a quarter of the series have none. Sizes are relative to the
series' own noise, with a floor, as an analyst would call them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FAMILIES = ("day_volume", "hour_volume", "day_ratio", "hour_ratio", "day_count", "hour_count", "minute_kpi")
SEED = 90_417  # unrelated to the demo's and synthetic.py's seeds


@dataclass
class Anomaly:
    kind: str
    start: pd.Timestamp
    end: pd.Timestamp  # inclusive


@dataclass
class LabelledSeries:
    name: str
    family: str
    step: str  # day | hour | minute
    frame: pd.DataFrame  # timestamp, value (rows absent in gaps)
    anomalies: list[Anomaly] = field(default_factory=list)
    holidays: bool = False  # follows Chinese public holidays (volume and ratio families)


def _rng(family: str, i: int) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(family.encode()), i])


def _offdays(times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Per bucket: a Chinese public holiday (day off on a weekday or weekend), a make-up workday."""
    import chinese_calendar as cc

    days = pd.DatetimeIndex(times.normalize().unique())
    hol, mk = {}, {}
    for d in days:
        date = d.date()
        try:
            on_holiday, name = cc.get_holiday_detail(date)
            work = cc.is_workday(date)
        except NotImplementedError:
            on_holiday, name, work = False, None, date.weekday() < 5
        hol[d] = bool(on_holiday and name is not None)
        mk[d] = bool(work and date.weekday() >= 5)
    norm = times.normalize()
    return np.array([hol[d] for d in norm]), np.array([mk[d] for d in norm])


def _daytype_shape(times: pd.DatetimeIndex, rng: np.random.Generator, holiday: bool) -> np.ndarray:
    """Weekly (and, below a day, daily) multiplicative shape of one series."""
    dow = np.asarray(times.day_of_week)
    week = rng.gamma(20, 1 / 20, 7)
    kind = rng.integers(3)
    if kind == 0:
        week[5:] *= rng.uniform(0.4, 0.8)  # B2B: quiet weekends
    elif kind == 1:
        week[5:] *= rng.uniform(1.2, 1.7)  # retail: busy weekends
    week /= week.mean()
    eff = dow.copy()
    extra = np.ones(len(times))
    if holiday:
        hol, makeup = _offdays(times)
        eff = np.where(hol, 6, np.where(makeup, 2, eff))
        extra = np.where(hol, rng.choice([rng.uniform(0.45, 0.75), rng.uniform(1.3, 1.8)]), 1.0)
    shape = week[eff] * extra
    if len(times) > 1 and (times[1] - times[0]) < pd.Timedelta(days=1):
        hour = np.asarray(times.hour) + np.asarray(times.minute) / 60
        peaks = [rng.uniform(9, 13)] + ([rng.uniform(18, 22)] if rng.random() < 0.6 else [])
        day = rng.uniform(0.03, 0.25) + sum(
            rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((hour - pk) / rng.uniform(1.5, 4)) ** 2) for pk in peaks)
        offday = (eff >= 5)
        late = np.exp(-0.5 * ((hour - peaks[0] - 1.5) / 3) ** 2)  # days off start later
        day = np.where(offday, 0.5 * day + 0.5 * late * day.max(), day)
        shape = shape * day / day.mean()
    return shape


def _trend(T: int, rng: np.random.Generator, per_year: float) -> np.ndarray:
    t = np.arange(T) / per_year
    cp = rng.uniform(0.3, 0.7) * t[-1] if T > 1 else 0.0
    g1, g2 = rng.uniform(-0.2, 0.5), rng.uniform(-0.3, 0.4)
    return np.exp(np.where(t < cp, g1 * t, g1 * cp + g2 * (t - cp)))


def _ar1(T: int, rng: np.random.Generator, sd: float, phi: float) -> np.ndarray:
    e = rng.normal(0, sd * np.sqrt(1 - phi * phi), T)
    out = np.empty(T)
    acc = rng.normal(0, sd)
    for k in range(T):
        acc = phi * acc + e[k]
        out[k] = acc
    return out


def _grid(step: str) -> tuple[pd.DatetimeIndex, int, int]:
    """Times, warm-up points kept free of anomalies, and points per day."""
    if step == "day":
        return pd.date_range("2023-02-06", periods=620, freq="D"), 70, 1
    if step == "hour":
        return pd.date_range("2024-08-05", periods=24 * 7 * 12, freq="h"), 24 * 18, 24
    return pd.date_range("2025-03-03", periods=1440 * 10, freq="min"), 1440 * 3, 1440


KINDS = {
    "volume": ("spike", "dip", "level_shift", "variance", "zero"),
    "ratio": ("spike", "dip", "level_shift", "variance", "zero"),
    "count": ("spike", "level_shift", "zero"),
}
LENGTH = {  # points: (spike/dip lengths), variance window, level-shift label span (its first week / day / hour)
    "day": ((1, 3), 10, 7),
    "hour": ((1, 4), 36, 24),
    "minute": ((1, 6), 60, 60),
}


def _plan(rng: np.random.Generator, T: int, warm: int, step: str, kinds: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """Non-overlapping (kind, start, end-inclusive) windows after the warm-up; a level shift, which is
    permanent, comes last."""
    k = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.25, 0.15]))
    picks = list(rng.choice(kinds, size=k))
    if picks.count("level_shift") > 1:
        picks = [p for p in picks if p != "level_shift"] + ["level_shift"]
    picks.sort(key=lambda p: p == "level_shift")
    short, var_len, shift_len = LENGTH[step]
    gap = {"day": 20, "hour": 72, "minute": 240}[step]
    out: list[tuple[str, int, int]] = []
    lo = warm
    for n_left, kind in zip(range(len(picks), 0, -1), picks, strict=True):
        span = {"variance": var_len, "level_shift": shift_len}.get(kind, 0) or int(rng.integers(*short, endpoint=True))
        if kind == "zero":
            span = {"day": int(rng.integers(1, 4)), "hour": int(rng.integers(2, 7)),
                    "minute": int(rng.integers(5, 21))}[step]
        hi = T - n_left * (gap + var_len) - span
        if hi <= lo:
            break
        s = int(rng.integers(lo, hi))
        out.append((kind, s, s + span - 1))
        lo = s + span + gap
    return out


def _inject_mult(level: np.ndarray, noise: np.ndarray, plan, rng, noise_sd: float) -> np.ndarray:
    """Apply planned anomalies to a multiplicative model: value = level · exp(noise)."""
    mult = np.ones(len(level))
    noise = noise.copy()
    zero = np.zeros(len(level), bool)
    for kind, s, e in plan:
        size = max(rng.uniform(5, 9) * noise_sd, 0.3)
        if kind == "spike":
            mult[s:e + 1] *= 1 + size
        elif kind == "dip":
            mult[s:e + 1] *= 1 / (1 + size)
        elif kind == "level_shift":
            mult[s:] *= (1 + max(rng.uniform(4, 7) * noise_sd, 0.25)) ** rng.choice([-1, 1])
        elif kind == "variance":
            noise[s:e + 1] *= rng.uniform(4, 6)
            noise[s:e + 1] += rng.choice([-1, 1], e + 1 - s) * 2.5 * noise_sd  # a thrashing stretch
        elif kind == "zero":
            zero[s:e + 1] = True
    return np.where(zero, 0.0, level * mult * np.exp(noise)), zero


def _series_volume(rng, times, warm, step, per_year, holiday) -> tuple[np.ndarray, list]:
    T = len(times)
    shape = _daytype_shape(times, rng, holiday)
    base = rng.lognormal(6.5 if step == "day" else 4.0, 1.4)
    yearly = 1 + rng.uniform(0, 0.15) * np.sin(2 * np.pi * (np.arange(T) / per_year + rng.uniform()))
    level = base * shape * _trend(T, rng, per_year) * yearly
    sd = rng.uniform(0.03, 0.12)
    noise = _ar1(T, rng, sd, rng.uniform(0, 0.5))
    plan = _plan(rng, T, warm, step, KINDS["volume"])
    vals, _ = _inject_mult(level, noise, plan, rng, sd)
    if rng.random() < 0.5:
        vals = rng.poisson(np.maximum(vals, 0)).astype(float)  # order counts
    else:
        vals = np.round(vals * rng.uniform(20, 80), 2)  # GMV
    return vals, plan


def _series_ratio(rng, times, warm, step, per_year, holiday) -> tuple[np.ndarray, list]:
    T = len(times)
    shape = _daytype_shape(times, rng, holiday)
    small = rng.random() < 0.4
    base = rng.lognormal(3.0 if small else 6.5, 0.8) if step == "day" else rng.lognormal(1.5 if small else 4.5, 0.8)
    visitors = rng.poisson(base * shape * _trend(T, rng, per_year) * np.exp(_ar1(T, rng, 0.08, 0.3)))
    p0 = rng.uniform(0.01, 0.4)
    logit_sd = rng.uniform(0.02, 0.1)
    lp = np.log(p0 / (1 - p0)) + _ar1(T, rng, logit_sd, 0.3)
    plan = _plan(rng, T, warm, step, KINDS["ratio"])
    zero = np.zeros(T, bool)
    # sizes judged against what an analyst sees: the binomial noise at a typical volume plus the rate's own
    typical = max(float(np.median(visitors)), 1.0)
    rel_sd = np.sqrt((1 - p0) / (p0 * typical) + logit_sd**2)
    for kind, s, e in plan:
        size = max(rng.uniform(5, 8) * rel_sd, 0.3)
        if kind == "spike":
            lp[s:e + 1] += np.log1p(size)
        elif kind == "dip":
            lp[s:e + 1] -= np.log1p(size)
        elif kind == "level_shift":
            lp[s:] += rng.choice([-1, 1]) * np.log1p(max(rng.uniform(4, 6) * rel_sd, 0.25))
        elif kind == "variance":
            lp[s:e + 1] += rng.choice([-1, 1], e + 1 - s) * max(3 * rel_sd, 0.3)
        elif kind == "zero":
            zero[s:e + 1] = True
    p = 1 / (1 + np.exp(-lp))
    orders = np.where(zero, 0, rng.binomial(visitors, p))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(visitors > 0, orders / visitors, np.nan)
    # a stretch whose visitors were too few to tell anything is not an anomaly anyone could see
    plan = [(k, s, e) for k, s, e in plan if np.nansum(visitors[s:e + 1]) >= 30 or k in ("level_shift", "zero")]
    pct = rng.random() < 0.5
    return np.round(ratio * (100 if pct else 1), 4 if not pct else 2), plan


def _series_count(rng, times, warm, step, per_year, holiday) -> tuple[np.ndarray, list]:
    T = len(times)
    shape = _daytype_shape(times, rng, False)
    mean = rng.uniform(0.2, 15) * shape * _trend(T, rng, per_year)
    size = rng.uniform(2, 50)
    plan = _plan(rng, T, warm, step, KINDS["count"])
    m = mean.copy()
    zero = np.zeros(T, bool)
    kept = []
    for kind, s, e in plan:
        typical = float(np.mean(mean[max(0, s - 28):s + 1]))
        if kind == "spike":
            m[s:e + 1] = m[s:e + 1] * rng.uniform(3, 6) + rng.uniform(6, 12)
        elif kind == "level_shift":
            m[s:] *= rng.uniform(2.5, 4) if typical < 6 else rng.choice([0.3, rng.uniform(2.2, 3)])
        elif kind == "zero":
            # long enough that zeros cannot be chance: P(0)^n below 1e-8 (a run a model at k = 5.6 can call)
            p0 = (size / (size + max(typical, 0.05))) ** size
            need = int(np.ceil(np.log(1e-8) / np.log(max(p0, 1e-12))))
            if need > (8 if step == "day" else 24):
                continue
            e = s + max(need, 1) - 1
            zero[s:e + 1] = True
        kept.append((kind, s, e))
    lam = rng.gamma(size, np.maximum(m, 1e-9) / size)
    vals = np.where(zero, 0, rng.poisson(lam)).astype(float)
    return vals, kept


def _series_minute(rng, times, warm, i) -> tuple[np.ndarray, list]:
    T = len(times)
    kpi = ("requests", "latency", "error_rate")[i % 3]
    hour = np.asarray(times.hour) + np.asarray(times.minute) / 60
    amp = rng.uniform(0.2, 0.8)
    day = 1 + amp * np.sin(2 * np.pi * (hour - rng.uniform(4, 10)) / 24)
    kinds = ("spike", "dip", "level_shift", "variance", "zero") if kpi == "requests" else (
        "spike", "dip", "level_shift", "variance")
    plan = _plan(rng, T, warm, "minute", kinds)
    if kpi == "requests":
        level = rng.lognormal(5, 1.2) * day
        sd = rng.uniform(0.02, 0.08)
        vals, _ = _inject_mult(level, _ar1(T, rng, sd, rng.uniform(0.2, 0.7)), plan, rng, sd)
        vals = rng.poisson(np.maximum(vals, 0)).astype(float)
    elif kpi == "latency":
        level = rng.uniform(40, 400) * (1 + 0.3 * (day - 1))
        sd = rng.uniform(0.04, 0.15)
        noise = _ar1(T, rng, sd, rng.uniform(0.3, 0.8)) + 0.5 * sd * rng.standard_t(3, T)
        vals, _ = _inject_mult(level, noise, plan, rng, 1.6 * sd)
        vals = np.round(vals, 1)
    else:
        reqs = rng.poisson(rng.lognormal(4.5, 1.0) * day)
        p = rng.uniform(0.002, 0.03) * np.exp(_ar1(T, rng, 0.1, 0.5))
        rel = np.sqrt(1 / max(float(np.median(reqs)) * p.mean(), 0.1) + 0.01)
        for kind, s, e in plan:
            size = max(rng.uniform(5, 8) * rel, 1.0)
            if kind == "spike":
                p[s:e + 1] *= 1 + size
            elif kind == "dip":
                p[s:e + 1] /= 1 + size
            elif kind == "level_shift":
                p[s:] *= 1 + max(rng.uniform(4, 6) * rel, 1.0)
            elif kind == "variance":
                p[s:e + 1] *= np.exp(rng.choice([-1, 1], e + 1 - s) * 1.2)
        errs = rng.binomial(reqs, np.clip(p, 0, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.round(np.where(reqs > 0, errs / reqs * 100, np.nan), 3)
        # a dip of an error rate that is mostly 0 cannot be seen; keep only what can
        plan = [(k, s, e) for k, s, e in plan if not (k == "dip" and np.median(vals[warm:]) == 0)]
    return vals, plan


def _gaps(rng: np.random.Generator, T: int, plan, warm: int) -> np.ndarray:
    """Rows kept: missing single minutes and 1-4 missing stretches of 20 minutes to 6 hours, off the
    labelled windows (a labelled window in a gap could not be scored)."""
    keep = rng.random(T) > rng.uniform(0.005, 0.03)
    for _ in range(int(rng.integers(1, 5))):
        length = int(rng.integers(20, 361))
        s = int(rng.integers(0, T - length))
        keep[s:s + length] = False
    for _, s, e in plan:
        keep[max(0, s - 2):e + 3] = True
    keep[:5] = True
    return keep


def make_family(family: str, n: int | None = None) -> list[LabelledSeries]:
    step = family.split("_")[0]
    n = n if n is not None else {"day": 30, "hour": 20, "minute": 18}[step]
    times, warm, per_day = _grid(step)
    per_year = 365.25 * per_day
    out = []
    for i in range(n):
        rng = _rng(family, i)
        holiday = rng.random() < 0.35
        if family.endswith("volume"):
            vals, plan = _series_volume(rng, times, warm, step, per_year, holiday)
        elif family.endswith("ratio"):
            vals, plan = _series_ratio(rng, times, warm, step, per_year, holiday)
        elif family.endswith("count"):
            vals, plan = _series_count(rng, times, warm, step, per_year, holiday)
        else:
            vals, plan = _series_minute(rng, times, warm, i)
        keep = _gaps(rng, len(times), plan, warm) if step == "minute" else np.ones(len(times), bool)
        fmt = "%Y-%m-%d" if step == "day" else "%Y-%m-%d %H:%M:%S"
        frame = pd.DataFrame({"timestamp": times[keep].strftime(fmt), "value": vals[keep]})
        anomalies = [Anomaly(k, times[s], times[min(e, len(times) - 1)]) for k, s, e in plan]
        out.append(LabelledSeries(f"{family}_{i:02d}", family, step, frame, anomalies,
                                  holiday and not family.endswith("count") and step != "minute"))
    return out

