"""Real instances for the notification tests: state on SQLite or PostgreSQL, incidents, the outbox, and the
loopback HTTP receiver and SMTP server of tests/loopback.py (fixtures `receiver` and `mailbox`).

Nothing of ours is mocked.
"""

from __future__ import annotations

import uuid

import pytest

from loopback import Receiver, free_port, start_receiver
from loopback import mailbox as mailbox  # fixtures: registered by being in this conftest
from loopback import receiver as receiver
from metricloop.definitions import service
from metricloop.incidents.models import Incident
from metricloop.settings import Settings
from metricloop.workspace import Workspace

# ------------------------------------------------------------------ loopback servers (tests/loopback.py)


@pytest.fixture
def late_receiver():
    """Start receivers later in a test (e.g. on a port that refused connections until then)."""
    stops = []

    def start(port: int = 0) -> Receiver:
        r = Receiver(port=port)
        stops.append(start_receiver(r))
        return r

    yield start
    for stop in stops:
        stop()


# ------------------------------------------------------------------ state


@pytest.fixture
def state_url(db_url):
    """SQLite in the test's folder, or a fresh PostgreSQL schema (tests/conftest.py's `db_url`)."""
    return db_url


def apply_yaml(ws: Workspace, yaml_text: str) -> None:
    entries, problems = service.read_text(yaml_text)
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="test")


@pytest.fixture
def make_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("METRICLOOP_DB", raising=False)
    monkeypatch.delenv("METRICLOOP_HOME", raising=False)
    opened: list[Workspace] = []

    def make(url: str | None = None, *, channels: str = "", name: str = "ws") -> Workspace:
        home = tmp_path / name
        ws = Workspace.init(home, Settings(home=home, db=url, base_url="http://metricloop.test"))
        opened.append(ws)
        if channels:
            apply_yaml(ws, channels)
        return ws

    yield make
    for ws in opened:
        ws.close()


@pytest.fixture
def ws(make_workspace, state_url):
    """An empty workspace whose state is SQLite or a fresh PostgreSQL schema."""
    return make_workspace(state_url)


def make_incident(session, **kw) -> Incident:
    values = dict(
        title="门店 S012 饮料销售额下降",
        severity="P1",
        monitor="gmv_by_store",
        metric="gmv",
        group_key=uuid.uuid4().hex[:16],
        slices=["store=S012", "store=S012, category=Drinks"],
        labels={"domain": "sales", "store": "S012"},
        summary={
            "explanation_zh": "S012 门店销售额比预期低 42%，主要来自饮料品类（缺货）。",
            "explanation_en": "Store S012 sales are 42% below expected, driven by Drinks (out of stock).",
            "actual": 12345.6,
            "expected": 21300.0,
            "lower": 18000.0,
            "upper": 24000.0,
            "deviation_pct": -42.04,
        },
        assignee="wang.fang@example.com",
        team="east-stores",
    )
    values.update(kw)
    inc = Incident(**values)
    session.add(inc)
    session.flush()
    return inc


@pytest.fixture
def new_incident():
    """make_incident as a fixture, so test modules need not import this conftest."""
    return make_incident


@pytest.fixture
def apply_defs():
    return apply_yaml


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()


def queue_notification(
    ws: Workspace,
    *,
    channel: str,
    recipient: str | None = None,
    language: str = "zh",
    event: str = "created",
    max_attempts: int = 8,
    key: str | None = None,
    **incident,
) -> str:
    """Open a minimal incident and queue its notification in one transaction, as the incident flows do."""
    from metricloop.notify.outbox import enqueue
    from metricloop.notify.render import render_incident

    with ws.db.session() as s:
        inc = make_incident(s, **incident)
        spec = ws.catalog().all("channel").get(channel)
        subject, body, payload = render_incident(
            inc,
            event=event,
            language=language,
            base_url=ws.settings.base_url,
            secret_key="test-key",
            channel_type=getattr(spec, "type", "webhook"),
        )
        key = key or f"incident:{inc.id}:{event}:0:{channel}:{recipient or channel}"
        row = enqueue(
            s,
            key=key,
            channel=channel,
            event=event,
            recipient=recipient or channel,
            incident_id=inc.id,
            subject=subject,
            body=body,
            payload=payload,
            language=language,
            max_attempts=max_attempts,
        )
        assert row is not None
    return key


@pytest.fixture
def queue():
    return queue_notification


def drain(ws: Workspace, *, passes: int = 30, step_seconds: float = 3600, **options):
    """Dispatch until nothing is due, moving the clock forward each pass so backoffs end without waiting."""
    from datetime import UTC, datetime, timedelta

    from metricloop.notify.dispatcher import DispatchStats, dispatch_once
    from metricloop.notify.outbox import counts

    total = DispatchStats()
    start = datetime.now(UTC)
    for i in range(passes):
        total += dispatch_once(ws, now=start + timedelta(seconds=i * step_seconds), **options)
        with ws.db.session() as s:
            c = counts(s)
        if c["pending"] == 0 and c["sending"] == 0:
            break
    return total


@pytest.fixture
def drain_outbox():
    return drain
