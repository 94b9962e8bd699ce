"""Speed of `auto` on many daily series, and the ratio against a peer library's detector (ADTK).

    .venv/bin/python bench/detect_speed.py [--series 100000] [--days 730] [--peer-sample 300]

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

sys.path.insert(0, str(Path(__file__).parent))
from metricloop.detect import get_detector  # noqa: E402
from synthetic import daily_values  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_peer(values: np.ndarray, times) -> tuple[str, float] | None:
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
            SeasonalAD(freq=7, c=3.0, side="both").fit_detect(s)
    return "adtk.SeasonalAD", time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--block", type=int, default=20_000)
    ap.add_argument("--peer-sample", type=int, default=300)
    args = ap.parse_args(argv)
    det = get_detector("auto")
    total = 0.0
    anomalies = 0
    for b, lo in enumerate(range(0, args.series, args.block)):
        n = min(args.block, args.series - lo)
        times, values = daily_values(n, args.days, seed=b)
        t0 = time.perf_counter()
        d = det.detect(values, times)
        total += time.perf_counter() - t0
        anomalies += int(d.is_anomaly.sum())
        del d, values
    points = args.series * args.days
    print(f"auto: {args.series} daily series × {args.days} days = {points:,} points in {total:.1f} s "
          f"→ {points / total:,.0f} points/s; {anomalies} anomalies; peak RSS {peak_rss_gib():.2f} GiB")
    times, sample = daily_values(args.peer_sample, args.days, seed=99)
    t0 = time.perf_counter()
    det.detect(sample, times)
    ours = time.perf_counter() - t0
    peer = run_peer(sample, times)
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
