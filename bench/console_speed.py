"""The console's speed: the incident list over 10,000 incidents, a metric page over 2 years of daily data broken
down over 40 stores, and what a browser downloads on the first load of each page.

    .venv/bin/python bench/console_speed.py                 # SQLite state (the workspace default)
    .venv/bin/python bench/console_speed.py --state postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/console_speed.py --requests 60

It builds a throwaway workspace (bench/data/console-speed, rebuilt each run): a DuckDB source over a Parquet file of
730 days × 40 stores × 3 channels (87,600 rows), a sales metric with store/region/channel, and 10,000 incidents
over the past year (states, severities, assignees and teams mixed). Requests go through the real app in process
(FastAPI TestClient, a logged-in admin and a logged-in operator of one domain), so the figures are server time
plus a thin client: each is timed with perf_counter, and the process's CPU time is reported beside the wall time
(the machine is shared). The page weight is what a first visit downloads: the HTML and every script and style
sheet it names, as sent on the wire (gzip accepted, as every browser does), and uncompressed for comparison.
Bars (issue 13): list p95 ≤ 300 ms; metric page ≤ 500 ms; first load < 300 KB. It prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "bench" / "data" / "console-speed"
PASSWORD = "bench password 1"
STORES = [f"S{i:02d}" for i in range(1, 41)]
REGIONS = ["East", "North", "South", "West"]

DEFS = """
sources:
  - {name: shop, type: duckdb, owner: data@bench.test, tables: {sales: data/sales.parquet}}
metrics:
  - name: sales
    title: {zh: 销售额, en: Sales}
    owner: sales.owner@bench.test
    domain: retail
    tier: core
    unit: CNY
    source: shop
    table: sales
    time_column: ts
    grain: day
    measure: {agg: sum, column: amount}
    dimensions: [region, store, channel]
  - name: orders
    title: {zh: 订单数, en: Orders}
    owner: ops@bench.test
    domain: logistics
    tier: important
    source: shop
    table: sales
    time_column: ts
    grain: day
    measure: {agg: count}
    dimensions: [region, store]
monitors:
  - name: store_sales
    metric: sales
    slicing: {dimensions: [store], combos: each, total: true}
    detector: {detector: change, offset: last_week, max_pct: 0.3, direction: down}
    schedule: {cron: "0 9 * * *"}
    calendar: {china_holidays: false}
"""


def write_data(home: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    days = pd.date_range(end=pd.Timestamp(date.today()) - pd.Timedelta(days=1), periods=730, freq="D")
    rows = []
    for k, store in enumerate(STORES):
        base = 5000 + 300 * k
        for channel in ("app", "store", "web"):
            weekly = 1 + 0.2 * np.sin(np.arange(len(days)) * 2 * np.pi / 7)
            amount = base * weekly * rng.lognormal(0, 0.1, len(days))
            frame = {"ts": days + pd.Timedelta(hours=12), "store": store, "region": REGIONS[k % 4]}
            rows.append(pd.DataFrame(frame | {"channel": channel, "amount": amount.round(2)}))
    df = pd.concat(rows, ignore_index=True)
    (home / "data").mkdir(parents=True, exist_ok=True)
    df.to_parquet(home / "data" / "sales.parquet", index=False)
    print(f"data: {len(df):,} rows, {len(days)} days × {len(STORES)} stores × 3 channels", flush=True)


def make_workspace(state: str | None):
    from metricloop.auth import users
    from metricloop.definitions import service
    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    write_data(HOME)
    ws = Workspace.init(HOME, Settings(home=HOME, user="bench", base_url="http://127.0.0.1", db=state))
    entries, problems = service.read_text(DEFS, file="bench.yaml")
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="bench")
        users.add_user(s, name="admin", password=PASSWORD, role="admin")
        users.add_user(s, name="op", password=PASSWORD, role="operator", domains=["retail"])
    return ws


def add_incidents(ws, n: int) -> None:
    from sqlalchemy import insert

    from metricloop.incidents.models import Incident

    rng = random.Random(11)
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        store = rng.choice(STORES)
        state = rng.choices(["triggered", "acknowledged", "resolved", "reviewed"], [2, 2, 5, 1])[0]
        created = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
        rows.append({
            "title": f"销售额 {store} 下降 {rng.randint(20, 70)}%", "state": state,
            "severity": rng.choices(["P1", "P2", "P3"], [1, 3, 6])[0], "kind": "metric",
            "monitor": "store_sales", "metric": rng.choice(["sales", "sales", "sales", "orders"]),
            "group_key": f"g{i}", "slices": [f"store={store}"], "labels": {"store": store}, "summary": {},
            "assignee": rng.choice(["zhang@bench.test", "li@bench.test", "wang@bench.test", ""]),
            "team": rng.choice(["east ops", "north ops", ""]), "channels": [], "created_at": created,
            "updated_at": created, "ack_breached": rng.random() < 0.05, "resolve_breached": False,
        })  # fmt: skip
    with ws.db.session() as s:
        for k in range(0, n, 2000):
            s.execute(insert(Incident), rows[k : k + 2000])
    print(f"incidents: {n:,}", flush=True)


def client_for(ws, name: str):
    from fastapi.testclient import TestClient

    from metricloop.app import create_app

    c = TestClient(create_app(ws), base_url="http://127.0.0.1")
    page = c.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = c.post("/login", data={"name": name, "password": PASSWORD, "csrf": token, "next": "/console"},
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    return c


def timed(c, path: str, n: int, headers=None) -> dict:
    c.get(path, headers=headers)  # the first call warms caches (templates, the catalog, DuckDB views)
    walls = []
    cpu0 = time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        r = c.get(path, headers=headers)
        walls.append(time.perf_counter() - t)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    cpu = (time.process_time() - cpu0) / n
    walls.sort()
    return {
        "p50": statistics.median(walls) * 1000,
        "p95": walls[max(0, int(round(0.95 * len(walls))) - 1)] * 1000,
        "max": walls[-1] * 1000,
        "cpu": cpu * 1000,
    }


def weight(c, path: str) -> tuple[int, int, bool]:
    """(bytes on the wire with gzip accepted, bytes uncompressed, ECharts loaded) of a first visit to `path`."""
    page = c.get(path)
    assert page.status_code == 200, (path, page.status_code)
    wire = raw = len(page.content)
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
    for a in assets:
        z = c.get(a, headers={"Accept-Encoding": "gzip"})
        wire += z.num_bytes_downloaded
        raw += len(z.content)
    return wire, raw, any("echarts" in a for a in assets)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default=None, help="a PostgreSQL URL for the state database (default: SQLite)")
    ap.add_argument("--requests", type=int, default=40, help="timed requests per page")
    ap.add_argument("--incidents", type=int, default=10_000)
    args = ap.parse_args()

    t0 = time.perf_counter()
    ws = make_workspace(args.state)
    add_incidents(ws, args.incidents)
    print(f"built in {time.perf_counter() - t0:.1f} s; state: {'PostgreSQL' if args.state else 'SQLite'}\n")
    admin, op = client_for(ws, "admin"), client_for(ws, "op")
    (first_id,) = [int(x) for x in re.findall(r'href="/incidents/(\d+)"', admin.get("/console/incidents").text)[:1]]

    lists = {
        "incident list, page 1 (admin)": (admin, "/console/incidents"),
        "incident list, page 200 (offset 4,975)": (admin, "/console/incidents?page=200"),
        "incident list, open P1, a month": (admin, "/console/incidents?state=triggered,acknowledged&severity=P1"
                                            f"&from={(date.today() - timedelta(days=30)).isoformat()}"),
        "incident list, one domain (operator)": (op, "/console/incidents"),
        "incident list, HTMX part (filter change)": (admin, "/console/incidents?severity=P2"),
        "home (open incidents, SLA, runs)": (admin, "/console"),
    }
    pages = {
        "metric page, total (2 years daily)": (admin, "/console/metrics/sales"),
        "metric page, by store (40 stores)": (admin, "/console/metrics/sales?by=store"),
        "metric chart part, by store (HTMX)": (admin, "/console/metrics/sales?by=store"),
        "metric page, by store, all 730 days": (admin, "/console/metrics/sales?by=store&days=730"),
    }
    print(f"{'page':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'CPU ms':>8}  bar")
    for label, (c, path) in lists.items():
        hx = {"HX-Request": "true"} if "HTMX" in label else None
        r = timed(c, path, args.requests, hx)
        bar = "p95 ≤ 300 ms" if label.startswith("incident list") else ""
        ratio = f"  ({r['p95'] / 300:.2f} of the bar)" if bar else ""
        print(f"{label:44} {r['p50']:8.1f} {r['p95']:8.1f} {r['max']:8.1f} {r['cpu']:8.1f}  {bar}{ratio}")
    for label, (c, path) in pages.items():
        hx = {"HX-Request": "true"} if "HTMX" in label else None
        r = timed(c, path, max(10, args.requests // 2), hx)
        print(f"{label:44} {r['p50']:8.1f} {r['p95']:8.1f} {r['max']:8.1f} {r['cpu']:8.1f}  ≤ 500 ms"
              f"  ({r['p95'] / 500:.2f} of the bar)")  # fmt: skip

    print(f"\n{'first load':44} {'wire KB':>8} {'raw KB':>8}  ECharts  bar < 300 KB")
    for path in ("/console", "/console/incidents", f"/incidents/{first_id}", "/console/metrics",
                 "/console/metrics/sales?by=store", "/console/monitors", "/console/monitors/store_sales",
                 "/console/operations", "/console/outbox", "/console/users"):  # fmt: skip
        wire, raw, charts = weight(admin, path)
        print(f"{path:44} {wire / 1024:8.1f} {raw / 1024:8.1f}  {'yes' if charts else 'no ':7}  "
              f"{'ok' if wire < 300 * 1024 else 'OVER'} ({wire / (300 * 1024):.2f})")
    ws.close()
    shutil.rmtree(HOME, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
