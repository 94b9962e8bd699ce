"""Typed specs of the definition kinds. YAML in, normalised JSON rows out."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlglot
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator
from sqlglot import exp

from metricloop.definitions.durations import parse_duration
from metricloop.grains import GRAINS  # noqa: F401 - the five grain names, part of this module's interface
from metricloop.limits import DEFAULT_STATEMENT_TIMEOUT

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="lower_snake_case identifier")]


def _grain(v: str) -> str:
    from metricloop.errors import MetricloopError
    from metricloop.grains import canonical_grain

    try:
        return canonical_grain(v)
    except MetricloopError as exc:
        raise ValueError(exc.message) from None


# minute, hour, day, week, month, or a step that divides an hour or a day: 5min, 15min, 30min, 2h, 6h
Grain = Annotated[str, AfterValidator(_grain)]


def _timezone_name(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone '{v}' (use an IANA name such as Asia/Shanghai or UTC)") from None
    return v


TimezoneName = Annotated[str, AfterValidator(_timezone_name)]
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _env_reference(v: str | None) -> str | None:
    if v and not ENV_REF.fullmatch(v):
        raise ValueError("write it as ${ENV_VAR} so the secret is never stored (it is read when it is used)")
    return v


# A secret in a definition (a channel's password or HMAC key, an action's HMAC key): only a reference to an
# environment variable, never the value, because definitions are stored, versioned and exported.
EnvSecret = Annotated[str | None, AfterValidator(_env_reference)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def normalized(self) -> dict:
        """The canonical stored/exported form: defaults and empty values left out."""
        return self.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True)


def _identifier(value: str, what: str) -> str:
    if not IDENT.match(value):
        raise ValueError(f"{what} '{value}' must be a plain name (letters, digits and _, not starting with a digit)")
    return value


def _sql_condition(value: str) -> str:
    """A boolean SQL expression from a definition (not user input): one expression, no statements."""
    try:
        parsed = sqlglot.parse(value)
    except sqlglot.errors.ParseError as e:
        raise ValueError(f"not valid SQL: {str(e).splitlines()[0]}") from None
    if len(parsed) != 1 or parsed[0] is None:
        raise ValueError("must be a single SQL expression")
    node = parsed[0]
    if isinstance(node, exp.Query | exp.Command | exp.Create | exp.Drop | exp.Insert | exp.Update | exp.Delete):
        raise ValueError("must be an expression such as status <> 'cancelled', not a statement")
    if any(True for _ in node.find_all(exp.Query)):
        raise ValueError("subqueries are not allowed in filters")
    return value


# ---------------------------------------------------------------- sources

MAX_STATEMENT_TIMEOUT = "1d"


def _statement_timeout(v: str) -> str:
    seconds = parse_duration(v).total_seconds()
    if seconds < 1 or seconds > parse_duration(MAX_STATEMENT_TIMEOUT).total_seconds():
        raise ValueError(f"'{v}' must be between 1s and {MAX_STATEMENT_TIMEOUT}")
    return v


StatementTimeout = Annotated[
    str,
    AfterValidator(_statement_timeout),
    Field(description="how long one query may run before it is cancelled, e.g. 30s, 5m"),
]


class DuckDBSourceSpec(Spec):
    """Embedded DuckDB: views over CSV/Parquet/JSON files (globs allowed), and/or a .duckdb file."""

    name: Name
    type: Literal["duckdb"]
    description: str = ""
    owner: str | None = None
    path: str | None = Field(default=None, description="a .duckdb database file (opened read-only)")
    tables: dict[str, str] = Field(default_factory=dict, description="view name → file path or glob")
    statement_timeout: StatementTimeout = DEFAULT_STATEMENT_TIMEOUT

    @field_validator("tables")
    @classmethod
    def _table_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            _identifier(k, "table name")
        return v

    @model_validator(mode="after")
    def _something(self) -> DuckDBSourceSpec:
        if not self.path and not self.tables:
            raise ValueError("a duckdb source needs `path` (a .duckdb file) or `tables` (files to read)")
        return self


class SQLSourceSpec(Spec):
    """Any database SQLAlchemy can reach. Queries are pushed down in its own SQL dialect."""

    name: Name
    type: Literal["sql"]
    description: str = ""
    owner: str | None = None
    url: str = Field(description="SQLAlchemy URL; write secrets as ${ENV_VAR}")
    db_schema: str | None = Field(default=None, alias="schema")
    statement_timeout: StatementTimeout = DEFAULT_STATEMENT_TIMEOUT

    @field_validator("url")
    @classmethod
    def _no_literal_password(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        probe = ENV_REF.sub("x", v)
        try:
            url = make_url(probe)
        except ArgumentError:
            raise ValueError("not a valid SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)") from None
        password = make_url(v).password if "://" in v else None
        if password and not ENV_REF.fullmatch(str(password)):
            raise ValueError("the URL contains a literal password; write it as ${ENV_VAR} so it is never stored")
        if not url.drivername:
            raise ValueError("the URL has no driver")
        return v


SourceSpec = Annotated[DuckDBSourceSpec | SQLSourceSpec, Field(discriminator="type")]


# ---------------------------------------------------------------- metrics


class Title(Spec):
    zh: str | None = None
    en: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Title:
        if not (self.zh or self.en):
            raise ValueError("give a title in zh, en or both")
        return self

    def text(self, lang: str = "en") -> str:
        return (self.zh or self.en or "") if lang == "zh" else (self.en or self.zh or "")


Agg = Literal["sum", "count", "count_distinct", "avg", "min", "max"]


class Measure(Spec):
    """An aggregate over the metric's rows, optionally restricted by its own filter."""

    agg: Agg
    column: str | None = None
    filter: str | None = None

    @field_validator("column")
    @classmethod
    def _col(cls, v: str | None) -> str | None:
        return None if v is None else _identifier(v, "column")

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: str | None) -> str | None:
        return None if v is None else _sql_condition(v)

    @model_validator(mode="after")
    def _needs_column(self) -> Measure:
        if self.agg != "count" and not self.column:
            raise ValueError(f"agg '{self.agg}' needs a `column`")
        return self


class MetricRef(Spec):
    """A ratio side taken from another metric (which may live in another table)."""

    metric: Name


def _ratio_side(value: Any) -> str:
    """Pick the union member by shape, so an error reports one member's fields, not both members'."""
    if isinstance(value, MetricRef) or (isinstance(value, dict) and "metric" in value):
        return "MetricRef"
    return "Measure"


RatioSide = Annotated[
    Annotated[Measure, Tag("Measure")] | Annotated[MetricRef, Tag("MetricRef")], Discriminator(_ratio_side)
]


class Ratio(Spec):
    """agg(a) / agg(b) × scale. Both sides are aggregated separately, so it is right at every roll-up."""

    numerator: RatioSide
    denominator: RatioSide
    scale: float = 1.0


class Quality(Spec):
    max_lag: str | None = Field(default=None, description="freshness: how late the newest row may be")
    min_completeness: float = Field(default=0.5, gt=0, le=1, description="bucket rows / usual rows")
    completeness_by: list[str] = Field(default_factory=list, description="also check each slice of these")
    recent_buckets: int = Field(default=3, ge=1, le=100)

    @field_validator("max_lag")
    @classmethod
    def _lag(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class MetricSpec(Spec):
    name: Name
    title: Title
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    owner: str
    domain: str
    tier: Literal["core", "important", "normal"] = "normal"
    unit: str = ""
    good_direction: Literal["up", "down", "none"] = "up"
    source: Name | None = None
    table: str | None = None
    sql: str | None = None
    time_column: str | None = None
    timezone: TimezoneName = "Asia/Shanghai"
    grain: Grain = "day"
    measure: Measure | None = None
    ratio: Ratio | None = None
    filters: list[str] = Field(default_factory=list)
    dimensions: list[str] = Field(default_factory=list)
    fill: Literal["null", "zero"] = "null"
    quality: Quality = Field(default_factory=Quality)
    related: list[Name] = Field(
        default_factory=list,
        description="metrics read beside this one when an incident is explained (root-cause analysis); the parts "
        "of a ratio and the metrics over the same table are related without being named",
    )

    @field_validator("time_column")
    @classmethod
    def _time_col(cls, v: str | None) -> str | None:
        return None if v is None else _identifier(v, "time_column")

    @field_validator("dimensions")
    @classmethod
    def _dims(cls, v: list[str]) -> list[str]:
        seen = set()
        for d in v:
            _identifier(d, "dimension")
            if d in seen:
                raise ValueError(f"dimension '{d}' is listed twice")
            seen.add(d)
        return v

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: list[str]) -> list[str]:
        return [_sql_condition(f) for f in v]

    @field_validator("related")
    @classmethod
    def _related(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a related metric is listed twice")
        return v

    @field_validator("table")
    @classmethod
    def _table(cls, v: str | None) -> str | None:
        if v is not None and not all(IDENT.match(p) for p in v.split(".")):
            raise ValueError(f"table '{v}' must be a name like orders or schema.orders")
        return v

    @field_validator("sql")
    @classmethod
    def _sql(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            parsed = sqlglot.parse(v)
        except sqlglot.errors.ParseError as e:
            raise ValueError(f"not valid SQL: {str(e).splitlines()[0]}") from None
        if len(parsed) != 1 or not isinstance(parsed[0], exp.Query):
            raise ValueError("must be one SELECT query")
        return v

    @model_validator(mode="after")
    def _shape(self) -> MetricSpec:
        if (self.measure is None) == (self.ratio is None):
            raise ValueError("give exactly one of `measure` or `ratio`")
        if self.derived:
            if self.table or self.sql or self.source:
                raise ValueError("a ratio of two metrics takes its data from them: drop source/table/sql")
            return self
        if not self.source:
            raise ValueError("`source` is required")
        if bool(self.table) == bool(self.sql):
            raise ValueError("give exactly one of `table` or `sql`")
        if not self.time_column:
            raise ValueError("`time_column` is required")
        if self.ratio and (
            isinstance(self.ratio.numerator, MetricRef) or isinstance(self.ratio.denominator, MetricRef)
        ):
            raise ValueError("mixing an inline measure with a metric reference is not supported: use two metrics")
        return self

    @property
    def derived(self) -> bool:
        """A ratio of two other metrics (possibly from different tables)."""
        return (
            self.ratio is not None
            and isinstance(self.ratio.numerator, MetricRef)
            and isinstance(self.ratio.denominator, MetricRef)
        )

    @property
    def is_ratio(self) -> bool:
        return self.ratio is not None

    @property
    def is_count(self) -> bool:
        return self.measure is not None and self.measure.agg in ("count", "count_distinct")

    def label(self, lang: str = "en") -> str:
        return self.title.text(lang) or self.name
