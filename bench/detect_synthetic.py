"""Detection quality on labelled synthetic series (spikes, dips, level shifts, outages, slow drifts,
low counts, ratios; daily and hourly), `auto` next to the naive rolling z-score and a peer library's
detector (ADTK `SeasonalAD`, period 7 days / 24 hours, c = 3, both sides, one model per series, fitted
on the whole series: not causal), at one sensitivity, all scored with the same event scorer.

    .venv/bin/python bench/detect_synthetic.py [--n 150] [--sensitivity 5] [--peer adtk|none]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from metricloop.detect.backtest import SeriesSet, run_backtest  # noqa: E402
from metricloop.detect.scoring import alert_events, score_events  # noqa: E402
from synthetic import SCENARIOS, make_set  # noqa: E402


def _has_adtk() -> bool:
    try:
        import adtk  # noqa: F401
    except ImportError:
        return False
    return True


def _adtk_backtest(sset: SeriesSet, labels: pd.DataFrame):
    """ADTK SeasonalAD on each series, its flags grouped into alert events and scored like ours."""
    import contextlib
    import types
    import warnings

    from adtk.data import validate_series
    from adtk.detector import SeasonalAD

    from metricloop.detect.backtest import months_between

    freq = 7 if sset.grain == "day" else 24
    rows = []
    for name, row in zip(sset.names, sset.values, strict=True):
        s = validate_series(pd.Series(row, index=sset.times))
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore")
            flags = SeasonalAD(freq=freq, c=3.0, side="both").fit_detect(s)
            rows.extend({"metric": sset.metric, "slice": name, "time": t, "grain": sset.grain}
                        for t in flags.index[flags.fillna(False).astype(bool).to_numpy()])
    anomalies = pd.DataFrame(rows, columns=["metric", "slice", "time", "grain"])
    events = alert_events(anomalies, grain=sset.grain)
    months = months_between(sset.times)
    score = score_events(events, labels, series=[(sset.metric, n, sset.grain) for n in sset.names], months=months)
    return types.SimpleNamespace(events=events, score=score, months=months)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=150, help="series per scenario and grain")
    ap.add_argument("--sensitivity", type=float, default=5.0)
    ap.add_argument("--detectors", default="auto,zscore")
    ap.add_argument("--peer", default="adtk", choices=["adtk", "none"])
    args = ap.parse_args(argv)
    rows = []
    totals: dict[str, list] = {d: [] for d in args.detectors.split(",")}
    peer = args.peer == "adtk" and _has_adtk()
    if args.peer == "adtk" and not peer:
        print("peer: adtk is not installed (pip install -e '.[bench]'); no peer figures")
    if peer:
        totals["adtk"] = []
    for grain in ("day", "hour"):
        for scenario in SCENARIOS:
            s = make_set(scenario, grain=grain, n=args.n, seed=1)
            sset = SeriesSet(f"synthetic_{scenario}", grain, s.names, s.times, s.values, s.numerator, s.denominator)
            for det in totals:
                t0 = time.perf_counter()
                if det == "adtk":
                    r = _adtk_backtest(sset, s.labels)
                else:
                    r = run_backtest(sset, detector=det, config={"sensitivity": args.sensitivity, "direction": "both"},
                                     labels=s.labels)
                sc = r.score
                totals[det].append((r.events, s.labels, [(sset.metric, n, grain) for n in s.names], r.months))
                rows.append({"grain": grain, "scenario": scenario, "detector": det, "precision": round(sc.precision, 3),
                             "recall": round(sc.recall, 3), "f1": round(sc.f1, 3),
                             "false/series/quarter": round(sc.false_alerts_per_series_per_quarter, 3),
                             "seconds": round(time.perf_counter() - t0, 2)})
    table = pd.DataFrame(rows)
    print(f"synthetic set: {args.n} series per scenario and grain, sensitivity {args.sensitivity}")
    print(table.to_string(index=False))
    for det, parts in totals.items():
        events = pd.concat([p[0] for p in parts], ignore_index=True)
        labels = pd.concat([p[1] for p in parts], ignore_index=True)
        series = [x for p in parts for x in p[2]]
        months = max(p[3] for p in parts)
        sc = score_events(events, labels, series=series, months=months)
        print(f"overall {det}: precision {sc.precision:.3f} recall {sc.recall:.3f} F1 {sc.f1:.3f} "
              f"false alerts/series/quarter {sc.false_alerts_per_series_per_quarter:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
