"""Speed of `auto` on many series, and the ratio against a peer library's detector (ADTK).

    .venv/bin/python bench/detect_speed.py [--series 100000] [--days 730] [--peer-sample 300]
    .venv/bin/python bench/detect_speed.py --step 5min --series 10000 --days 14 --peer-sample 30

Daily series by default; `--step 5min` (or 10min, 30min, hour...) makes sub-daily series with a
daily cycle, a weekly one and 3-8 % noise (10,000 series × 14 days at 5 minutes = 40 M points).

Series are generated and scored in blocks (bounded memory); the figure is wall time for scoring
plus applying the alert conditions, peak RSS from the OS. The peer (ADTK SeasonalAD, one model per
series, `pip install -e '.[bench]'`) runs on a sample of the same series in the same run and is
extrapolated linearly to all of them — it says so in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from metricloop.detect import get_detector  # noqa: E402
from metricloop.grains import parse_grain, step_name  # noqa: E402
from synthetic import daily_values  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def intraday_values(n: int, days: int, step: float, seed: int = 0) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Sub-daily series (a day's cycle, quieter weekends, 3-8 % noise) at `step` seconds."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=int(days * 86400 // step), freq=pd.Timedelta(seconds=step))
    hour = np.asarray(times.hour + times.minute / 60)
    day = 1.0 + 0.8 * np.sin(2 * np.pi * (hour - 9) / 24)[None, :] * rng.uniform(0.3, 1.0, (n, 1))
    week = np.where(np.asarray(times.day_of_week) >= 5, 0.8, 1.0)[None, :]
    level = rng.lognormal(5, 1.5, (n, 1))
    noise = rng.uniform(0.03, 0.08, (n, 1))
    values = level * day * week * (1 + noise * rng.standard_normal((n, len(times))))
    return times, values


def run_peer(values: np.ndarray, times, freq: int = 7) -> tuple[str, float] | None:
    try:
        import pandas as pd
        from adtk.data import validate_series
        from adtk.detector import SeasonalAD
    except ImportError:
        return None
    t0 = time.perf_counter()
    for row in values:
        s = validate_series(pd.Series(row, index=times))
        # a series it cannot model still cost the time
        with contextlib.suppress(Exception):
            SeasonalAD(freq=freq, c=3.0, side="both").fit_detect(s)
    return "adtk.SeasonalAD", time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--block", type=int, default=20_000)
    ap.add_argument("--peer-sample", type=int, default=300)
    ap.add_argument("--step", default="day", help="sampling step: day (default), 5min, 10min, 30min, hour...")
    args = ap.parse_args(argv)
    step = parse_grain(args.step)
    per_day = max(1, round(86400 / step))

    def make(n: int, seed: int):
        if step >= 86400:
            return daily_values(n, args.days, seed=seed)
        return intraday_values(n, args.days, step, seed=seed)

    det = get_detector("auto")
    total = 0.0
    anomalies = 0
    for b, lo in enumerate(range(0, args.series, args.block)):
        n = min(args.block, args.series - lo)
        times, values = make(n, b)
        t0 = time.perf_counter()
        d = det.detect(values, times)
        total += time.perf_counter() - t0
        anomalies += int(d.is_anomaly.sum())
        del d, values
    points = args.series * args.days * per_day
    print(f"auto: {args.series} series × {args.days} days at {step_name(step)} = {points:,} points in {total:.1f} s "
          f"→ {points / total:,.0f} points/s; {anomalies} anomalies; peak RSS {peak_rss_gib():.2f} GiB")
    if args.peer_sample <= 0:
        print("peer: not run (--peer-sample 0)")
        return 0
    times, sample = make(args.peer_sample, 99)
    t0 = time.perf_counter()
    det.detect(sample, times)
    ours = time.perf_counter() - t0
    peer = run_peer(sample, times, freq=7 if step >= 86400 else per_day)
    if peer is None:
        print("peer: adtk is not installed (pip install -e '.[bench]'); no ratio")
        return 0
    name, secs = peer
    per_series = secs / args.peer_sample
    print(f"peer {name}: {args.peer_sample} series in {secs:.1f} s ({per_series * 1000:.1f} ms/series) → "
          f"extrapolated {per_series * args.series:.0f} s for {args.series} series (measured on a sample)")
    print(f"auto on the same {args.peer_sample} series: {ours:.2f} s; ratio peer/auto on that sample "
          f"{secs / ours:.1f}×; peer extrapolated / auto measured at full size {per_series * args.series / total:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
