"""Issue 2 performance: governed metric queries pushed down to DuckDB (Parquet) and PostgreSQL.

    .venv/bin/python bench/query_bench.py                 # 10M order rows (scale 1.0) + PostgreSQL at 1M rows
    .venv/bin/python bench/query_bench.py --scale 0.1     # quicker

Prints each figure and the ratio against pandas doing the same aggregation in the same run.
Generated data is cached under bench/data/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from metricloop.definitions import service
from metricloop.demo.setup import demo_definitions
from metricloop.metrics.query import query_metric
from metricloop.metrics.slices import explode
from metricloop.metrics.validate import column_check, reference_check
from metricloop.settings import Settings
from metricloop.workspace import Workspace

HERE = Path(__file__).parent
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
END = date(2026, 11, 20)


def timed(fn, repeat: int = 3) -> tuple[float, float, object]:
    """(first run, median of the next `repeat` runs, result)."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs), result


def workspace(folder: Path, scale: float, into: str | None = None, schema: str | None = None) -> Workspace:
    from metricloop.demo.generate import generate

    ws = Workspace.init(folder, Settings(home=folder))
    if not (ws.data_dir / "labels.csv").exists():
        print(f"generating demo data at scale {scale} into {ws.data_dir} …", flush=True)
        t0 = time.perf_counter()
        generate(ws.home, scale=scale, seed=42, end=END)
        print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)
    text = demo_definitions(into)
    if schema:
        text = text.replace(f"url: {into}", f"url: {into}\n  schema: {schema}")
    defs = ws.defs_dir / "demo.yaml"
    defs.write_text(text)
    entries, problems = service.read_definitions([defs])
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="bench", checks=[reference_check, column_check(ws)])
    return ws


def pandas_gmv(data_dir: Path) -> tuple[float, float, pd.Series]:
    t0 = time.perf_counter()
    df = pd.read_parquet(data_dir / "orders", columns=["order_time", "region", "category", "amount", "status"])
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    df = df[df["status"] != "cancelled"]
    out = df.groupby([df["order_time"].dt.floor("D"), "region", "category"], observed=True)["amount"].sum()
    return read, time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="DuckDB data size (1.0 ≈ 10M order rows)")
    ap.add_argument("--pg-scale", type=float, default=0.1, help="PostgreSQL data size (0.1 ≈ 1M order rows)")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    figures: dict = {}

    ws = workspace(HERE / "data" / f"ws-{args.scale}", args.scale)
    rows = int(ws.source("demo").query("SELECT COUNT(*) AS n FROM orders")["n"][0])
    print(f"\nDuckDB over Parquet: {rows:,} order rows")

    first, warm, frame = timed(lambda: query_metric(ws, "gmv", by=["region", "category"], grain="day"))
    read, group, reference = pandas_gmv(ws.data_dir)
    ours = frame.df.dropna(subset=["value"]).set_index(["time", "region", "category"])["value"].sort_index()
    ref = reference.sort_index()
    ref.index = ref.index.set_names(["time", "region", "category"])
    assert len(ours) == len(ref) and (ours - ref).abs().max() < 1e-6 * ref.abs().max(), "results differ from pandas"
    print(f"GMV by day × region × category: {len(frame.df):,} rows; first {first:.2f} s, warm median {warm:.2f} s")
    print(f"  pandas, same aggregation: read {read:.2f} s + groupby {group:.2f} s = {read + group:.2f} s")
    print(f"  ratio pandas / metricloop: {(read + group) / warm:.1f}× (groupby only: {group / warm:.1f}×)")
    figures["gmv_day_region_category"] = {
        "rows": rows,
        "first_s": first,
        "warm_s": warm,
        "pandas_read_s": read,
        "pandas_groupby_s": group,
        "ratio_pandas_total": (read + group) / warm,
        "ratio_pandas_groupby": group / warm,
    }

    dims = ["warehouse", "carrier", "region"]
    first, warm, df = timed(lambda: explode(ws, "fulfilment_rate", dims=dims, combos="all"))
    n = df["slice"].nunique()
    print(
        f"Fulfilment rate over warehouse × carrier × region, every combination: {n:,} slices, "
        f"{len(df):,} rows; first {first:.2f} s, warm median {warm:.2f} s"
    )
    figures["fulfilment_slices_all"] = {"slices": n, "rows": len(df), "first_s": first, "warm_s": warm}
    ws.close()

    if not args.no_pg:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        engine = sa.create_engine(PG_URL)
        with engine.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
        try:
            from metricloop.demo.generate import generate
            from metricloop.demo.load import load_into

            src = HERE / "data" / f"ws-pg-{args.pg_scale}"
            pg_ws = Workspace.init(src, Settings(home=src))
            if not (pg_ws.data_dir / "labels.csv").exists():
                generate(pg_ws.home, scale=args.pg_scale, seed=42, end=END)
            t0 = time.perf_counter()
            load_into(PG_URL, pg_ws.data_dir, schema=schema)
            load = time.perf_counter() - t0
            pg_ws = workspace(src, args.pg_scale, into=PG_URL, schema=schema)
            pg_rows = int(pg_ws.source("demo").query("SELECT COUNT(*) AS n FROM orders")["n"][0])
            print(f"\nPostgreSQL: {pg_rows:,} order rows (loaded in {load:.1f} s)")
            first, warm, frame = timed(lambda: query_metric(pg_ws, "gmv", by=["region", "category"], grain="day"))
            print(f"GMV by day × region × category: {len(frame.df):,} rows; first {first:.2f} s, warm {warm:.2f} s")
            f1, w1, df = timed(lambda: explode(pg_ws, "fulfilment_rate", dims=dims, combos="all"))
            n = df["slice"].nunique()
            print(f"Fulfilment rate, every combination: {n:,} slices; first {f1:.2f} s, warm {w1:.2f} s")
            figures["postgres"] = {"rows": pg_rows, "gmv_warm_s": warm, "gmv_first_s": first, "fulfilment_warm_s": w1}
            pg_ws.close()
        finally:
            with engine.begin() as c:
                c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            engine.dispose()

    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "query_bench.json").write_text(json.dumps(figures, indent=2))
    print(f"\nfigures written to {out / 'query_bench.json'}")


if __name__ == "__main__":
    main()
