"""Detection quality on the demo's labelled incidents: `auto` and a naive rolling z-score side by side.

    .venv/bin/python bench/detect_demo.py [--scale 0.1] [--sensitivity 5] [--workspace DIR]

Builds (or reuses) a demo workspace, backtests every monitor below walk-forward, and scores alert
events against data/labels.csv (event-level precision, recall, F1, false alerts per series per quarter).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import pandas as pd

from metricloop.detect.calendar import Calendar, read_events
from metricloop.detect.scoring import read_labels, score_events

# metric, dimensions to explode (each alone, plus the total), grain
MONITORS = [
    ("gmv", ["store", "channel", "category", "region"], "day"),
    ("orders", ["store", "channel", "category", "region"], "day"),
    ("gmv", ["channel"], "hour"),
    ("orders", ["channel"], "hour"),
    ("aov", ["region"], "day"),
    ("fulfilment_rate", ["region", "carrier"], "day"),
    ("return_rate", ["region"], "day"),
    ("stockout_rate", ["store"], "day"),
    ("visitors", ["region"], "day"),
    ("conversion_rate", ["region"], "day"),
    ("complaints", ["city"], "day"),
    ("complaint_rate", ["city"], "day"),
]


def demo_workspace(home: Path, scale: float, end: dt.date = dt.date(2026, 11, 20)):
    from metricloop.workspace import Workspace

    if (home / "data" / "labels.csv").exists():
        return Workspace.open(home)
    from metricloop.definitions import service
    from metricloop.demo.generate import generate
    from metricloop.demo.setup import demo_definitions
    from metricloop.metrics.validate import reference_check

    ws = Workspace.init(home)
    generate(home, scale=scale, end=end)
    defs = ws.defs_dir / "demo.yaml"
    defs.write_text(demo_definitions(None), encoding="utf-8")
    entries, problems = service.read_definitions([defs])
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="bench", checks=[reference_check])
    return ws


def run(ws, home: Path, detector: str, sensitivity: float, verbose: bool = False, extra: dict | None = None):
    from metricloop.detect.backtest import backtest

    labels = read_labels(home / "data" / "labels.csv")
    cal = Calendar(read_events(home / "data" / "promotions.csv")) if detector != "zscore" else None
    all_events, series = [], []
    months = 0.0
    t0 = time.perf_counter()
    for metric, dims, grain in MONITORS:
        combos = [[d] for d in dims] if metric != "fulfilment_rate" else "all"
        config = {"sensitivity": sensitivity, **(extra or {})}
        r = backtest(ws, metric, by=dims, combos=combos, grain=grain, detector=detector, config=config,
                     calendar=cal if cal is not None else Calendar(china_holidays=False))
        all_events.append(r.events)
        series += [(metric, s, grain) for s in r.series]
        months = max(months, r.months)
    events = pd.concat(all_events, ignore_index=True)
    from metricloop.detect.backtest import related_metrics

    score = score_events(events, labels, series=series, months=months, related_metrics=related_metrics(ws.catalog()))
    if verbose:
        print(f"--- {detector}: missed labels")
        print(score.missed[["incident_id", "kind", "metric", "slice", "grain", "start"]].to_string())
        print(f"--- {detector}: false alert events")
        print(score.false.to_string())
    return score, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--sensitivity", type=float, default=5.0)
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/metricloop-bench-demo"))
    ap.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 11, 20),
                    help="last day of the generated data (another end is another draw of the same demo)")
    ap.add_argument("--detectors", default="auto,zscore")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--config", default="{}", help='extra detector config as JSON, e.g. {"sustained": 1}')
    args = ap.parse_args(argv)
    ws = demo_workspace(args.workspace, args.scale, args.end)
    rows = []
    for name in args.detectors.split(","):
        s, secs = run(ws, args.workspace, name, args.sensitivity, args.verbose, json.loads(args.config))
        rows.append({"detector": name, "precision": round(s.precision, 3), "recall": round(s.recall, 3),
                     "f1": round(s.f1, 3), "incidents": f"{s.incidents_detected}/{s.incidents}",
                     "incident_f1": round(s.incident_f1, 3), "labels": s.labels, "detected": s.detected,
                     "alerts": s.true_alerts + s.false_alerts, "false_alerts": s.false_alerts, "series": s.series,
                     "false/series/quarter": round(s.false_alerts_per_series_per_quarter, 4),
                     "alerts/series/month": round(s.alerts_per_series_per_month, 4), "seconds": round(secs, 1)})
    print(f"demo scale={args.scale} end={args.end} sensitivity={args.sensitivity} workspace={args.workspace}")
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
