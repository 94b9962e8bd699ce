"""The dispatcher: claim due outbox rows, deliver them outside any transaction, record the outcome.

Claiming is atomic, so two dispatchers (threads, processes or hosts sharing PostgreSQL) never send
the same row at the same time: PostgreSQL uses `SELECT … FOR UPDATE SKIP LOCKED`; other databases
a conditional `UPDATE … WHERE status = 'pending'` whose row count says who won. A claimed row is
`sending` with a lease (`locked_until`). A dispatcher killed mid-delivery leaves it `sending`; once
the lease is over another pass claims it again. Delivery is therefore at-least-once, and every
message carries its idempotency key so receivers drop the rare repeat.

Attempts are counted when a row is claimed, so a message that crashes the dispatcher still runs out
of attempts and is dead-lettered instead of looping forever.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select, update

from metricloop.notify.channels import ACTION_PREFIX, Channels, Delivery, DeliveryError
from metricloop.notify.models import Notification
from metricloop.notify.outbox import as_utc, timeline

if TYPE_CHECKING:
    from metricloop.workspace import Workspace

log = logging.getLogger(__name__)


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0  # claimed but handed back unsent because the lease was running out
    lost_lease: int = 0  # delivered after our lease ran out; another dispatcher may have sent it too

    def __iadd__(self, other: DispatchStats) -> DispatchStats:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self


def backoff_delay(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries spread out."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def _claimable(now: datetime):
    """Pending and due, or left `sending` by a dispatcher whose lease is over (with attempts to spare)."""
    return or_(
        and_(Notification.status == "pending", Notification.next_attempt_at <= now),
        and_(
            Notification.status == "sending",
            Notification.locked_until < now,
            Notification.attempts < Notification.max_attempts,
        ),
    )


def _exhausted(now: datetime):
    """Left `sending` past its lease on its last allowed attempt: it may or may not have gone out."""
    return and_(
        Notification.status == "sending",
        Notification.locked_until < now,
        Notification.attempts >= Notification.max_attempts,
    )


def reap(ws: Workspace, *, now: datetime, batch: int) -> int:
    """Dead-letter rows whose last attempt never reported back (the dispatcher died during it)."""
    with ws.db.session() as s:
        ids = list(s.scalars(select(Notification.id).where(_exhausted(now)).limit(batch)))
    if not ids:
        return 0
    n = 0
    with ws.db.session() as s:
        for row_id in ids:
            result = s.execute(
                update(Notification)
                .where(Notification.id == row_id, _exhausted(now))
                .values(status="dead", locked_by="", locked_until=None)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                continue
            n += 1
            row = s.get(Notification, row_id)
            s.refresh(row)
            why = f"the dispatcher stopped during attempt {row.attempts} of {row.max_attempts} (lease expired)"
            row.last_error = (f"{row.last_error}; " if row.last_error else "") + why
            timeline(
                s,
                row,
                _failed_kind(row),
                f"gave up on {_describe(row)}: {why}",
                at=now,
                attempts=row.attempts,
                key=row.idempotency_key,
            )
    return n


def claim(ws: Workspace, *, now: datetime, worker: str, batch: int, lease_seconds: float) -> list[Delivery]:
    """Take up to `batch` claimable rows for this worker: status sending, a lease, one more attempt."""
    lease = now + timedelta(seconds=lease_seconds)
    db = ws.db
    due = (
        select(Notification).where(_claimable(now)).order_by(Notification.next_attempt_at, Notification.id).limit(batch)
    )
    if db.engine.dialect.name == "postgresql":
        with db.session() as s:
            rows = list(s.scalars(due.with_for_update(skip_locked=True)))
            for row in rows:
                row.status, row.locked_by, row.locked_until = "sending", worker, lease
                row.attempts += 1
            return [Delivery.of(row) for row in rows]
    # Elsewhere (SQLite): read candidates, then win each one with a conditional UPDATE. The UPDATE is
    # the first statement of its transaction, so SQLite takes the write lock before judging the row.
    with db.session() as s:
        ids = list(s.scalars(due.with_only_columns(Notification.id)))
    if not ids:
        return []
    with db.session() as s:
        won = []
        for row_id in ids:
            result = s.execute(
                update(Notification)
                .where(Notification.id == row_id, _claimable(now))
                .values(status="sending", locked_by=worker, locked_until=lease, attempts=Notification.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                won.append(row_id)
        order = {row_id: i for i, row_id in enumerate(won)}
        rows = s.scalars(select(Notification).where(Notification.id.in_(won))) if won else []
        return sorted((Delivery.of(r) for r in rows), key=lambda d: order[d.id])


def _sent_kind(row) -> str:
    return "action_run" if row.kind == "action" else "notified"


def _failed_kind(row) -> str:
    return "action_failed" if row.kind == "action" else "notify_failed"


def _describe(row) -> str:
    if row.kind == "action":
        return f"action {row.channel.removeprefix(ACTION_PREFIX)}"
    return f"{row.recipient} via {row.channel}"


def _still_ours(msg: Delivery, worker: str) -> tuple:
    """The row is still this worker's claim of this attempt (not reclaimed after its lease ran out)."""
    return (
        Notification.id == msg.id,
        Notification.status == "sending",
        Notification.locked_by == worker,
        Notification.attempts == msg.attempt,
    )


def record(
    ws: Workspace,
    msg: Delivery,
    *,
    worker: str,
    now: datetime,
    note: str | None,
    error: DeliveryError | None,
    backoff_base: float,
    backoff_cap: float,
) -> str:
    """Write one delivery's outcome, if the row is still ours (our worker id and attempt number).

    Returns what happened: sent, retried, dead, or lost_lease.
    """
    with ws.db.session() as s:
        # A conditional UPDATE first: it proves the row is still ours and, on SQLite, takes the write
        # lock before anything is read (a read-then-write transaction could fail on a stale snapshot).
        mine = s.execute(
            update(Notification)
            .where(*_still_ours(msg, worker))
            .values(locked_by="", locked_until=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if mine != 1:
            # The lease ran out and another dispatcher claimed the row; it will record its own outcome.
            log.warning("outbox #%s: lease lost before recording the outcome of attempt %s", msg.id, msg.attempt)
            return "lost_lease"
        row = s.get(Notification, msg.id, populate_existing=True)
        if error is None:
            row.status, row.sent_at, row.last_error = "sent", now, ""
            message = f"sent to {row.recipient} via {row.channel}"
            if row.kind == "action":
                message = f"called action {row.channel.removeprefix(ACTION_PREFIX)}"
            timeline(
                s,
                row,
                _sent_kind(row),
                message,
                at=now,
                attempts=row.attempts,
                key=row.idempotency_key,
                result=note or "",
            )
            return "sent"
        row.last_error = f"attempt {row.attempts}: {error.message}"[:4000]
        if error.retryable and row.attempts < row.max_attempts:
            delay = backoff_delay(row.attempts, base=backoff_base, cap=backoff_cap)
            if error.retry_after is not None:
                delay = max(delay, min(error.retry_after, backoff_cap))
            row.status, row.next_attempt_at = "pending", now + timedelta(seconds=delay)
            return "retried"
        row.status = "dead"
        why = "not retryable" if not error.retryable else f"after {row.attempts} attempts"
        timeline(
            s,
            row,
            _failed_kind(row),
            f"gave up on {_describe(row)} ({why}): {error.message}",
            at=now,
            attempts=row.attempts,
            key=row.idempotency_key,
        )
        return "dead"


def release(ws: Workspace, msgs: list[Delivery], *, worker: str, now: datetime) -> int:
    """Hand claimed rows back unsent (their attempt is not counted)."""
    n = 0
    with ws.db.session() as s:
        for msg in msgs:
            result = s.execute(
                update(Notification)
                .where(*_still_ours(msg, worker))
                .values(
                    status="pending",
                    locked_by="",
                    locked_until=None,
                    attempts=Notification.attempts - 1,
                    next_attempt_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            n += result.rowcount
    return n


def link_signer(ws: Workspace):
    """Signs a message's links for its recipient as it goes out (the outbox row keeps placeholders)."""
    from metricloop.notify.links import arm
    from metricloop.notify.signing import secret_key_for

    key = secret_key_for(ws)
    return lambda msg, via: arm(msg, key=key, via=via)


def dispatch_once(
    ws: Workspace,
    *,
    now: datetime | None = None,
    worker: str | None = None,
    batch: int = 100,
    lease_seconds: int = 60,
    backoff_base: float = 30.0,
    backoff_cap: float = 3600.0,
    concurrency: int = 8,
) -> DispatchStats:
    """One pass: claim due rows, deliver them, record each outcome as soon as it is known.

    Rows of one incident go out one after another, in queue order; different incidents go out in
    parallel (`concurrency` at a time), so one slow receiver does not hold up the rest of the batch.
    """
    fixed_now = as_utc(now) if now is not None else None
    worker = worker or default_worker()
    stats = DispatchStats()
    start = fixed_now or datetime.now(UTC)
    stats.dead += reap(ws, now=start, batch=batch)
    claimed = claim(ws, now=start, worker=worker, batch=batch, lease_seconds=lease_seconds)
    stats.claimed = len(claimed)
    if not claimed:
        return stats
    channels = Channels(ws.catalog(), sign_links=link_signer(ws))
    deadline = time.monotonic() + lease_seconds
    groups: dict[object, list[Delivery]] = {}
    for msg in claimed:
        groups.setdefault(msg.incident_id if msg.incident_id is not None else ("row", msg.id), []).append(msg)

    def send_group(msgs: list[Delivery]) -> list[str]:
        outcomes = []
        for i, msg in enumerate(msgs):
            # Never start a delivery that could outlive the lease: another dispatcher would send it too.
            if time.monotonic() + channels.timeout(msg) + 1 > deadline:
                n = release(ws, msgs[i:], worker=worker, now=fixed_now or datetime.now(UTC))
                return outcomes + ["released"] * n
            outcomes.append(
                _deliver_and_record(
                    ws, channels, msg, worker=worker, now=fixed_now, backoff_base=backoff_base, backoff_cap=backoff_cap
                )
            )
        return outcomes

    try:
        if concurrency <= 1 or len(groups) == 1:
            results = [send_group(g) for g in groups.values()]
        else:
            with ThreadPoolExecutor(max_workers=min(concurrency, len(groups)), thread_name_prefix="outbox") as pool:
                results = list(pool.map(send_group, groups.values()))
    finally:
        channels.close()
    for outcome in (o for group in results for o in group):
        setattr(stats, outcome, getattr(stats, outcome) + 1)
    return stats


def _deliver_and_record(
    ws: Workspace,
    channels: Channels,
    msg: Delivery,
    *,
    worker: str,
    now: datetime | None,
    backoff_base: float,
    backoff_cap: float,
) -> str:
    error: DeliveryError | None = None
    note = None
    try:
        note = channels.deliver(msg)
    except DeliveryError as e:
        error = e
    except Exception as e:  # noqa: BLE001 - a bug in a channel must not stop the others
        log.exception("outbox #%s: unexpected error delivering via %s", msg.id, msg.channel)
        error = DeliveryError(f"{type(e).__name__}: {e}", retryable=True)
    return record(
        ws,
        msg,
        worker=worker,
        now=now or datetime.now(UTC),
        note=note,
        error=error,
        backoff_base=backoff_base,
        backoff_cap=backoff_cap,
    )


def run_dispatcher(ws: Workspace, stop: threading.Event, *, interval: float = 2.0, **options) -> DispatchStats:
    """Dispatch until `stop` is set: at once again after a full batch, else every `interval` seconds.

    Errors (a database that is briefly away) are logged and retried; they never end the loop.
    """
    total = DispatchStats()
    batch = options.setdefault("batch", 100)
    options.setdefault("worker", default_worker())
    while not stop.is_set():
        try:
            stats = dispatch_once(ws, **options)
            total += stats
            if stats.claimed >= batch:
                continue
        except Exception:  # noqa: BLE001 - the service keeps running
            log.exception("outbox dispatcher pass failed; trying again in %.0fs", interval)
        stop.wait(interval)
    return total
