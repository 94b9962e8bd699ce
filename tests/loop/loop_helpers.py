"""Helpers for the loop tests: a small shop whose data we control, clocks and counts.

Everything here builds real things (Parquet files read by DuckDB, a state database); nothing of metricloop is
replaced. The loopback HTTP receiver and SMTP server are tests/loopback.py's, shared with tests/notify.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import func, select

from metricloop.db.times import aware as aware  # re-exported: the tests read stored times with it

SH = ZoneInfo("Asia/Shanghai")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BASE_URL = "http://metricloop.test"


def morning(day: date | str, hour: int = 9, minute: int = 0) -> datetime:
    """09:00 Beijing time on `day` (aware)."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=SH)


def utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


# ------------------------------------------------------------------ the shop: data we control

# store → (region, manager, GMV per day)
STORES = {
    "SH-1": ("East", "mgr.sh1@shop.test", 1200.0),
    "SH-2": ("East", "mgr.sh2@shop.test", 800.0),
    "BJ-1": ("North", "mgr.bj1@shop.test", 1000.0),
    "BJ-2": ("North", "mgr.bj2@shop.test", 600.0),
}
WEEKLY = [1.0, 0.95, 1.0, 1.05, 1.1, 1.3, 1.25]  # Monday … Sunday
FIRST_DAY = date(2026, 8, 3)  # a Monday
LAST_DAY = date(2026, 11, 20)
SOURCE_OWNER = "data.owner@shop.test"
METRIC_OWNER = "sales.owner@shop.test"


@dataclass
class Effect:
    """Multiply the amount of rows matching `where` on the days [first, last] by `factor`."""

    first: date
    last: date
    factor: float
    where: dict[str, str] = field(default_factory=dict)


# Four stores, four incidents (P1, P1, P2, P3; group: none), their notifications to a webhook channel, a route
# with an assignee: the API suites' shop (test_loop_api, test_api_fuzz).
FOUR_DROPS = [
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.3, {"store": "BJ-2"}),
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.7, {"store": "SH-1"}),
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.88, {"store": "SH-2"}),
    Effect(date(2026, 11, 16), date(2026, 11, 16), 0.93, {"store": "BJ-1"}),
]
FOUR_DROPS_LOOP = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
routes:
  - name: store_managers
    matchers: ["monitor=shop_sales"]
    assignee_lookup: {source: shop, table: stores, key: store, column: manager_email}
    team: store operations
    channels: [hook]
"""


def write_shop_data(home: Path, *, effects: list[Effect] = (), missing: list[tuple[date, dict]] = ()) -> None:
    """Hourly sales rows per store and channel, with no noise: a change is only ever what we injected.

    `missing`: (day, where) — rows that never arrived (a late feed)."""
    rows = []
    day = FIRST_DAY
    while day <= LAST_DAY:
        for store, (region, _, per_day) in STORES.items():
            labels = {"store": store, "region": region}
            factor = WEEKLY[day.weekday()]
            for e in effects:
                if e.first <= day <= e.last and all(labels.get(k) == v for k, v in e.where.items()):
                    factor *= e.factor
            gone = any(d == day and all(labels.get(k) == v for k, v in w.items()) for d, w in missing)
            if gone:
                continue
            for hour in range(24):
                for channel, share in (("app", 0.6), ("store", 0.4)):
                    rows.append(
                        {
                            "ts": datetime(day.year, day.month, day.day, hour, 30),
                            "region": region,
                            "store": store,
                            "channel": channel,
                            "amount": round(per_day * share * factor / 24, 4),
                        }
                    )
        day += timedelta(days=1)
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df["ts"] = df["ts"].astype("datetime64[us]")
    df.to_parquet(data / "sales.parquet", index=False)
    pd.DataFrame([{"store": s, "region": r, "manager_email": m} for s, (r, m, _) in STORES.items()]).to_csv(
        data / "stores.csv", index=False
    )


SHOP_DEFS = f"""
sources:
  - name: shop
    type: duckdb
    owner: {SOURCE_OWNER}
    tables: {{sales: data/sales.parquet, stores: data/stores.csv}}
metrics:
  - name: sales
    title: {{zh: 销售额, en: Sales}}
    owner: {METRIC_OWNER}
    domain: sales
    tier: core
    unit: CNY
    source: shop
    table: sales
    time_column: ts
    grain: day
    measure: {{agg: sum, column: amount}}
    dimensions: [region, store, channel]
    quality: {{completeness_by: [region]}}
"""

MONITOR = """
monitors:
  - name: shop_sales
    title: {zh: 门店销售, en: Shop sales}
    metric: sales
    slicing: {dimensions: [region, store], combos: [[region], [region, store]], total: true}
    detector: {detector: change, offset: last_week, max_pct: 0.3, direction: down}
    schedule: {cron: "0 9 * * *"}
    calendar: {china_holidays: false}
"""


def monitor_yaml(**overrides) -> str:
    """The shop monitor with fields replaced, e.g. monitor_yaml(group="monitor", auto_resolve_after=0)."""
    import yaml

    doc = yaml.safe_load(MONITOR)
    doc["monitors"][0].update(overrides)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def apply_yaml(ws, text: str, *, file: str = "test.yaml", author: str = "tester"):
    """What `metricloop apply` does: read, run every check (references, loop, columns), write all or nothing."""
    from metricloop.definitions import service
    from metricloop.metrics.validate import column_check, reference_check
    from metricloop.monitors.validate import loop_check

    entries, problems = service.read_text(text, file=file)
    with ws.db.session() as s:
        return service.apply(
            s,
            entries=entries,
            problems=problems,
            author=author,
            checks=[reference_check, loop_check, column_check(ws)],
        )


# ------------------------------------------------------------------ looking at state


def incidents(ws, **where) -> list:
    from metricloop.incidents.models import Incident

    with ws.db.session() as s:
        q = select(Incident).order_by(Incident.id)
        for k, v in where.items():
            q = q.where(getattr(Incident, k) == v)
        return list(s.scalars(q))


def timeline(ws, incident_id: int) -> list:
    from metricloop.incidents.models import IncidentEvent

    with ws.db.session() as s:
        return list(
            s.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == incident_id)
                .order_by(IncidentEvent.at, IncidentEvent.id)
            )
        )


def outbox(ws, **where) -> list:
    from metricloop.notify.models import Notification

    with ws.db.session() as s:
        q = select(Notification).order_by(Notification.id)
        for k, v in where.items():
            q = q.where(getattr(Notification, k) == v)
        return list(s.scalars(q))


def count(ws, model, *conditions) -> int:
    with ws.db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*conditions))


def runs(ws, monitor: str | None = None) -> list:
    from metricloop.monitors.models import MonitorRun

    with ws.db.session() as s:
        q = select(MonitorRun).order_by(MonitorRun.id)
        if monitor:
            q = q.where(MonitorRun.monitor == monitor)
        return list(s.scalars(q))


def drain(ws, *, start: datetime | None = None, passes: int = 40, step: timedelta = timedelta(hours=1), **options):
    """Dispatch until nothing is pending, moving the clock forward so backoffs end without waiting."""
    from metricloop.notify.dispatcher import DispatchStats, dispatch_once
    from metricloop.notify.outbox import counts

    total = DispatchStats()
    start = start or datetime.now(UTC)
    for i in range(passes):
        total += dispatch_once(ws, now=start + i * step, **options)
        with ws.db.session() as s:
            c = counts(s)
        if c["pending"] == 0 and c["sending"] == 0:
            break
    return total


# ------------------------------------------------------------------ the grouping ratio


@dataclass
class GroupingRatio:
    mornings: int
    runs: int
    failed_runs: int
    anomalies: int
    alerts: int
    incidents: int
    dq_incidents: int
    by_monitor: dict

    @property
    def ratio(self) -> float:
        return self.anomalies / self.incidents if self.incidents else float("inf")

    def __str__(self) -> str:
        per = ", ".join(f"{m} {a}:{i}" for m, (a, i) in sorted(self.by_monitor.items()))
        return (
            f"grouping ratio {self.anomalies}:{self.incidents} = {self.ratio:.2f} raw anomalies per metric incident "
            f"({self.alerts} alerts; {self.runs} runs over {self.mornings} mornings, {self.failed_runs} failed; "
            f"{self.dq_incidents} data-quality incidents besides) — per monitor anomalies:incidents: {per}"
        )


def replay_mornings(ws, days: list[date], *, monitors: list[str] | None = None) -> list:
    """Run monitors as the scheduler would have each morning at 09:00 Beijing time (hourly ones catch up)."""
    from metricloop.monitors.service import run_monitor

    names = monitors or sorted(ws.catalog().all("monitor"))
    out = []
    for day in days:
        for name in names:
            at = morning(day)
            out.append(run_monitor(ws, name, at=at, trigger="schedule", scheduled_for=utc(at), now=utc(at)))
    return out


def _replay_worker(home: str, db_url: str | None, days: list[str], monitors: list[str]) -> int:
    from metricloop.settings import Settings
    from metricloop.workspace import Workspace

    ws = Workspace(Path(home), Settings(home=Path(home), db=db_url, user="replay"))
    try:
        return len(replay_mornings(ws, [date.fromisoformat(d) for d in days], monitors=monitors))
    finally:
        ws.close()


def replay_parallel(ws, days: list[date], *, processes: int = 2) -> None:
    """replay_mornings with the monitors shared out over processes (each monitor's runs stay in order)."""
    import multiprocessing as mp

    names = sorted(ws.catalog().all("monitor"))
    buckets = [names[i::processes] for i in range(processes)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes) as pool:
        jobs = [
            pool.apply_async(_replay_worker, (str(ws.home), ws.settings.db, [d.isoformat() for d in days], bucket))
            for bucket in buckets
            if bucket
        ]
        for j in jobs:
            j.get(timeout=900)


def grouping_ratio(ws, days: list[date] | None = None, *, replay: bool = True, processes: int = 2) -> GroupingRatio:
    """Raw anomalies : metric incidents after running every monitor each morning of `days`.

    With replay=False it only counts what the state already holds (e.g. after a shared replay)."""
    from metricloop.alerting.models import Alert
    from metricloop.incidents.models import Incident
    from metricloop.monitors.models import Anomaly, MonitorRun

    if replay:
        replay_parallel(ws, days, processes=processes)
    with ws.db.session() as s:
        anomalies = s.scalar(select(func.count()).select_from(Anomaly))
        alerts = s.scalar(select(func.count()).select_from(Alert).where(Alert.kind == "metric"))
        n_inc = s.scalar(select(func.count()).select_from(Incident).where(Incident.kind == "metric"))
        dq = s.scalar(select(func.count()).select_from(Incident).where(Incident.kind == "data_quality"))
        n_runs = s.scalar(select(func.count()).select_from(MonitorRun))
        failed = s.scalar(select(func.count()).select_from(MonitorRun).where(MonitorRun.status == "failed"))
        per_a = dict(s.execute(select(Anomaly.monitor, func.count()).group_by(Anomaly.monitor)).all())
        per_i = dict(
            s.execute(
                select(Incident.monitor, func.count()).where(Incident.kind == "metric").group_by(Incident.monitor)
            ).all()
        )
    by_monitor = {m: (per_a.get(m, 0), per_i.get(m, 0)) for m in set(per_a) | set(per_i)}
    return GroupingRatio(
        mornings=len(days or []),
        runs=n_runs,
        failed_runs=failed,
        anomalies=anomalies,
        alerts=alerts,
        incidents=n_inc,
        dq_incidents=dq,
        by_monitor=by_monitor,
    )


def cli_runner(ws, monkeypatch, *, user: str | None = None):
    """run(*args) → (exit code, output) of `metricloop ARGS` on the workspace `ws` (its home and state database)."""
    from typer.testing import CliRunner

    from metricloop.cli import app

    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    if ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", ws.settings.db)
    if user:
        monkeypatch.setenv("METRICLOOP_USER", user)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    run.ws = ws
    return run
