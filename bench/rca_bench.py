"""Root-cause benchmark: exact-match F1 of `rca.find_causes` on labelled cube cases (bench/rca_cases.py).

Scored as the field does (Squeeze, RiskLoc): over all cases, TP / FP / FN of the returned cause set against
the labelled one, F1 = 2TP / (2TP + FP + FN); an ancestor or a descendant of a true cause counts as wrong.
Prints F1 per depth × number of causes, per noise level, and seconds per case; then the speed of the
search on 20,000 and 1,000,000 leaves.

    .venv/bin/python bench/rca_bench.py                 # 10 cases per cell (90 cases)
    .venv/bin/python bench/rca_bench.py --per-cell 30 --out bench/out/rca.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from metricloop.rca.drilldown import find_causes  # noqa: E402
from rca_cases import cases, make_case  # noqa: E402


def _key(d: dict[str, str]) -> frozenset:
    return frozenset(d.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-cell", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args()

    cells: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    noise_cells: dict[float, list[int]] = defaultdict(lambda: [0, 0, 0])
    seconds = []
    for case in cases(args.per_cell, seed=args.seed):
        t0 = time.perf_counter()
        res = find_causes(case.frame, actual="real", expected="predict")
        seconds.append(time.perf_counter() - t0)
        got = {_key(c.dimensions) for c in res.causes}
        truth = {_key(c) for c in case.causes}
        tp, fp, fn = len(got & truth), len(got - truth), len(truth - got)
        for acc in (cells[(case.depth, case.n_causes)], noise_cells[case.noise]):
            acc[0] += tp
            acc[1] += fp
            acc[2] += fn
        if args.verbose and (fp or fn):
            print(f"  {case.name} noise={case.noise}: truth={[dict(t) for t in truth]} got={[dict(g) for g in got]}")

    def f1(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0

    print(f"exact-match F1 over {len(seconds)} cases ({args.per_cell} per cell, seed {args.seed})")
    print("depth \\ causes      1      2      3")
    for depth in (1, 2, 3):
        row = [f1(*cells[(depth, n)]) for n in (1, 2, 3)]
        print(f"  {depth}             " + "  ".join(f"{x:.3f}" for x in row))
    tot = [sum(c[i] for c in cells.values()) for i in range(3)]
    print(f"overall F1 {f1(*tot):.3f}  (TP {tot[0]}, FP {tot[1]}, FN {tot[2]})")
    for noise, c in sorted(noise_cells.items()):
        print(f"  noise {noise:.2f}: F1 {f1(*c):.3f}")
    print(f"seconds per case: mean {sum(seconds) / len(seconds):.3f}, max {max(seconds):.3f}")
    result = {"f1": f1(*tot), "cells": {f"{d}x{n}": f1(*v) for (d, n), v in cells.items()},
              "seconds_mean": sum(seconds) / len(seconds)}

    if not args.no_speed:
        for leaves in (20_000, 1_000_000):
            case = make_case(12345, depth=2, n_causes=2, noise=0.05, n_dims=5, leaves=leaves)
            t0 = time.perf_counter()
            res = find_causes(case.frame, actual="real", expected="predict")
            dt = time.perf_counter() - t0
            ok = {_key(c.dimensions) for c in res.causes} == {_key(c) for c in case.causes}
            print(f"speed: {len(case.frame):,} leaves in {dt:.2f} s (exact match: {ok})")
            result[f"seconds_{leaves}"] = dt
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
