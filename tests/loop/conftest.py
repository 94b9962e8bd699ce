"""Real instances for the loop tests: the demo (built once per session, copied per test), a small shop whose
data we control, state on SQLite or a fresh PostgreSQL schema, and the SMTP server and HTTP receiver on loopback of
tests/loopback.py (fixtures `mailbox` and `receiver`, shared with tests/notify).
"""

from __future__ import annotations

import inspect
import shutil
import uuid

import pytest
from loop_helpers import BASE_URL, PG_URL, SHOP_DEFS, apply_yaml, write_shop_data

from loopback import free_port
from loopback import mailbox as mailbox  # fixtures: registered by being in this conftest
from loopback import receiver as receiver
from metricloop.settings import Settings
from metricloop.workspace import Workspace

DEMO_END = "2026-11-20"


# ------------------------------------------------------------------ state databases


@pytest.fixture
def pg_url(pg_schema):
    """A fresh PostgreSQL schema for one test (tests/conftest.py's `pg_schema`), dropped afterwards."""
    return f"{PG_URL}?options=-csearch_path%3D{pg_schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request, tmp_path):
    """The state database: SQLite in the workspace, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return None  # the workspace default: HOME/state.db
    return request.getfixturevalue("pg_url")


# ------------------------------------------------------------------ workspaces


@pytest.fixture
def open_ws(monkeypatch):
    """Open workspaces that are closed at the end of the test."""
    monkeypatch.delenv("METRICLOOP_DB", raising=False)
    monkeypatch.delenv("METRICLOOP_HOME", raising=False)
    opened: list[Workspace] = []

    def open_(home, db: str | None = None, *, init: bool = True) -> Workspace:
        settings = Settings(home=home, db=db, user="tester", base_url=BASE_URL)
        ws = Workspace.init(home, settings) if init else Workspace(home, settings)
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


@pytest.fixture
def shop(tmp_path, state_url, open_ws):
    """A factory: shop(effects=[...], missing=[...], extra="yaml") → a workspace with the shop's data and
    definitions applied, its state on SQLite or PostgreSQL (the test runs on both)."""
    n = [0]

    def make(*, effects=(), missing=(), extra: str = "", home=None):
        n[0] += 1
        home = home or tmp_path / f"shop{n[0]}"
        write_shop_data(home, effects=list(effects), missing=list(missing))
        ws = open_ws(home, state_url)
        apply_yaml(ws, SHOP_DEFS + "\n" + extra)
        return ws

    make.state_url = state_url
    return make


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """The demo, built once: scale 0.1, seed 42, ending 2026-11-20, state on SQLite. Copy it, never change it."""
    from metricloop.demo.setup import install_demo

    home = tmp_path_factory.mktemp("demo_template")
    ws = Workspace.init(home, Settings(home=home, user="tester", base_url=BASE_URL))
    options = {}
    if "replay_days" in inspect.signature(install_demo).parameters:
        options["replay_days"] = 0  # the tests drive time themselves
    install_demo(ws, scale=0.1, seed=42, end=DEMO_END, **options)
    ws.close()
    return home


@pytest.fixture
def demo(tmp_path, demo_template, open_ws):
    """A fresh copy of the demo workspace (data and SQLite state) for one test."""
    n = [0]

    def make(*, copy_data: bool = False) -> Workspace:
        n[0] += 1
        home = tmp_path / f"demo{n[0]}"
        home.mkdir()
        for item in demo_template.iterdir():
            if item.name == "data" and not copy_data:
                (home / "data").symlink_to(item, target_is_directory=True)
            elif item.is_dir():
                shutil.copytree(item, home / item.name)
            else:
                shutil.copy2(item, home / item.name)
        return open_ws(home, init=False)

    return make


@pytest.fixture
def demo_on(tmp_path, demo_template, open_ws):
    """The demo's data and definitions with state in a given database (e.g. a PostgreSQL schema)."""

    def make(db: str | None):
        home = tmp_path / f"demo_{uuid.uuid4().hex[:6]}"
        home.mkdir()
        (home / "data").symlink_to(demo_template / "data", target_is_directory=True)
        shutil.copytree(demo_template / "defs", home / "defs")
        shutil.copy2(demo_template / "metricloop.yaml", home / "metricloop.yaml")
        ws = open_ws(home, db)
        text_ = "\n".join((home / "defs" / f).read_text(encoding="utf-8") for f in ("demo.yaml", "loop.yaml"))
        apply_yaml(ws, text_, author="metricloop demo")
        return ws

    return make


# ------------------------------------------------------------------ loopback servers (tests/loopback.py)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich fixes the console's width when it is made (80 columns under xdist); make it wide for CLI output."""
    import metricloop.cli as cli_module

    for console in (cli_module.console, cli_module.err_console):
        monkeypatch.setattr(console, "_width", 1000)
