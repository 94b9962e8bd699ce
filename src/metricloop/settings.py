"""Settings from the environment (METRICLOOP_*) with workspace-relative defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WORKSPACE_FILE = "metricloop.yaml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METRICLOOP_", extra="ignore")

    home: Path = Path(".")
    """The workspace folder: metricloop.yaml, defs/, data/ and (by default) state.db."""

    db: str | None = None
    """SQLAlchemy URL of the state database. Default: SQLite at HOME/state.db."""

    user: str | None = None
    """Who is acting, recorded as the author of definition changes."""

    host: str = "127.0.0.1"
    port: int = 8000

    base_url: str = ""
    """Where people reach this server: links in notifications point here. Default: http://HOST:PORT (127.0.0.1 for
    a server bound to every address)."""

    secret_key: str | None = None
    """Signs the links in messages (incident page, acknowledge, resolve). Default: a random key in HOME/.secret_key."""

    public_reads: bool = False
    """Let requests without an API token read the API (GET routes). Writes always need a token."""

    max_body_bytes: int = 1_048_576
    """The largest request body the server reads (413 beyond it); 0 turns the limit off."""

    rate_limit_per_minute: int = 120
    """Requests a minute one client address may make to the routes that need no token (429 beyond); 0: no limit."""

    rate_limit_burst: int = 30
    """How many of those requests may come at once."""

    series_max_rows: int = Field(100_000, ge=1)
    """Rows one /api/metrics/{name}/series response may hold; a larger query is refused (422) with how to narrow it."""

    series_max_bytes: int = Field(20_000_000, ge=1)
    """Bytes of JSON rows one series response may hold; a larger one is refused (422) like too many rows."""

    @model_validator(mode="after")
    def _base_url(self) -> Settings:
        if not self.base_url:  # follows --port / METRICLOOP_PORT
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
            self.base_url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"
        return self

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.home / 'state.db').resolve()}"

    @property
    def author(self) -> str:
        if self.user:
            return self.user
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # no passwd entry in some containers
            return "unknown"
