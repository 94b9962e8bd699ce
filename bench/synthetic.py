"""Labelled synthetic series for detection benchmarks: varied shapes, one incident per affected series.

    from synthetic import make_set
    sset = make_set("spike", grain="day", n=200, seed=1)   # values, times, labels (+ numerator/denominator)

Scenarios: spike, dip, level_shift, outage, slow_drift, low_counts, ratio — each on daily (730 days)
or hourly (90 days) series with a weekly / daily pattern, a trend and noise. A third of the series
get no incident, so false alerts are measured on clean data too. Deterministic for a seed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

SCENARIOS = ("spike", "dip", "level_shift", "outage", "slow_drift", "low_counts", "ratio")


@dataclass
class SyntheticSet:
    name: str
    grain: str
    times: pd.DatetimeIndex
    values: np.ndarray
    names: list[str]
    labels: pd.DataFrame
    numerator: np.ndarray | None = None
    denominator: np.ndarray | None = None


def _pattern(times: pd.DatetimeIndex, grain: str, rng: np.random.Generator, n: int) -> np.ndarray:
    T = len(times)
    dow = np.asarray(times.day_of_week)
    weekly = 1 + rng.uniform(0.05, 0.3, (n, 1)) * np.where(dow[None, :] >= 5, 1.0, -0.3)
    trend = 1 + rng.uniform(-0.2, 0.4, (n, 1)) * np.arange(T)[None, :] / T
    if grain == "hour":
        hour = np.asarray(times.hour)
        daily = 0.15 + np.clip(np.sin((hour - 7) / 15 * np.pi), 0, None)[None, :]
        return weekly * trend * daily
    return weekly * trend


def daily_values(n: int, T: int, seed: int = 0, start: str = "2024-01-01") -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Clean business-like daily series (weekly pattern, trend, 3–8 % noise): the speed benchmark's input."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=T, freq="D")
    level = rng.lognormal(8, 1.5, (n, 1))
    noise = rng.uniform(0.03, 0.08, (n, 1))
    values = level * _pattern(times, "day", rng, n) * (1 + noise * rng.standard_normal((n, T)))
    return times, values


def make_set(scenario: str, *, grain: str = "day", n: int = 150, seed: int = 0) -> SyntheticSet:
    rng = np.random.default_rng([zlib.crc32(f"{scenario}/{grain}".encode()), seed])
    if grain == "day":
        times = pd.date_range("2024-01-01", periods=730, freq="D")
        warm, per_day = 60, 1
    else:
        times = pd.date_range("2025-01-01", periods=24 * 90, freq="h")
        warm, per_day = 24 * 21, 24
    T = len(times)
    shape = _pattern(times, grain, rng, n)
    num = den = None
    if scenario == "low_counts":
        mean = rng.uniform(1.0, 6.0, (n, 1)) * shape
        values = rng.poisson(mean).astype(float)
    elif scenario == "ratio":
        den = np.round(rng.lognormal(6, 1.2, (n, 1)) * shape).clip(5, None)
        p = rng.uniform(0.9, 0.99, (n, 1)) * np.ones((1, T))
        base_p = p
    else:
        level = rng.lognormal(8, 1.0, (n, 1))
        noise = rng.uniform(0.02, 0.06, (n, 1))
        values = level * shape * (1 + noise * rng.standard_normal((n, T)))
    affected = np.arange(n) < (2 * n) // 3
    rows = []
    names = [f"s{i:04d}" for i in range(n)]
    for i in np.flatnonzero(affected):
        t0 = int(rng.integers(warm + 14 * per_day, T - 16 * per_day))
        if scenario in ("spike", "dip", "outage", "low_counts"):
            length = int(rng.integers(1, 3)) * (per_day if grain == "hour" and scenario == "outage" else 1)
            length = max(1, min(length, 6))
        elif scenario == "slow_drift":
            length = 14 * per_day
        else:
            length = 5 * per_day
        sl = slice(t0, t0 + length)
        if scenario == "spike":
            values[i, sl] *= rng.uniform(1.5, 2.5)
        elif scenario == "dip":
            values[i, sl] *= rng.uniform(0.3, 0.6)
        elif scenario == "outage":
            values[i, sl] = 0.0
        elif scenario == "level_shift":
            sl = slice(t0, T)
            values[i, sl] *= rng.choice([0.6, 1.5])
        elif scenario == "slow_drift":
            values[i, sl] *= np.linspace(1.0, 0.55, length)
            values[i, t0 + length:] *= 0.55
        elif scenario == "low_counts":
            values[i, sl] = rng.poisson(mean[i, sl] * 5 + 6)
        elif scenario == "ratio":
            base_p = base_p.copy()
            base_p[i, sl] = base_p[i, sl] - rng.uniform(0.12, 0.25)
        rows.append({"incident_id": f"{scenario}-{i}", "kind": scenario, "metric": f"synthetic_{scenario}",
                     "slice": f"series={names[i]}", "start": times[t0], "end": times[min(t0 + length, T - 1)],
                     "grain": grain, "is_anomaly": True})
    if scenario == "ratio":
        num = rng.binomial(den.astype(int) * np.ones((1, T), dtype=int), np.clip(base_p, 0, 1)).astype(float)
        den = den * np.ones((1, T))
        values = num / den * 100
    labels = pd.DataFrame(rows, columns=["incident_id", "kind", "metric", "slice", "start", "end", "grain",
                                         "is_anomaly"])
    return SyntheticSet(scenario, grain, times, values, [f"series={s}" for s in names], labels, num, den)
