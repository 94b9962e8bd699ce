"""The knowledge bar on the demo: a repeat of a past incident type finds that past incident in its top 3.

    .venv/bin/python bench/knowledge_demo.py [--workspace DIR] [--scale 0.1] [--seed 42]

Installs the demo as `metricloop demo` does (its past seeded as resolved incidents, then the last week's mornings
replayed), or reuses DIR if it holds one. For each labelled event of the replayed week whose type the past has,
prints the incident it opened, its top 3 similar past incidents and the rank of the first of the same type
(category), then the time one similar-incident search takes.
"""

from __future__ import annotations

import argparse
import csv
import time
from datetime import date
from pathlib import Path

# the labelled event kind → the category of a past incident of the same type
SAME_TYPE = {"stockout": "stock_out", "carrier_delay": "supplier_carrier", "channel_outage": "outage"}


def workspace(home: Path, scale: float, seed: int):
    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    if (home / "data" / "labels.csv").exists():
        return Workspace.open(home, Settings(home=home))
    from metricloop.demo.setup import install_demo

    ws = Workspace.init(home, Settings(home=home))
    summary = install_demo(ws, scale=scale, seed=seed, end="2026-11-20", replay_days=7)
    print(f"installed the demo at {home}: {summary['history']} past incidents seeded, "
          f"{len(summary['replay'])} runs replayed")
    return ws


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, default=Path("/tmp/metricloop-knowledge-bench"))
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    from sqlalchemy import select

    from metricloop.incidents.models import Incident
    from metricloop.knowledge.similar import find_similar, summary_line

    ws = workspace(args.workspace, args.scale, args.seed)
    with (ws.data_dir / "labels.csv").open(encoding="utf-8") as f:
        week = [r for r in csv.DictReader(f) if r["kind"] in SAME_TYPE and date.fromisoformat(r["start"][:10])
                >= date(2026, 11, 13)]
    hits = total = 0
    timings = []
    with ws.db.session() as s:
        catalog = ws.catalog()
        opened = [i for i in s.scalars(select(Incident).order_by(Incident.id)) if i.labels.get("history") != "demo"]
        seen = set()
        for r in week:
            sl = r["slice"] or "*"
            inc = next((i for i in opened if i.metric == r["metric"] and sl in (i.slices or [])), None)
            if inc is None or inc.id in seen:
                continue
            seen.add(inc.id)
            t0 = time.perf_counter()
            found = find_similar(s, catalog, inc)
            timings.append(time.perf_counter() - t0)
            want = SAME_TYPE[r["kind"]]
            rank = next((n for n, (e, _s, _w) in enumerate(found, 1) if e.category == want), None)
            total += 1
            hits += rank is not None and rank <= 3
            print(f"\n#{inc.id} {inc.title}  ({r['kind']}, wants a past '{want}')  rank: {rank or 'not in top 3'}")
            for n, (e, score, _why) in enumerate(found, 1):
                print(f"  {n}. {score:.2f}  {e.category:<16} {summary_line(catalog, e, 'zh')}")
                print(f"     {'':<22}{summary_line(catalog, e, 'en')}")
    ms = sorted(t * 1000 for t in timings)
    print(f"\nbar: {hits}/{total} repeats find a past incident of their type in the top 3"
          + (f"; one search {ms[len(ms) // 2]:.1f} ms median, {ms[-1]:.1f} ms max" if ms else ""))


if __name__ == "__main__":
    main()
