"""Engine, sessions and migrations for the state database (SQLite by default, any SQLAlchemy URL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pool = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # Keep as many connections as the server's threads use at once (API pool threads, scheduler,
            # dispatchers): with the default 5, every request beyond them opened one and ran the pragmas again.
            pool = {"pool_size": 20, "max_overflow": 20}
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the state schema up to `revision` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        s = self.sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()


STATE_BACKENDS = ("sqlite", "postgresql")


def open_database(url: str, *, upgrade: bool = True) -> Database:
    """The state database. Only SQLite and PostgreSQL are supported: the outbox's per-incident ordering and
    the dispatchers' row claims rely on `ON CONFLICT`, `RETURNING` and `SKIP LOCKED` as those two have them.
    MariaDB/MySQL (and anything else SQLAlchemy reaches) are supported as sources, not as the state."""
    backend = make_url(url).get_backend_name()
    if backend not in STATE_BACKENDS:
        from metricloop.errors import MetricloopError

        raise MetricloopError(
            f"the state database must be SQLite or PostgreSQL, not {backend!r} "
            "(MariaDB/MySQL and other databases are supported as metric sources)",
            where="METRICLOOP_DB",
        )
    engine = make_engine(url)
    if upgrade:
        migrate(engine)
    return Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))
