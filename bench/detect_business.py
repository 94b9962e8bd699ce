"""Detection on a labelled proxy of the held-out business sets (`business_set.py`: written apart from
the demo and synthetic generators), through the same entry point as `metricloop detect FILE` with its
defaults (detector auto, sensitivity 5, learned Chinese holidays), beside a naive rolling z-score run
the same way.

Scoring, per family: an alert event is a run of flagged rows at most `GAP` steps apart; it is true
when it overlaps a labelled window (extended by `TOL` steps after its end), false otherwise. Recall
is the share of labelled windows some event overlaps. False events are counted per 1,000 rows.

    .venv/bin/python bench/detect_business.py [--families day_volume,...] [--n N] [--detectors auto,zscore]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from business_set import FAMILIES, LabelledSeries, make_family  # noqa: E402
from metricloop.cli_detect import _params  # noqa: E402
from metricloop.detect.calendar import Calendar  # noqa: E402
from metricloop.detect.csvio import detect_csv  # noqa: E402

GAP = 3  # flagged rows at most this many steps apart are one event
TOL = {"day": 2, "hour": 3, "minute": 10}  # steps after a window's end an alert still belongs to it
STEP = {"day": pd.Timedelta(days=1), "hour": pd.Timedelta(hours=1), "minute": pd.Timedelta(minutes=1)}


def events_of(times: pd.Series, flags: np.ndarray, step: pd.Timedelta) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    t = pd.DatetimeIndex(pd.to_datetime(times[flags])).as_unit("ns")
    if not len(t):
        return []
    t = t.sort_values()
    cut = np.flatnonzero(np.diff(t.asi8) > GAP * step.value) + 1
    bounds = np.split(np.arange(len(t)), cut)
    return [(t[b[0]], t[b[-1]]) for b in bounds]


def score_series(s: LabelledSeries, frame: pd.DataFrame) -> dict[str, int]:
    step = STEP[s.step]
    evs = events_of(frame["timestamp"], frame["is_anomaly"].to_numpy(bool), step)
    wins = [(a.start, a.end + TOL[s.step] * step, a.kind) for a in s.anomalies]
    true_ev = sum(any(e0 <= w1 and e1 >= w0 for w0, w1, _ in wins) for e0, e1 in evs)
    hit = defaultdict(int)
    total = defaultdict(int)
    for w0, w1, kind in wins:
        total[kind] += 1
        hit[kind] += any(e0 <= w1 and e1 >= w0 for e0, e1 in evs)
    out = {"events": len(evs), "true_events": true_ev, "labels": len(wins), "hits": sum(hit.values()),
           "rows": len(frame)}
    for k in total:
        out[f"n_{k}"] = total[k]
        out[f"hit_{k}"] = hit[k]
    return out


def summarise(parts: list[dict[str, int]]) -> dict[str, float]:
    tot: dict[str, int] = defaultdict(int)
    for p in parts:
        for k, v in p.items():
            tot[k] += v
    prec = tot["true_events"] / tot["events"] if tot["events"] else 1.0
    rec = tot["hits"] / tot["labels"] if tot["labels"] else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    false = tot["events"] - tot["true_events"]
    out = {"precision": prec, "recall": rec, "f1": f1, "false/1k": 1000 * false / max(tot["rows"], 1),
           "events": tot["events"], "labels": tot["labels"], "rows": tot["rows"]}
    kinds = sorted(k[2:] for k in tot if k.startswith("n_"))
    out["recall by kind"] = " ".join(f"{k}:{tot['hit_' + k]}/{tot['n_' + k]}" for k in kinds)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--n", type=int, default=None, help="series per family (default 30 days, 20 hours, 18 minutes)")
    ap.add_argument("--detectors", default="auto,zscore")
    ap.add_argument("--keep", type=Path, default=None, help="write the input and output CSVs here")
    ap.add_argument("--worst", type=int, default=0, help="list the N series with the most false events")
    ap.add_argument("--sensitivity", type=float, default=5.0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a detector setting for every series (e.g. min_duration=2), as `metricloop detect --set`")
    args = ap.parse_args(argv)
    dets = args.detectors.split(",")
    cal = Calendar(None, china_holidays="learn")  # what `metricloop detect` uses by default
    params = _params(args.set) or None
    rows = []
    per: dict[str, dict[str, list]] = {d: defaultdict(list) for d in dets}
    worst = []
    tmp = tempfile.TemporaryDirectory()
    root = args.keep or Path(tmp.name)
    for fam in args.families.split(","):
        series = make_family(fam, args.n)
        for s in series:
            path = root / "in" / fam / f"{s.name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            s.frame.to_csv(path, index=False)
        for det in dets:
            t0, c0 = time.perf_counter(), time.process_time()
            for s in series:
                res = detect_csv(root / "in" / fam / f"{s.name}.csv", detector=det, calendar=cal,
                                 sensitivity=args.sensitivity, params=params)
                if args.keep:
                    out = root / det / fam / f"{s.name}.csv"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    res.frame.to_csv(out, index=False)
                sc = score_series(s, res.frame)
                per[det][fam].append(sc)
                worst.append((sc["events"] - sc["true_events"], det, s.name, sc["labels"] - sc["hits"]))
            summ = summarise(per[det][fam])
            rows.append({"family": fam, "detector": det, **{k: (round(v, 3) if isinstance(v, float) else v)
                                                           for k, v in summ.items()},
                         "wall s": round(time.perf_counter() - t0, 1), "cpu s": round(time.process_time() - c0, 1)})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 80):
        print(table.to_string(index=False))
    print()
    for det in dets:
        biz = [x for f, v in per[det].items() if not f.startswith("minute") for x in v]
        mins = [x for f, v in per[det].items() if f.startswith("minute") for x in v]
        for name, parts in (("business (day/hour volume, ratio, count)", biz), ("minute KPIs with gaps", mins)):
            if parts:
                s = summarise(parts)
                print(f"{det:7s} {name:42s} F1 {s['f1']:.3f}  P {s['precision']:.3f}  R {s['recall']:.3f}  "
                      f"false events/1k points {s['false/1k']:.2f}")
    if args.worst:
        print("\nmost false events (false, detector, series, missed labels):")
        for w in sorted(worst, reverse=True)[:args.worst]:
            print("  ", w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
