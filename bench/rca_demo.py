"""Root causes of the demo's three showcase incidents, on every draw of the demo (`--end`, as in detect_demo.py).

    .venv/bin/python bench/rca_demo.py [--ends 2026-11-20,2026-12-18,...] [--scale 0.1]

For each draw it generates the demo, applies its definitions, and explains each incident exactly as the incident
path does (`rca.service.compute`, with the monitor that opens it): the stock-out (store_sales on gmv, the store's
slice, each day of it), the carrier delay (fulfilment on fulfilment_rate, the total, each day) and the channel
outage (channel_orders on hourly orders, each hour of it). A case passes when the first cause is the true one
(the stock-out also needs the stock-out rate first among related metrics). The bar is the bucket each incident
opens on (the first day; the channel monitor needs two bad hours, so the outage's second hour); the later
buckets are shown too. Exits 1 if an incident is not named right where it opens.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

DEFAULT_ENDS = "2026-11-20,2026-10-16,2026-12-18,2027-01-22,2027-03-19,2026-08-14"


def install(home: Path, end: dt.date, scale: float):
    from metricloop.definitions import service
    from metricloop.demo.generate import generate
    from metricloop.demo.setup import LOOP, demo_definitions
    from metricloop.metrics.validate import reference_check
    from metricloop.monitors.validate import loop_check
    from metricloop.workspace import Workspace

    ws = Workspace.init(home)
    generate(home, scale=scale, end=end)
    defs, loop = ws.defs_dir / "demo.yaml", ws.defs_dir / "loop.yaml"
    defs.write_text(demo_definitions(None), encoding="utf-8")
    loop.write_text(LOOP.read_text(encoding="utf-8").replace("${METRICLOOP_ADDRESS}", "127.0.0.1:8120"),
                    encoding="utf-8")
    entries, problems = service.read_definitions([defs, loop])
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="bench", checks=[reference_check, loop_check])
    return ws


def cases(labels: pd.DataFrame):
    """(kind, monitor, metric, grain, slices, at, truth, opens) for every bucket of the three showcase incidents;
    `opens` marks the bucket the incident opens on."""
    out = []
    for kind in ("stockout", "carrier_delay", "channel_outage"):
        rows = labels[labels["kind"] == kind]
        if rows.empty:
            continue
        last = rows["incident_id"].iloc[-1]  # the latest of its kind: the showcase one
        rows = rows[rows["incident_id"] == last]
        if kind == "stockout":
            r = rows[rows["metric"] == "gmv"].iloc[0]
            store = r["slice"].split("=", 1)[1]
            for day in pd.date_range(r["start"], pd.Timestamp(r["end"]) - pd.Timedelta(days=1), freq="D"):
                out.append((kind, "store_sales", "gmv", "day", [r["slice"]], day, {"store": store},
                            day == r["start"]))
        elif kind == "carrier_delay":
            r = rows[rows["slice"].str.contains("carrier=")].iloc[0]
            truth = dict(p.split("=", 1) for p in r["slice"].split(","))
            for day in pd.date_range(r["start"], pd.Timestamp(r["end"]) - pd.Timedelta(days=1), freq="D"):
                out.append((kind, "fulfilment", "fulfilment_rate", "day", ["*"], day, truth, day == r["start"]))
        else:
            r = rows[(rows["metric"] == "orders") & (rows["grain"] == "hour")].iloc[0]
            channel = r["slice"].split("=", 1)[1]
            for hour in pd.date_range(r["start"], pd.Timestamp(r["end"]) - pd.Timedelta(hours=1), freq="h"):
                out.append((kind, "channel_orders", "orders", "hour", [r["slice"]], hour, {"channel": channel},
                            hour == r["start"] + pd.Timedelta(hours=1)))
    return out


def run_draw(end: dt.date, scale: float) -> list[dict]:
    from metricloop.rca.service import compute

    home = Path(tempfile.mkdtemp(prefix="rca-demo-"))
    try:
        ws = install(home, end, scale)
        catalog = ws.catalog()
        labels = pd.read_csv(home / "data" / "labels.csv", parse_dates=["start", "end"])
        rows = []
        for kind, monitor, metric, grain, slices, at, truth, opens in cases(labels):
            t0 = time.perf_counter()
            out = compute(ws, catalog, catalog.all("monitor")[monitor], catalog.metric(metric), slices=slices,
                          at=at.to_pydatetime(), direction="down", grain=grain)
            secs = time.perf_counter() - t0
            r = out.report
            first = r.causes[0]["dimensions"] if r is not None and r.causes else {}
            related = r.related[0]["metric"] if r is not None and r.related else ""
            ok = first == truth and (kind != "stockout" or related == "stockout_rate")
            rows.append({"end": end.isoformat(), "case": kind, "at": f"{at:%m-%d %H:%M}", "opens": opens,
                         "first cause": first,
                         "first related": related, "ok": ok, "seconds": round(secs, 2),
                         "error": out.error})
        ws.close()
        return rows
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ends", default=DEFAULT_ENDS, help="comma-separated last days of the generated data")
    ap.add_argument("--scale", type=float, default=0.1)
    args = ap.parse_args(argv)
    rows = []
    for end in args.ends.split(","):
        rows += run_draw(dt.date.fromisoformat(end.strip()), args.scale)
    frame = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(frame.to_string(index=False))
    opening = frame[frame["opens"]]
    where_opens = opening.groupby("case")["ok"].agg(["sum", "count"]).add_suffix(" where it opens")
    by = frame.groupby("case")["ok"].agg(["sum", "count"]).join(where_opens)
    print(by.to_string())
    print(f"named right where each incident opens: {bool(opening['ok'].all())} ({int(opening['ok'].sum())}/"
          f"{len(opening)} over {frame['end'].nunique()} draws); every bucket: {int(frame['ok'].sum())}/{len(frame)}; "
          f"median {frame['seconds'].median():.2f} s a case")
    return 0 if opening["ok"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
