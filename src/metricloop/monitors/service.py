"""Run a monitor: check data quality, slice the metric, detect, and pass anomalies down the alert path.

A run is a row with its start, end, status, counts and error. A failing source marks the run failed
and raises one data-quality alert to the data owner; it never raises out of `run_monitor`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from metricloop.alerting.models import Alert
from metricloop.alerting.mutes import Mutes
from metricloop.alerting.pipeline import OPEN_ALERT, OPEN_INCIDENT, Candidate, Context, fingerprint, run_pipeline
from metricloop.alerting.severity import Wholes
from metricloop.db.times import as_utc, aware
from metricloop.definitions.durations import parse_duration
from metricloop.definitions.kinds import Catalog
from metricloop.definitions.schemas import MetricSpec
from metricloop.errors import MetricloopError, NotFound, SourceError
from metricloop.feedback.rebaseline import history_cuts
from metricloop.grains import ByGrain
from metricloop.incidents import service as incidents
from metricloop.incidents.models import Incident
from metricloop.metrics.quality import base_metrics
from metricloop.metrics.slices import explode, parse_slice
from metricloop.metrics.timeutil import FREQ, floor
from metricloop.monitors.models import Anomaly, MonitorRun
from metricloop.monitors.schemas import MonitorSpec

# a step grain (5min, 30min, 2h) takes its class's: 3 days under 10 minutes, 35 days under a day
DEFAULT_HISTORY = ByGrain({"minute": "3d", "hour": "35d", "day": "400d", "week": "730d", "month": "1460d"})
MAX_CATCHUP_BUCKETS = 200
# Runs that take a schedule slot. A manual run (or a replay of an old day) judges what it was asked to and
# leaves the slot to the scheduler.
SCHEDULED = ("schedule", "catchup")
# A manual run as of a moment before now (less this much, for clocks and slow requests) is a backtest, unless told
# to notify: it judges what was, writes its run row and nothing else.
BACKTEST_BEFORE = timedelta(minutes=1)
BACKTEST_PREVIEW = 50  # flagged points listed in a backtest run's details


@dataclass
class Window:
    start: datetime  # local, inclusive
    until: datetime  # local, exclusive: every bucket before it is complete
    evaluate_from: datetime  # buckets at or after this may raise alerts


def local_now(tz: str, at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(ZoneInfo(tz)).replace(tzinfo=None)
    return at.astimezone(ZoneInfo(tz)).replace(tzinfo=None) if at.tzinfo else at


def window_for(monitor: MonitorSpec, metric: MetricSpec, grain: str, at_local: datetime, last_until) -> Window:
    until = floor(pd.Timestamp(at_local) - parse_duration(monitor.delay), grain).to_pydatetime()
    step = pd.tseries.frequencies.to_offset(FREQ[grain])
    history = parse_duration(monitor.history or DEFAULT_HISTORY[grain])
    evaluate_from = (pd.Timestamp(until) - monitor.evaluate * step).to_pydatetime()
    if last_until is not None and last_until < evaluate_from:
        # catch up once: judge every bucket since the last run, in this one run
        oldest = (pd.Timestamp(until) - MAX_CATCHUP_BUCKETS * step).to_pydatetime()
        evaluate_from = max(last_until, oldest)
    return Window(start=until - history, until=until, evaluate_from=evaluate_from)


def build_calendar(ws, monitor: MonitorSpec):
    from metricloop.detect.calendar import Calendar, read_events

    events = []
    for f in monitor.calendar.events:
        path = Path(f) if Path(f).is_absolute() else ws.home / f
        if not path.exists():
            raise MetricloopError(
                f"calendar events file {path} does not exist", where=f"monitor {monitor.name}.calendar"
            )
        events.extend(read_events(path, behaviour=monitor.calendar.behaviour))
    return Calendar(events, china_holidays=monitor.calendar.china_holidays)


def base_labels(monitor: MonitorSpec, metric: MetricSpec, catalog: Catalog) -> dict[str, str]:
    labels = {
        "monitor": monitor.name,
        "metric": metric.name,
        "domain": metric.domain,
        "tier": metric.tier,
        "kind": "metric",
    }
    if metric.source:
        labels["source"] = metric.source
    labels.update(monitor.labels)
    return labels


def _last_until(s, monitor: str) -> datetime | None:
    return s.scalar(
        select(MonitorRun.data_until)
        .where(
            MonitorRun.monitor == monitor,
            MonitorRun.status == "ok",
            MonitorRun.trigger != "backtest",  # a look at the past is not where the scheduler goes on from
            MonitorRun.data_until.is_not(None),
        )
        .order_by(MonitorRun.data_until.desc())
        .limit(1)
    )


def run_monitor(
    ws,
    name: str,
    *,
    at: datetime | None = None,
    trigger: str = "manual",
    scheduled_for: datetime | None = None,
    now: datetime | None = None,
    claim: bool = False,
) -> MonitorRun | None:
    """Evaluate one monitor as of `at` (aware, or naive in the metric's timezone). Never raises for data problems.

    With `claim`, the run first claims its slot (`scheduled_for`) and returns None when another instance already
    has: several instances may share one state database.

    One monitor runs one run at a time (a lock per monitor, across processes and hosts). A run that finds another
    in progress does not wait: a scheduled one returns None and its slot stays due for the next tick; any other
    is recorded as `skipped`, saying which run it met.

    `trigger="backtest"` judges and records what it would have flagged in the run's details, and writes nothing
    else: no anomaly, alert, incident or notification, and no data-quality alert."""
    now = as_utc(now)
    slot = as_utc(scheduled_for or now)
    with run_lock(ws, name) as held:
        if not held:
            return None if claim else _skipped(ws, name, slot, trigger=trigger, now=now)
        return _run_locked(ws, name, at=at, trigger=trigger, slot=slot, now=now, claim=claim)


def _run_locked(ws, name: str, *, at, trigger: str, slot: datetime, now: datetime, claim: bool) -> MonitorRun | None:
    catalog = ws.catalog()
    monitor: MonitorSpec = catalog.get("monitor", name)
    started = datetime.now(UTC)
    run_id = _claim_slot(ws, name, slot, trigger=trigger, now=now, exclusive=claim)  # first: a run met can be named
    if run_id is None:
        return None
    metric = catalog.metric(monitor.metric)
    grain = monitor.grain or metric.grain
    at_local = local_now(metric.timezone, at)
    backtest = trigger == "backtest"
    with ws.db.session() as s:
        version = _version(s, name)
        last_until = _last_until(s, name)
        win = window_for(monitor, metric, grain, at_local, last_until)
        run = s.get(MonitorRun, run_id)
        run.monitor_version, run.data_until = version, win.until
    try:
        details = _evaluate(ws, catalog, monitor, metric, grain, win, run.id, now, backtest=backtest)
        status, error = "ok", ""
    except IntegrityError as e:
        if "anomal" not in str(e).lower():
            raise
        # another run (one that does not take the lock: an older version sharing the database) wrote the same
        # points between our read and our write; they are recorded once, by it
        details, status, error = {"skipped": "another run recorded the same points at the same time"}, "skipped", ""
    except Exception as e:  # a run must never take the service down
        user_error = isinstance(e, MetricloopError)
        details, status = {}, "failed"
        error = str(e) if user_error else f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"
        if backtest:
            details["backtest"] = True
        elif isinstance(e, SourceError):  # the data owner hears of it once; metric alerts wait
            with ws.db.session() as s:
                raise_data_quality(
                    s,
                    ws,
                    catalog,
                    monitor,
                    base_metrics(catalog, metric)[0],
                    check="source",
                    slice_="*",
                    message=str(e).splitlines()[0],
                    now=now,
                )
    with ws.db.session() as s:
        run = s.get(MonitorRun, run.id)
        # on the run's clock (a replay runs in the past): started_at plus the time it took
        run.status, run.error, run.finished_at = status, error, now + (datetime.now(UTC) - started)
        run.details = details
        reached = details.get("judged_until") or details.get("waiting_for_data")
        if reached:  # buckets the data has not reached are left for a later run: it catches up from here
            run.data_until = min(run.data_until, datetime.fromisoformat(reached))
        run.series_evaluated = details.get("series", 0)
        run.anomalies = details.get("anomalies", 0)
        run.alerts = details.get("alerts_new", 0)
    return run


def _claim_slot(ws, name: str, slot: datetime, *, trigger: str, now: datetime, exclusive: bool) -> int | None:
    """Write the run's row; when `exclusive`, only if no other run has this slot (or a later one).

    The check and the insert are serialized across processes and hosts: on PostgreSQL by an advisory lock per
    monitor, on SQLite by the database's write lock, which the INSERT (the transaction's first statement) takes."""
    with ws.db.session() as s:
        if exclusive and s.get_bind().dialect.name == "postgresql":
            state = _state_identity(s.connection())
            key = int.from_bytes(hashlib.sha256(f"metricloop:run:{state}:{name}".encode()).digest()[:8], "big",
                                 signed=True)
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        run = MonitorRun(monitor=name, trigger=trigger, scheduled_for=slot, started_at=now, status="running")
        s.add(run)
        s.flush()
        if exclusive:
            other = s.scalar(
                select(MonitorRun.id)
                .where(
                    MonitorRun.monitor == name,
                    MonitorRun.trigger.in_(SCHEDULED),
                    MonitorRun.scheduled_for >= slot,
                    MonitorRun.id != run.id,
                )
                .limit(1)
            )
            if other is not None:  # another instance has run (or is running) this slot
                s.rollback()
                return None
        return run.id


def _skipped(ws, name: str, slot: datetime, *, trigger: str, now: datetime) -> MonitorRun:
    """The row of a run that met another run of the same monitor in progress."""
    import time

    for _ in range(20):  # the holder writes its row just after taking the lock
        with ws.db.session() as s:
            other = s.scalar(
                select(MonitorRun.id)
                .where(MonitorRun.monitor == name, MonitorRun.status == "running")
                .order_by(MonitorRun.id.desc())
                .limit(1)
            )
        if other is not None:
            break
        time.sleep(0.1)
    with ws.db.session() as s:
        which = f"run #{other}" if other is not None else "another run"
        run = MonitorRun(
            monitor=name,
            trigger=trigger,
            scheduled_for=slot,
            started_at=now,
            finished_at=now,
            status="skipped",
            details={
                "skipped": f"{which} of monitor {name} is in progress (a monitor runs one run at a time); "
                "nothing was judged: run it again when that run has ended",
                "running": other,
            },
        )
        s.add(run)
    return run


# ------------------------------------------------------------------ one run at a time per monitor

_local_locks: dict[tuple[str, str], threading.Lock] = {}
_local_guard = threading.Lock()


def _lock_key(name: str, state: str = "") -> bytes:
    """The lock's key for monitor `name` in the state `state` (database and schema): advisory locks and GET_LOCK
    are server-wide, and two workspaces on one server (two schemas of one database) must not block each other."""
    return hashlib.sha256(f"metricloop:running:{state}:{name}".encode()).digest()


def _state_identity(conn) -> str:
    """Which state a server connection works in: the database and, on PostgreSQL, the schema it resolves to."""
    if conn.dialect.name == "postgresql":
        return str(conn.scalar(text("SELECT current_database() || '.' || current_schema()")))
    return str(conn.scalar(text("SELECT DATABASE()")))


@contextmanager
def run_lock(ws, name: str):
    """Yield True when this process now runs monitor `name` alone, False when another run holds it; never waits.

    PostgreSQL: a session advisory lock; MySQL/MariaDB: GET_LOCK; both are released when their connection ends, so
    a crashed process frees them. SQLite (one host): flock on a file beside the database (HOME/state.db.locks/),
    freed by the OS when the process ends. Other databases: one run at a time per process."""
    engine = ws.db.engine
    dialect = engine.dialect.name
    key = _lock_key(name)
    if dialect in ("postgresql", "mysql", "mariadb"):
        pg = dialect == "postgresql"
        conn = engine.connect()
        held = False
        try:
            key = _lock_key(name, _state_identity(conn))
            number = int.from_bytes(key[:8], "big", signed=True)
            label = "metricloop:" + key.hex()[:40]
            if pg:
                held = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": number}))
            else:
                held = conn.scalar(text("SELECT GET_LOCK(:k, 0)"), {"k": label}) == 1
            conn.commit()
            yield held
        finally:
            try:
                if held:
                    if pg:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": number})
                    else:
                        conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": label})
                    conn.commit()
                conn.close()
            except Exception:  # never back into the pool with the lock held: drop the connection, and the lock
                conn.invalidate()
        return
    database = engine.url.database if dialect == "sqlite" else None
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None
    if database and database != ":memory:" and fcntl is not None:
        folder = Path(f"{database}.locks")
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / f"{key.hex()[:32]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                held = False
            try:
                yield held
            finally:
                if held:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    with _local_guard:
        lock = _local_locks.setdefault((str(engine.url), name), threading.Lock())
    held = lock.acquire(blocking=False)
    try:
        yield held
    finally:
        if held:
            lock.release()


# ------------------------------------------------------------------ runs people ask for


class BadRunTime(MetricloopError):
    status_code = 422


def manual_run(
    ws, name: str, *, at: datetime | None = None, notify: bool = False, now: datetime | None = None, where: str = "at"
) -> MonitorRun:
    """A run a person asked for (`metricloop run --force`, POST /api/monitors/{name}/run), outside the schedule.

    Without `at` it judges now and takes the alert path as a scheduled run does. With `at` before now it is a
    backtest (trigger `backtest`): what it would flag goes into the run's details and nothing else is written or
    sent, unless `notify` says to take the alert path as of then. A meaningless `at` is refused (see check_at)."""
    catalog = ws.catalog()
    monitor: MonitorSpec = catalog.get("monitor", name)
    now = as_utc(now)
    trigger = "manual"
    if at is not None:
        check_at(ws, catalog, monitor, at, now=now, where=where)
        if as_utc(_aware_at(catalog, monitor, at)) < now - BACKTEST_BEFORE and not notify:
            trigger = "backtest"
    return run_monitor(ws, name, at=at, trigger=trigger, now=now)


def _aware_at(catalog, monitor: MonitorSpec, at: datetime) -> datetime:
    """`at` with its zone: a naive one is in the metric's timezone."""
    if at.tzinfo is not None:
        return at
    return at.replace(tzinfo=ZoneInfo(catalog.metric(monitor.metric).timezone))


def check_at(ws, catalog, monitor: MonitorSpec, at: datetime, *, now: datetime, where: str = "at") -> None:
    """Refuse an `at` a run cannot mean: later than now (its data does not exist yet), or so early that the
    buckets the run would judge end before the metric's first row (1970, or `0` read as a Unix time)."""
    metric = catalog.metric(monitor.metric)
    moment = as_utc(_aware_at(catalog, monitor, at))
    if moment > now + BACKTEST_BEFORE:
        raise BadRunTime(
            f"{moment.isoformat()} is in the future (now is {now.replace(microsecond=0).isoformat()}): a run "
            "judges buckets whose data has arrived; leave it out to run as of now",
            where=where,
        )
    grain = monitor.grain or metric.grain
    win = window_for(monitor, metric, grain, local_now(metric.timezone, moment), None)
    first = _first_row(ws, catalog, metric)
    if first is not None and win.until <= first:
        raise BadRunTime(
            f"{moment.isoformat()} is before the data of metric {metric.name}: as of then the run would judge "
            f"buckets before {win.until:%Y-%m-%d %H:%M}, and its first row is at {first:%Y-%m-%d %H:%M} "
            f"({metric.timezone})",
            where=where,
        )


def check_clock(ws, at: datetime, *, only: str | None = None, where: str = "--at") -> None:
    """`metricloop run --at` (no --force) sets the scheduler's clock: refuse one check_at refuses for a monitor."""
    catalog = ws.catalog()
    now = as_utc(None)
    for name, monitor in sorted(catalog.all("monitor").items()):
        if (only and name != only) or not monitor.enabled:
            continue
        check_at(ws, catalog, monitor, at, now=now, where=where)


def _first_row(ws, catalog, metric: MetricSpec) -> datetime | None:
    """The oldest row of the metric's data (metric-local, naive); None when it has none or cannot be read (the
    run itself then says why)."""
    from sqlglot import exp

    from metricloop.metrics.compile import col, where_clause

    firsts = []
    for base in base_metrics(catalog, metric):
        try:
            source = ws.source(base.source, catalog)
            q = exp.select(exp.Min(this=col(base.time_column)).as_("first", quoted=True)).from_(
                source.relation(table=base.table, sql=base.sql)
            )
            for cond in where_clause(base, source.dialect, start=None, end=None, where=None):
                q = q.where(cond)
            value = source.query(q.sql(dialect=source.dialect), timezone=base.timezone).iloc[0]["first"]
        except MetricloopError:
            return None
        if value is None or pd.isna(value):
            continue
        t = pd.Timestamp(value)
        if t.tzinfo is not None:
            t = t.tz_convert(base.timezone).tz_localize(None)
        firsts.append(t.to_pydatetime())
    return min(firsts) if firsts else None


def _version(s, name: str) -> int:
    from metricloop.db.models import Definition

    row = s.scalar(select(Definition.version).where(Definition.kind == "monitor", Definition.name == name))
    return row or 0


def _evaluate(
    ws, catalog, monitor, metric, grain, win: Window, run_id: int, now: datetime, *, backtest: bool = False
) -> dict:
    from metricloop.detect import detector_from_dict
    from metricloop.metrics.quality import check_metric

    details: dict = {
        "window": [win.start.isoformat(), win.until.isoformat()],
        "evaluate_from": win.evaluate_from.isoformat(),
    }
    if backtest:
        details["backtest"] = True
    # 1. data quality: problems hold metric alerts back and go to the data owner instead
    with ws.db.session() as s:
        mutes = Mutes.load(s, catalog, now=now)
        failing = []  # (base metric, check, slice)
        checks = check_metric(ws, metric.name, at=win.until, catalog=catalog)
        broken = [c for c in checks if c.status == "error"]
        if broken:  # the check could not read the data: a source failure (one alert), not a data problem per check
            raise SourceError(broken[0].message)
        for check in checks:
            if check.status == "ok":
                continue
            base = catalog.metric(check.metric)  # the metric whose table holds the data
            failing.append((base.name, check.check, check.slice))
            if not backtest:
                raise_data_quality(
                    s, ws, catalog, monitor, base, check=check.check, slice_=check.slice, message=check.message,
                    now=now,
                )
            mutes.inhibit(parse_slice(check.slice), f"data quality ({check.check}) on {base.name}")
        for base in base_metrics(catalog, metric):
            if not backtest:
                resolve_data_quality(
                    s, ws, catalog, monitor, base, now=now, failing=[(c, sl) for b, c, sl in failing if b == base.name]
                )
        details["data_quality"] = [f"{b}:{c}:{sl}" for b, c, sl in failing]
    # 2. only buckets the data has reached: a zero-filled count must not read "0 orders" for an hour whose
    #    rows have not arrived yet (lateness itself is the freshness check's business, at the metric's grain)
    until = _data_reached(checks, metric, grain, win.until)
    if until <= win.evaluate_from:
        details.update(series=0, anomalies=0, waiting_for_data=until.isoformat())
        return details
    details["judged_until"] = until.isoformat()
    df = monitor_series(ws, catalog, monitor, metric, start=win.start, end=until, grain=grain)
    if df.empty:
        details.update(series=0, anomalies=0)
        return details
    wide = df.pivot_table(index="slice", columns="time", values="value", aggfunc="first", dropna=False)
    names = list(wide.index)
    times = pd.DatetimeIndex(wide.columns)
    num = den = None
    if metric.is_ratio:
        num = df.pivot_table(index="slice", columns="time", values="numerator", aggfunc="first", dropna=False)
        den = df.pivot_table(index="slice", columns="time", values="denominator", aggfunc="first", dropna=False)
        num, den = (
            num.reindex(index=names, columns=times).to_numpy(float),
            den.reindex(index=names, columns=times).to_numpy(float),
        )
    from metricloop.monitors.overrides import detect_with_overrides

    detector = detector_from_dict(monitor.detector)
    with ws.db.session() as s:  # feedback `new_normal`: those series are judged from their new level on
        cuts = history_cuts(s, monitor.name, names)
    if cuts:
        details["rebaselined"] = {k: v.isoformat() for k, v in sorted(cuts.items())}
    det = detect_with_overrides(
        detector,
        monitor.overrides,
        wide.to_numpy(float),
        times,
        calendar=build_calendar(ws, monitor),
        numerator=num,
        denominator=den,
        names=names,
        grain=grain,
        good_direction=metric.good_direction,
        ratio_scale=metric.ratio.scale if metric.ratio is not None else None,
        history_from=cuts or None,
    )
    frame = det.anomalies(
        explain=True,
        metric=metric.name,
        title_zh=metric.title.zh or metric.name,
        title_en=metric.title.en or metric.name,
        unit=metric.unit,
    )
    frame = frame[pd.to_datetime(frame["time"]) >= pd.Timestamp(win.evaluate_from)] if not frame.empty else frame
    details["series"] = len(names)
    if backtest:  # what it would have flagged, and nothing written
        details["anomalies"] = len(frame)
        details["would_flag"] = [
            {
                "slice": r.slice,
                "time": pd.Timestamp(r.time).isoformat(),
                "actual": _f(r.actual),
                "expected": _f(r.expected),
                "direction": r.direction,
                "explanation_en": r.explanation_en,
            }
            for r in frame.head(BACKTEST_PREVIEW).itertuples(index=False)
        ]
        return details
    # 3. anomalies → alert path
    with ws.db.session() as s:
        ctx = Context(
            session=s,
            ws=ws,
            catalog=catalog,
            monitor=monitor,
            metric=metric,
            now=now,
            mutes=mutes,
            grain=grain,
            wholes=Wholes(names, times, det.expected),
        )
        labels0 = base_labels(monitor, metric, catalog)
        existing = {
            (a.slice, a.time)
            for a in s.scalars(
                select(Anomaly).where(Anomaly.monitor == monitor.name, Anomaly.time >= win.evaluate_from)
            )
        }
        candidates = []
        for r in frame.itertuples(index=False):
            t = pd.Timestamp(r.time).to_pydatetime()
            if (r.slice, t) in existing:
                continue  # a re-run of the same bucket: nothing new
            a = Anomaly(
                run_id=run_id,
                monitor=monitor.name,
                metric=metric.name,
                slice=r.slice,
                time=t,
                actual=_f(r.actual),
                expected=_f(r.expected),
                lower=_f(r.lower),
                upper=_f(r.upper),
                score=float(r.score),
                direction=r.direction,
                detector=str(r.detector),
                explanation_zh=r.explanation_zh,
                explanation_en=r.explanation_en,
                fingerprint="",
                created_at=now,
            )
            s.add(a)
            candidates.append(Candidate(anomaly=a, labels={**labels0, **parse_slice(r.slice)}))
        s.flush()
        run_pipeline(ctx, candidates)
        # 4. alerts back to normal for long enough resolve themselves (and their incident)
        auto_resolve(ctx, names, times, det)
        details.update(ctx.stats)
        details["incidents"] = ctx.incidents
    return details


def monitor_series(ws, catalog, monitor: MonitorSpec, metric: MetricSpec, *, start, end, grain: str) -> pd.DataFrame:
    """The long-form series a monitor watches (its slicing) over [start, end): what a run and a preview score."""
    sl = monitor.slicing
    return explode(ws, metric.name, dims=sl.dimensions, combos=sl.combos, total=sl.total, top_n=sl.top_n,
                   min_volume=sl.min_volume, start=start, end=end, grain=grain, catalog=catalog)  # fmt: skip


def _data_reached(checks, metric: MetricSpec, grain: str, until: datetime) -> datetime:
    """Where judging stops: `until` when the data is on time, else the end (exclusive) of the last bucket the
    newest row reaches, give or take a tenth of a bucket. On time means the newest row is no older than the
    lateness allowed at the monitor's grain (the metric's `quality.max_lag`, else 2 h for hours, 30 h for days):
    a day without a complaint has no row, and that is a zero, not a gap; an hour after the feed stopped is a gap."""
    from metricloop.metrics.quality import DEFAULT_LAG

    latest = [c.time for c in checks if c.check == "freshness" and c.time is not None]
    if not latest:
        return until
    newest = min(latest)
    allowed = parse_duration(metric.quality.max_lag) if metric.quality.max_lag else DEFAULT_LAG[grain]
    if until - newest <= allowed:
        return until
    step = pd.tseries.frequencies.to_offset(FREQ[grain])
    start = pd.Timestamp(until) - step
    tolerance = (pd.Timestamp(until) - start) / 10
    reached = floor(pd.Timestamp(newest) + tolerance, grain).to_pydatetime()
    return min(until, reached)


def _f(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else float(x)


def normal_points(times: pd.DatetimeIndex, flagged, learning, values, *, after: datetime) -> int:
    """Consecutive normal points at the end of a series, after its last anomalous bucket. Counted from the data,
    not per run: judging the same bucket twice is one point, a catch-up over three normal buckets is three. A
    bucket without data (or still learning) says nothing either way."""
    streak = 0
    for j in range(len(times) - 1, -1, -1):
        if times[j] <= pd.Timestamp(after) or flagged[j]:
            break
        if learning[j] or not np.isfinite(values[j]):
            continue
        streak += 1
    return streak


def auto_resolve(ctx: Context, names: list[str], times: pd.DatetimeIndex, det) -> None:
    n = ctx.monitor.auto_resolve_after
    index = {name: i for i, name in enumerate(names)}
    alerts = ctx.session.scalars(
        select(Alert).where(Alert.monitor == ctx.monitor.name, Alert.kind == "metric", Alert.status.in_(OPEN_ALERT))
    ).all()
    touched_incidents = set()
    for alert in alerts:
        i = index.get(alert.slice)
        if i is None:
            continue
        alert.normal_streak = normal_points(
            times, det.is_anomaly[i], det.scores.learning[i], det.values[i], after=alert.last_seen
        )
        if n and alert.normal_streak >= n:
            alert.status, alert.updated_at = "resolved", ctx.now
            if alert.incident_id:
                touched_incidents.add(alert.incident_id)
    for inc_id in touched_incidents:
        _resolve_if_all_clear(
            ctx.session, ctx.ws, ctx.catalog, inc_id, now=ctx.now, why=f"back to normal for {n} points"
        )


def _resolve_if_all_clear(s, ws, catalog, inc_id: int, *, now: datetime, why: str) -> None:
    inc = s.get(Incident, inc_id)
    if inc is None or inc.state not in OPEN_INCIDENT:
        return
    still = s.scalar(select(Alert.id).where(Alert.incident_id == inc_id, Alert.status.in_(OPEN_ALERT)).limit(1))
    if still is None:
        incidents.resolve(
            s, ws, catalog, incident_id=inc_id, actor=incidents.SYSTEM, note=f"auto-resolved: {why}", auto=True, now=now
        )


# ------------------------------------------------------------------ data quality alerts


CHECK_WORDS = {
    "zh": {"source": "数据源故障", "freshness": "数据延迟", "completeness": "数据不完整"},
    "en": {"source": "Source down", "freshness": "Data late", "completeness": "Data incomplete"},
}


def check_words(check: str, lang: str) -> str:
    """A data-quality check's name as a person reads it ("completeness" → "Data incomplete")."""
    words = CHECK_WORDS.get(lang, CHECK_WORDS["en"])
    return words.get(check, "数据质量" if lang == "zh" else "Data quality")


def _data_key(metric: MetricSpec) -> str:
    """Data problems belong to the data (a source's table), not to each metric or monitor reading it."""
    return f"{metric.source or metric.name}:{metric.table or metric.name}"


def raise_data_quality(
    s, ws, catalog, monitor: MonitorSpec, metric: MetricSpec, *, check: str, slice_: str, message: str, now: datetime
) -> Alert:
    """One alert per data problem (source table × check × slice), repeats absorbed, and one open incident per
    source table for all of them, to the data owner. Never a storm."""
    source = catalog.sources.get(metric.source) if metric.source else None
    owner = (source.owner if source is not None else None) or metric.owner
    data = _data_key(metric)
    fp = fingerprint("dq", data, check, slice_)
    alert = s.scalar(select(Alert).where(Alert.fingerprint == fp, Alert.status.in_(OPEN_ALERT)))
    today = now.astimezone(ZoneInfo(metric.timezone)).replace(tzinfo=None)  # the run's clock, in metric time
    if alert is not None:
        alert.count += 1
        alert.last_seen, alert.updated_at, alert.summary_en = today, now, message
        return alert
    table = metric.table or metric.name
    labels = {
        "kind": "data_quality",
        "check": check,
        "metric": metric.name,
        "domain": metric.domain,
        "source": metric.source or "",
        "table": table,
        "monitor": monitor.name,
        **parse_slice(slice_),
    }
    alert = Alert(
        fingerprint=fp,
        kind="data_quality",
        monitor=monitor.name,
        metric=metric.name,
        slice=slice_,
        labels=labels,
        status="firing",
        severity="P2",
        summary_zh=message,
        summary_en=message,
        first_seen=today,
        last_seen=today,
        created_at=now,
        updated_at=now,
    )
    s.add(alert)
    s.flush()
    group_key = fingerprint("dq", data)
    inc = s.scalar(
        select(Incident).where(
            Incident.kind == "data_quality", Incident.group_key == group_key, Incident.state.in_(OPEN_INCIDENT)
        )
    )
    where = "" if slice_ == "*" else f" ({slice_})"
    if inc is not None:
        if slice_ not in inc.slices:
            inc.slices = [*inc.slices, slice_]
        incidents.event(s, inc, "absorbed", incidents.SYSTEM, f"also {check}{where}: {message}", at=now, check=check)
        alert.incident_id = inc.id
        return alert
    what = f"{metric.source or ''}.{table}{where}"
    titles = {"zh": f"{check_words(check, 'zh')}：{what}", "en": f"{check_words(check, 'en')}: {what}"}
    title = titles.get(ws.config.get("language", "zh"), titles["zh"])
    inc = incidents.open_incident(
        s,
        ws,
        catalog,
        title=title,
        severity="P2",
        kind="data_quality",
        monitor=monitor.name,
        metric=metric.name,
        group_key=group_key,
        slices=[slice_],
        labels=labels,
        summary={
            "title_zh": titles["zh"],
            "title_en": titles["en"],
            "explanation_zh": f"{titles['zh']}：{message}",
            "explanation_en": f"Data quality ({check}) of {metric.source}.{table}{where}: {message}",
            "check": check,
            "table": table,
        },
        fallback_owner=owner,
        now=now,
    )
    alert.incident_id = inc.id
    return alert


def resolve_data_quality(s, ws, catalog, monitor, metric, *, failing: list[tuple[str, str]], now: datetime) -> None:
    keep = {fingerprint("dq", _data_key(metric), c, sl) for c, sl in failing}
    table = metric.table or metric.name
    open_dq = s.scalars(
        select(Alert).where(
            Alert.kind == "data_quality",
            Alert.status.in_(OPEN_ALERT),
            Alert.labels["source"].as_string() == (metric.source or ""),
            Alert.labels["table"].as_string() == table,
            Alert.labels["check"].as_string() != "source",
        )
    ).all()
    for alert in open_dq:
        if alert.fingerprint in keep:
            continue
        alert.status, alert.updated_at = "resolved", now
        if alert.incident_id:
            _resolve_if_all_clear(s, ws, catalog, alert.incident_id, now=now, why="the data quality check passes again")
    if not any(c == "source" for c, _ in failing):
        src_fp = fingerprint("dq", _data_key(metric), "source", "*")
        alert = s.scalar(select(Alert).where(Alert.fingerprint == src_fp, Alert.status.in_(OPEN_ALERT)))
        if alert is not None:
            alert.status = "resolved"
            if alert.incident_id:
                _resolve_if_all_clear(s, ws, catalog, alert.incident_id, now=now, why="the source answers again")


# ------------------------------------------------------------------ scheduling


def last_slot(monitor: MonitorSpec, now: datetime) -> datetime:
    """The latest scheduled moment at or before `now` (UTC aware)."""
    tz = ZoneInfo(monitor.schedule.timezone)
    local = now.astimezone(tz)
    if monitor.schedule.cron:
        from croniter import croniter

        it = croniter(monitor.schedule.cron, local + timedelta(seconds=1))
        return it.get_prev(datetime).astimezone(UTC)
    every = parse_duration(monitor.schedule.every)
    epoch = datetime(2000, 1, 3, tzinfo=tz)  # a Monday, local midnight
    n = (local - epoch) // every
    return (epoch + n * every).astimezone(UTC)


def run_due(ws, *, now: datetime | None = None, only: str | None = None) -> list[MonitorRun]:
    """Run every monitor whose latest slot has no run yet. After downtime that is one run, not N."""
    now = as_utc(now)
    catalog = ws.catalog()
    monitors = catalog.all("monitor")
    if only is not None and only not in monitors:
        raise NotFound(f"no monitor named '{only}'")
    runs = []
    from metricloop.monitors.pauses import paused_monitors

    with ws.db.session() as s:
        paused = paused_monitors(s)  # paused in the console: no scheduled run until resumed
    for name, monitor in sorted(monitors.items()):
        if (only and name != only) or not monitor.enabled or name in paused:
            continue
        slot = last_slot(monitor, now)
        with ws.db.session() as s:
            done = s.scalar(
                select(MonitorRun.id)
                .where(MonitorRun.monitor == name, MonitorRun.trigger.in_(SCHEDULED), MonitorRun.scheduled_for >= slot)
                .limit(1)
            )
            previous = s.scalar(
                select(MonitorRun.scheduled_for)
                .where(MonitorRun.monitor == name, MonitorRun.trigger.in_(SCHEDULED))
                .order_by(MonitorRun.scheduled_for.desc())
                .limit(1)
            )
        if done is not None:
            continue
        trigger = "schedule"
        if previous is not None and _missed(monitor, aware(previous), slot):
            trigger = "catchup"
        run = run_monitor(ws, name, at=slot, trigger=trigger, scheduled_for=slot, now=now, claim=True)
        if run is not None:
            runs.append(run)
    return runs


def _missed(monitor: MonitorSpec, previous: datetime, slot: datetime) -> bool:
    """True when at least one slot between the previous run and this one was skipped."""
    return last_slot(monitor, slot - timedelta(seconds=1)) > previous
