"""Is `score` calibrated? On series with no anomaly, the share of points scoring ≥ s should be about 1 − s.

    .venv/bin/python bench/detect_calibration.py [--n 200] [--nab ../shared/benchmarks/nab]

Clean sets: business-like daily series (weekly pattern, trend, Gaussian noise), hourly counts
(Poisson around a daily shape), daily series with heavy-tailed noise (Student t, 3 degrees of
freedom, which a Gaussian model does not expect), and NAB's series labelled with no anomaly
(artificialNoAnomaly and realAWSCloudwatch/ec2_cpu_utilization_c6585a, when NAB is present). For each
it prints, at s = 0.9 … 0.9999, the share of scored points with score ≥ s divided by 1 − s (1 = exact;
the aim is within ½…2), for `auto` as it is and, side by side, without the per-series recalibration
(the model's own tail alone), plus how many points tie at the largest score.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from metricloop.detect import band, get_detector  # noqa: E402
from synthetic import daily_values  # noqa: E402

LEVELS = (0.9, 0.99, 0.999, 0.9999)


def clean_sets(n: int, nab: Path | None) -> dict[str, tuple[np.ndarray, pd.DatetimeIndex | None]]:
    rng = np.random.default_rng(11)
    sets: dict[str, tuple[np.ndarray, pd.DatetimeIndex | None]] = {}
    times, values = daily_values(n, 730, seed=3)
    sets["daily gauss"] = (values, times)
    ht = pd.date_range("2025-01-01", periods=24 * 120, freq="h")
    shape = 1 + 0.8 * np.sin(2 * np.pi * (np.asarray(ht.hour) - 8) / 24)
    lam = rng.uniform(3, 60, (n, 1)) * shape[None, :]
    sets["hourly counts"] = (rng.poisson(lam).astype(float), ht)
    t_noise = rng.standard_t(3, (n, 730)) * 0.03
    sets["daily student-t(3)"] = (1000 * (1 + 0.2 * (np.asarray(times.day_of_week) >= 5))[None, :] * (1 + t_noise),
                                  times)
    if nab is not None and (nab / "data").exists():
        files = sorted((nab / "data" / "artificialNoAnomaly").glob("*.csv"))
        files.append(nab / "data" / "realAWSCloudwatch" / "ec2_cpu_utilization_c6585a.csv")
        for f in files:
            d = pd.read_csv(f)
            stamps = pd.DatetimeIndex(pd.to_datetime(d["timestamp"]))
            sets[f"NAB {f.stem}"] = (d["value"].to_numpy(float)[None, :], stamps)
    return sets


def table(scores) -> dict[str, float]:
    use = ~scores.learning & np.isfinite(scores.values) & ~scores.suppressed
    s = scores.score[use]
    row = {f"≥{lv}": round(float((s >= lv).mean()) / (1 - lv), 2) for lv in LEVELS}
    row["points"] = int(use.sum())
    row["ties at max"] = int((s == s.max()).sum()) if s.size else 0
    row["score = 1"] = int((s >= 1.0).sum())
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="series per synthetic set")
    ap.add_argument("--nab", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nab")
    args = ap.parse_args(argv)
    rows = []
    own = band.calibrate_log_tail
    for name, (values, times) in clean_sets(args.n, args.nab).items():
        for label, cal in (("auto", own), ("model tail only", lambda ell, usable: ell)):
            band.calibrate_log_tail = cal
            try:
                scores = get_detector("auto").score(values, times)
            finally:
                band.calibrate_log_tail = own
            rows.append({"set": name, "score": label, **table(scores)})
    print("share of clean points with score ≥ s, divided by 1 − s (1 = calibrated; aim ½…2)")
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
