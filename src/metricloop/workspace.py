"""A workspace: a folder with metricloop.yaml, defs/, data/ and (by default) the SQLite state."""

from __future__ import annotations

import threading
from pathlib import Path

import yaml

from metricloop.db import Database, open_database
from metricloop.definitions import service
from metricloop.definitions.kinds import Catalog
from metricloop.definitions.yamlfile import safe_load
from metricloop.errors import MetricloopError
from metricloop.settings import WORKSPACE_FILE, Settings
from metricloop.sources import Source, open_source

DEFAULT_CONFIG = {
    "name": "metricloop",
    "language": "zh",
    "timezone": "Asia/Shanghai",
}


class Workspace:
    def __init__(self, home: Path, settings: Settings | None = None) -> None:
        self.home = Path(home).resolve()
        self.settings = settings or Settings(home=self.home)
        if self.settings.home.resolve() != self.home:
            self.settings = self.settings.model_copy(update={"home": self.home})
        self._db: Database | None = None
        self._sources: dict[str, tuple[dict, Source]] = {}
        self._catalog: tuple[tuple, Catalog] | None = None
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        cfg_file = self.home / WORKSPACE_FILE
        self.config = (
            {**DEFAULT_CONFIG, **(safe_load(cfg_file.read_text(encoding="utf-8"), str(cfg_file)) or {})}
            if cfg_file.exists()
            else dict(DEFAULT_CONFIG)
        )

    @classmethod
    def open(cls, home: Path | str | None = None, settings: Settings | None = None) -> Workspace:
        settings = settings or Settings()
        home = Path(home) if home is not None else settings.home
        if not (home / WORKSPACE_FILE).exists():
            raise MetricloopError(
                f"no workspace at {home.resolve()} (no {WORKSPACE_FILE}); create one with `metricloop init {home}` "
                "or point METRICLOOP_HOME / --workspace at one"
            )
        return cls(home, settings)

    @classmethod
    def init(cls, home: Path | str, settings: Settings | None = None, *, name: str | None = None) -> Workspace:
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True)
        (home / "defs").mkdir(exist_ok=True)
        (home / "data").mkdir(exist_ok=True)
        cfg = home / WORKSPACE_FILE
        if not cfg.exists():
            config = {**DEFAULT_CONFIG, "name": name or home.resolve().name}
            cfg.write_text(
                "# metricloop workspace. Definitions live in the state database; defs/ holds their YAML.\n"
                + yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
            )
        ws = cls(home, settings)
        _ = ws.db  # create and migrate the state database
        return ws

    @property
    def defs_dir(self) -> Path:
        return self.home / "defs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def db(self) -> Database:
        if self._db is None:
            with self._db_lock:  # threads (scheduler, dispatcher) may arrive together; migrate once
                if self._db is None:
                    self._db = open_database(self.settings.db_url)
        return self._db

    def catalog(self) -> Catalog:
        """The definitions, parsed once per change: every version bump (apply, rollback, delete) gives a new key,
        and reading the keys costs far less than validating every spec again, which every API call did."""
        from sqlalchemy import func, select

        from metricloop.db.models import Definition, DefinitionVersion

        with self.db.session() as s:
            # One row: every change writes a version row (ids only grow) and bumps a version or adds or removes a
            # definition, so the key moves on any change; reading it is one aggregate, not a row per definition.
            key = tuple(
                s.execute(
                    select(
                        select(func.max(DefinitionVersion.id)).scalar_subquery(),
                        func.count(Definition.id), func.max(Definition.id), func.sum(Definition.version),
                    )
                ).one()
            )  # fmt: skip
            cached = self._catalog
            if cached is not None and cached[0] == key:
                return cached[1]
            catalog = service.load_catalog(s)
        self._catalog = (key, catalog)
        return catalog

    def source(self, name: str, catalog: Catalog | None = None) -> Source:
        spec = (catalog or self.catalog()).source(name)
        key = spec.normalized()
        with self._lock:
            cached = self._sources.get(name)
            if cached and cached[0] == key:
                return cached[1]
            if cached:
                cached[1].close()
            src = open_source(spec, base_dir=self.home)
            self._sources[name] = (key, src)
            return src

    def close(self) -> None:
        for _, src in self._sources.values():
            src.close()
        self._sources.clear()
        if self._db is not None:
            self._db.engine.dispose()
            self._db = None
