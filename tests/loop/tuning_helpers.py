"""A noisy shop for the tuning tests: five steady stores, one noisy one, two real drops and one subtle one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

FIRST = date(2025, 11, 1)
LAST = date(2026, 11, 20)
STORES = {"S1": 1000.0, "S2": 900.0, "S3": 1100.0, "S4": 800.0, "S5": 950.0, "N1": 1000.0}
NOISE = {"N1": 0.08}  # the noisy store's day-to-day spread; the others' is 4 %
DROPS = [  # (store, first day, days, factor): what really happened
    ("S1", date(2026, 6, 10), 2, 0.45),
    ("S2", date(2026, 9, 15), 3, 0.5),
    ("S4", date(2026, 8, 4), 1, 0.35),  # one day: the till was down all afternoon
]
SUBTLE = ("S3", date(2026, 10, 6), 4, 0.8)  # a drop people saw and the monitor missed
# the noisy store's till sends half its takings now and then, for two days: dips nobody needs to hear about
GLITCHES = [date(2026, 2, 3), date(2026, 3, 17), date(2026, 4, 21), date(2026, 5, 26), date(2026, 7, 7),
            date(2026, 8, 11), date(2026, 9, 1), date(2026, 10, 20), date(2026, 11, 10)]

DEFS = """
sources:
  - {name: shop, type: duckdb, tables: {sales: data/sales.parquet}}
metrics:
  - name: sales
    title: {zh: 销售额, en: Sales}
    source: shop
    table: sales
    time_column: ts
    grain: day
    measure: {agg: sum, column: amount}
    dimensions: [store]
    good_direction: up
    owner: sales.owner@shop.test
    domain: sales
monitors:
  - name: noisy_sales
    metric: sales
    slicing: {dimensions: [store], total: false}
    detector: {detector: auto, sensitivity: 9}
    schedule: {cron: "0 9 * * *"}
    calendar: {china_holidays: false}
"""


def write_data(home: Path, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    days = (LAST - FIRST).days + 1
    for store, level in STORES.items():
        noise = rng.normal(0, NOISE.get(store, 0.04), days)
        for i in range(days):
            day = FIRST + timedelta(days=i)
            factor = (1.0 + 0.15 * (day.weekday() >= 5)) * np.exp(noise[i])
            if store == "N1" and (day in GLITCHES or day - timedelta(days=1) in GLITCHES):
                factor *= 0.5
            for s, first, n, f in [*DROPS, SUBTLE]:
                if s == store and first <= day < first + timedelta(days=n):
                    factor *= f
            rows.append({"ts": datetime(day.year, day.month, day.day, 12), "store": store,
                         "amount": round(level * factor, 2)})
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df["ts"] = df["ts"].astype("datetime64[us]")
    df.to_parquet(data / "sales.parquet", index=False)


def label(s, kind: str, store: str, first: date, last: date | None = None, *, by: str = "ann",
          at: datetime | None = None, monitor: str | None = "noisy_sales") -> None:
    from metricloop.feedback.models import Feedback

    last = last or first
    s.add(Feedback(label=kind, monitor=monitor, metric="sales", slice=f"store={store}",
                   start=datetime(first.year, first.month, first.day), end=datetime(last.year, last.month, last.day),
                   created_by=by, created_at=at or datetime(2026, 11, 20, 3, tzinfo=UTC)))


def true_labels(s) -> None:
    """The team's labels: both real drops confirmed, the glitches false alarms, the subtle drop missed."""
    for day in GLITCHES:
        label(s, "false_alarm", "N1", day, day + timedelta(days=1))
    for store, first, n, _ in DROPS:
        label(s, "confirmed", store, first, first + timedelta(days=n - 1))
    store, first, n, _ = SUBTLE
    label(s, "missed", store, first, first + timedelta(days=n - 1))
