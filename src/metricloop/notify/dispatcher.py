"""The dispatcher: claim due outbox rows, deliver them outside any transaction, record the outcome.

Claiming is atomic, so two dispatchers (threads, processes or hosts sharing PostgreSQL) never send
the same row at the same time: PostgreSQL reads candidates with `SELECT … FOR UPDATE SKIP LOCKED`;
every database then wins each row with a conditional `UPDATE … WHERE status = 'pending' …` whose row
count says who won. A claimed row is `sending` with a short lease (`locked_until`, 10 s) and a lease
token; a heartbeat renews the lease while the dispatcher lives, and a delivery's own lease covers its
timeout. A dispatcher killed mid-delivery leaves its rows `sending`; within a lease another pass
claims them again. Delivery is therefore at-least-once, and every message carries its idempotency key
so receivers drop the rare repeat.

**Order.** The rows of one incident on one channel and recipient form a chain, sent in id order (the
order the incident flows queued them): a row is not claimed while an earlier row of its chain is
pending (due later, e.g. retrying) or sending (leased), and a pass that fails a row hands the rest of
its chain back unsent. A dead (or cancelled) row no longer holds its chain.

**Attempts** count when a delivery call begins (a write before the call), not when a row is claimed:
a row reclaimed after a crash is charged only for the calls that were made, and a call that crashed
its dispatcher still counts, so such a message runs out of attempts and is dead-lettered.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import aliased

from metricloop.incidents.models import Incident
from metricloop.notify.channels import ACTION_PREFIX, Channels, Delivery, DeliveryError
from metricloop.notify.models import UNSETTLED, Notification
from metricloop.notify.outbox import as_utc, timeline
from metricloop.notify.render import current_state_note

if TYPE_CHECKING:
    from metricloop.workspace import Workspace

log = logging.getLogger(__name__)

LEASE_SECONDS = 10.0  # a crashed dispatcher's rows are taken over this soon
LEASE_MARGIN = 5.0  # a delivery's lease covers its channel's timeout and this much more


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0  # claimed but handed back unsent: an earlier row of its chain failed in this pass
    lost_lease: int = 0  # our claim was taken over (lease expired) before the call or before its outcome was written

    def __iadd__(self, other: DispatchStats) -> DispatchStats:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self


def backoff_delay(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries spread out."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def _due(now: datetime):
    """Pending and due, or left `sending` by a dispatcher whose lease is over (with attempts to spare)."""
    return or_(
        and_(Notification.status == "pending", Notification.next_attempt_at <= now),
        and_(
            Notification.status == "sending",
            Notification.locked_until < now,
            Notification.attempts < Notification.max_attempts,
        ),
    )


def _earlier_in_chain():
    """An earlier row of the same incident, channel and recipient (rows without an incident have no chain)."""
    e = aliased(Notification)
    return e, and_(
        e.incident_id == Notification.incident_id,
        e.channel == Notification.channel,
        e.recipient == Notification.recipient,
        e.id < Notification.id,
    )


def _held(now: datetime):
    """An earlier row of the chain that cannot be taken now (it waits for a retry, or is leased) holds this one:
    such rows are not even candidates, so a blocked chain does not fill a batch."""
    e, same_chain = _earlier_in_chain()
    waits = or_(
        and_(e.status == "pending", e.next_attempt_at > now),
        and_(e.status == "sending", or_(e.locked_until >= now, e.attempts >= e.max_attempts)),
    )
    return exists().where(same_chain, waits)


def _held_for(token: str):
    """At claim time, strictly: an earlier unsettled row of the chain that this claim has not taken."""
    e, same_chain = _earlier_in_chain()
    return exists().where(same_chain, e.status.in_(UNSETTLED), e.lease_token != token)


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
                .values(status="dead", locked_by="", locked_until=None, lease_token="")
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


def claim(
    ws: Workspace,
    *,
    now: datetime,
    worker: str,
    batch: int,
    lease_seconds: float = LEASE_SECONDS,
    max_chains: int | None = None,
) -> list[Delivery]:
    """Take up to `batch` due rows for this worker, in id order: status sending, a lease and a lease token.

    A row is taken only when every earlier unsettled row of its chain is taken by this same claim, so a
    chain is always claimed from its head. At most `max_chains` chains are taken (those this pass can send
    in parallel): the others stay free for other dispatchers, and a crash holds back fewer chains. No
    attempt is counted here (see `begin_attempt`).
    """
    lease = now + timedelta(seconds=lease_seconds)
    token = uuid.uuid4().hex
    due = select(Notification.id).where(_due(now), ~_held(now)).order_by(Notification.id).limit(batch)
    with ws.db.session() as s:
        if s.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True, of=Notification)  # other dispatchers skip these rows
        # Elsewhere (SQLite) the candidates are read outside a transaction; the first UPDATE below takes the
        # database's write lock, and each UPDATE judges its row again under it.
        ids = list(s.scalars(due))
        won = []
        if max_chains is not None and ids:
            chain_of = {
                r.id: (r.incident_id, r.channel, r.recipient) if r.incident_id is not None else ("row", r.id)
                for r in s.execute(
                    select(Notification.id, Notification.incident_id, Notification.channel, Notification.recipient)
                    .where(Notification.id.in_(ids))
                )
            }
            chains: list = []
            for row_id in ids:
                if chain_of[row_id] not in chains and len(chains) < max_chains:
                    chains.append(chain_of[row_id])
            ids = [row_id for row_id in ids if chain_of[row_id] in chains]
        for row_id in ids:  # in id order: an earlier row of a chain is taken before a later one is judged
            result = s.execute(
                update(Notification)
                .where(Notification.id == row_id, _due(now), ~_held_for(token))
                .values(status="sending", locked_by=worker, locked_until=lease, lease_token=token)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                won.append(row_id)
        if not won:
            return []
        rows = {r.id: r for r in s.scalars(select(Notification).where(Notification.id.in_(won)))}
        deliveries = [Delivery.of(rows[i]) for i in won]
        _with_current_state(s, deliveries)
        return deliveries


def _with_current_state(s, deliveries: list[Delivery]) -> None:
    """Tell what the incident is now, as Alertmanager's notifications carry their group's state: the webhook
    payload's `current`, and a first line in email and chat when the incident has moved on since the event."""
    ids = {d.incident_id for d in deliveries if d.kind == "notify" and d.incident_id is not None}
    if not ids:
        return
    now = {
        r.id: r
        for r in s.execute(
            select(Incident.id, Incident.seq, Incident.state, Incident.severity, Incident.slices).where(
                Incident.id.in_(ids)
            )
        )
    }
    for d in deliveries:
        inc = now.get(d.incident_id) if d.kind == "notify" else None
        if inc is None or not d.payload:
            continue
        d.payload["current"] = {
            "seq": inc.seq,
            "state": inc.state,
            "severity": inc.severity,
            "slices": [str(x) for x in (inc.slices or [])],
        }
        if d.seq and inc.seq > d.seq:
            note = current_state_note(d.payload.get("language", "zh"), state=inc.state, severity=inc.severity,
                                      seq=inc.seq)  # fmt: skip
            d.body = f"{note}\n\n{d.body}"
            d.payload["text"] = d.body


def renew(ws: Workspace, *, token: str, until: datetime) -> int:
    """The heartbeat: extend the lease of this claim's rows that are still sending (never shorten one)."""
    with ws.db.session() as s:
        return s.execute(
            update(Notification)
            .where(
                Notification.lease_token == token,
                Notification.status == "sending",
                Notification.locked_until < until,
            )
            .values(locked_until=until)
            .execution_options(synchronize_session=False)
        ).rowcount


def begin_attempt(ws: Workspace, msg: Delivery, *, worker: str, now: datetime, lease_seconds: float) -> bool:
    """Count the attempt that is about to be made, and lease the row for at least the call's duration.

    False when the claim was taken over (its lease ran out): then this dispatcher must not send the row.
    """
    with ws.db.session() as s:
        mine = s.execute(
            update(Notification)
            .where(*_still_ours(msg, worker))
            .values(attempts=Notification.attempts + 1, locked_until=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        ).rowcount
        if mine != 1:
            return False
        msg.attempt = s.scalar(select(Notification.attempts).where(Notification.id == msg.id))
    return True


def _sent_kind(row) -> str:
    return "action_run" if row.kind == "action" else "notified"


def _failed_kind(row) -> str:
    return "action_failed" if row.kind == "action" else "notify_failed"


def _describe(row) -> str:
    if row.kind == "action":
        return f"action {row.channel.removeprefix(ACTION_PREFIX)}"
    return f"{row.recipient} via {row.channel}"


def _still_ours(msg: Delivery, worker: str) -> tuple:
    """The row is still this worker's claim (not reclaimed after its lease ran out: a reclaim has another token)."""
    return (
        Notification.id == msg.id,
        Notification.status == "sending",
        Notification.locked_by == worker,
        Notification.lease_token == msg.lease,
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
            .values(locked_by="", locked_until=None, lease_token="")
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
    """Hand claimed rows back unsent (no attempt was made, none is counted)."""
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
                    lease_token="",
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
    lease_seconds: float = LEASE_SECONDS,
    backoff_base: float = 30.0,
    backoff_cap: float = 3600.0,
    concurrency: int = 8,
) -> DispatchStats:
    """One pass: claim due rows, deliver them, record each outcome as soon as it is known.

    The rows of a chain (one incident, channel and recipient) go out one after another, in queue order;
    when one fails, the rest of its chain is handed back and waits for it. Different chains go out in
    parallel (`concurrency` at a time), so one slow receiver does not hold up the rest of the batch. A
    heartbeat renews the leases of the claimed rows every lease/3 seconds while the pass runs.
    """
    fixed_now = as_utc(now) if now is not None else None
    worker = worker or default_worker()
    stats = DispatchStats()
    start = fixed_now or datetime.now(UTC)
    stats.dead += reap(ws, now=start, batch=batch)
    claimed = claim(
        ws, now=start, worker=worker, batch=batch, lease_seconds=lease_seconds, max_chains=max(1, concurrency)
    )
    stats.claimed = len(claimed)
    if not claimed:
        return stats
    token = claimed[0].lease
    channels = Channels(ws.catalog(), sign_links=link_signer(ws))
    chains: dict[object, list[Delivery]] = {}
    for msg in claimed:
        chain = (msg.incident_id, msg.channel, msg.recipient) if msg.incident_id is not None else ("row", msg.id)
        chains.setdefault(chain, []).append(msg)

    def clock() -> datetime:
        return fixed_now or datetime.now(UTC)

    def send_chain(msgs: list[Delivery]) -> list[str]:
        outcomes = []
        for i, msg in enumerate(msgs):
            outcome = _deliver_and_record(
                ws,
                channels,
                msg,
                worker=worker,
                clock=clock,
                lease_seconds=max(lease_seconds, channels.timeout(msg) + LEASE_MARGIN),
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
            )
            outcomes.append(outcome)
            if outcome in ("retried", "lost_lease"):  # the rest waits for this one: order within the chain
                n = release(ws, msgs[i + 1 :], worker=worker, now=clock())
                return outcomes + ["released"] * n
        return outcomes

    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lease_seconds / 3):
            try:
                renew(ws, token=token, until=clock() + timedelta(seconds=lease_seconds))
            except Exception:  # noqa: BLE001 - a missed beat shortens nothing; the next one tries again
                log.exception("outbox: renewing the leases of %s failed", worker)

    beat = threading.Thread(target=heartbeat, name="outbox-heartbeat", daemon=True)
    beat.start()
    try:
        if concurrency <= 1 or len(chains) == 1:
            results = [send_chain(c) for c in chains.values()]
        else:
            with ThreadPoolExecutor(max_workers=min(concurrency, len(chains)), thread_name_prefix="outbox") as pool:
                results = list(pool.map(send_chain, chains.values()))
    finally:
        stop.set()
        beat.join()
        channels.close()
    for outcome in (o for chain in results for o in chain):
        setattr(stats, outcome, getattr(stats, outcome) + 1)
    return stats


def _deliver_and_record(
    ws: Workspace,
    channels: Channels,
    msg: Delivery,
    *,
    worker: str,
    clock,
    lease_seconds: float,
    backoff_base: float,
    backoff_cap: float,
) -> str:
    if not begin_attempt(ws, msg, worker=worker, now=clock(), lease_seconds=lease_seconds):
        log.warning("outbox #%s: taken over by another dispatcher before attempt %s began", msg.id, msg.attempt)
        return "lost_lease"
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
        now=clock(),
        note=note,
        error=error,
        backoff_base=backoff_base,
        backoff_cap=backoff_cap,
    )


def run_dispatcher(ws: Workspace, stop: threading.Event, *, interval: float = 2.0, **options) -> DispatchStats:
    """Dispatch until `stop` is set: at once again after a pass that claimed rows, else every `interval` seconds.

    Errors (a database that is briefly away) are logged and retried; they never end the loop.
    """
    total = DispatchStats()
    options.setdefault("batch", 100)
    options.setdefault("worker", default_worker())
    while not stop.is_set():
        try:
            stats = dispatch_once(ws, **options)
            total += stats
            if stats.claimed:  # a pass takes a few chains only: look again at once while there is work
                continue
        except Exception:  # noqa: BLE001 - the service keeps running
            log.exception("outbox dispatcher pass failed; trying again in %.0fs", interval)
        stop.wait(interval)
    return total
