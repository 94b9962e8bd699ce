"""Monitor definitions: which metric, which slices, which detector, when, how severe, what to do."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from metricloop.alerting.matchers import validate_matchers
from metricloop.definitions.durations import parse_duration
from metricloop.definitions.schemas import EnvSecret, Grain, Name, Spec, TimezoneName, Title

Severity = Literal["P1", "P2", "P3"]


class Slicing(Spec):
    dimensions: list[str] = Field(default_factory=list, description="dimensions to explode")
    combos: Literal["all", "each", "full"] | list[list[str]] = "each"
    total: bool = Field(True, description="also watch the metric's total")
    top_n: int | None = Field(None, ge=1, description="per combination, the N slices with the most volume")
    min_volume: float | None = Field(None, ge=0, description="skip slices averaging less volume per bucket")


class Schedule(Spec):
    cron: str | None = Field(None, description="cron expression in the monitor's timezone, e.g. '0 9 * * *'")
    every: str | None = Field(None, description="or an interval, e.g. 15m, 1h")
    timezone: TimezoneName = "Asia/Shanghai"

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if bool(self.cron) == bool(self.every):
            raise ValueError("give exactly one of `cron` or `every`")
        if self.cron:
            from croniter import croniter

            fields = self.cron.split()
            if not self.cron.startswith("@") and len(fields) > 5:
                raise ValueError(
                    f"'{self.cron}' has {len(fields)} fields; give the 5 of minute hour day month weekday "
                    "(a monitor runs at most once a minute: no seconds field)"
                )
            if not croniter.is_valid(self.cron):
                raise ValueError(f"'{self.cron}' is not a valid cron expression (minute hour day month weekday)")
        if self.every and parse_duration(self.every).total_seconds() < 60:
            raise ValueError("`every` must be at least 1m")
        return self


class SeverityRule(Spec):
    """First matching rule wins; with none matching, severity comes from deviation, tier and impact."""

    matchers: list[str] = Field(default_factory=list, description="on alert labels (slice dims, tier, domain, …)")
    min_deviation_pct: float | None = Field(None, ge=0)
    min_impact: float | None = Field(None, ge=0, description="|actual − expected| in the metric's unit")
    min_share_pct: float | None = Field(
        None, ge=0, description="|actual − expected| as a % of the metric's total (sums and counts only)"
    )
    severity: Severity

    @field_validator("matchers")
    @classmethod
    def _m(cls, v: list[str]) -> list[str]:
        return validate_matchers(v)


class ImpactThresholds(Spec):
    """At least this much |actual − expected|, in the metric's unit, raises an alert to P1 / P2 (e.g. CNY)."""

    P1: float | None = Field(None, gt=0)
    P2: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _order(self) -> ImpactThresholds:
        if self.P1 is None and self.P2 is None:
            raise ValueError("give P1, P2 or both (the amount in the metric's unit from which that severity applies)")
        if self.P1 is not None and self.P2 is not None and self.P1 < self.P2:
            raise ValueError("P1's amount must be at least P2's")
        return self


class CalendarRef(Spec):
    china_holidays: bool | Literal["learn"] = Field(
        "learn", description="Chinese public holidays and make-up workdays: 'learn' = for each series whose own "
        "past holidays looked like days off; true = declared for every series; false = none")
    events: list[str] = Field(default_factory=list, description="CSV files of events (e.g. data/promotions.csv)")
    behaviour: Literal["exclude", "suppress", "compare"] = "compare"


class ActionSpec(Spec):
    """An outbound call when an incident opens, e.g. a restock request in purchasing."""

    name: Name
    url: str
    method: Literal["POST", "PUT"] = "POST"
    severities: list[Severity] = Field(default_factory=list, description="only for these (default: all)")
    payload: dict[str, Any] | str = Field(default_factory=dict, description="JSON; strings are Jinja2 templates")
    headers: dict[str, str] = Field(default_factory=dict)
    secret: EnvSecret = Field(None, description="HMAC-SHA256 key as ${ENV_VAR}")
    require_approval: bool = False
    approvers: list[str] = Field(default_factory=list, description="who may approve (default: any operator)")
    max_attempts: int = Field(8, ge=1, le=50)


class SliceOverride(Spec):
    """Alert knobs of its own for one slice that is noisier (or quieter) than the rest; the detector and its
    scores are the monitor's, only the yes/no is judged with these."""

    slice: str = Field(description="the slice key as in alerts, e.g. 'store=SH-003' ('*' = the total)")
    sensitivity: float | None = Field(None, ge=0, le=10)
    direction: Literal["up", "down", "both"] | None = None
    min_abs_change: float | None = Field(None, ge=0)
    min_rel_change: float | None = Field(None, ge=0)
    min_duration: int | None = Field(None, ge=1)
    min_volume: float | None = Field(None, ge=0)
    reason: str = Field("", max_length=500, description="why (tuning writes what it saw)")

    def knobs(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"slice", "reason"}).items() if v is not None}


class MonitorSpec(Spec):
    name: Name
    title: Title | None = None
    description: str = ""
    metric: Name
    grain: Grain | None = None
    slicing: Slicing = Field(default_factory=Slicing)
    detector: dict[str, Any] = Field(default_factory=lambda: {"detector": "auto"})
    history: str | None = Field(None, description="how much history to score (default: 400d daily, 35d hourly)")
    evaluate: int = Field(1, ge=1, le=500, description="newest complete buckets that may raise alerts per run")
    delay: str = Field("0m", description="wait this long after a bucket ends before judging it")
    schedule: Schedule = Field(default_factory=lambda: Schedule(cron="0 * * * *"))
    severity: list[SeverityRule] = Field(default_factory=list)
    impact: ImpactThresholds | None = Field(None, description="amounts that raise the severity, e.g. {P1: 100000}")
    labels: dict[str, str] = Field(default_factory=dict)
    calendar: CalendarRef = Field(default_factory=CalendarRef)
    auto_resolve_after: int = Field(2, ge=0, description="normal points before an alert resolves itself (0: never)")
    repeat_interval: str = Field("4h", description="re-notify an open incident that keeps firing at most this often")
    group: Literal["hierarchy", "monitor", "none"] = Field(
        "hierarchy",
        description="hierarchy: a slice and its parents (the total, region above region×carrier) share an incident; "
        "monitor: everything this monitor raises shares one open incident; none: one incident per slice",
    )
    actions: list[ActionSpec] = Field(default_factory=list)
    overrides: list[SliceOverride] = Field(default_factory=list, description="per-slice alert knobs")
    auto_tune: bool = Field(False, description="apply the weekly tuning suggestion without waiting for a person")
    enabled: bool = True

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v: list[SliceOverride]) -> list[SliceOverride]:
        from metricloop.detect.scoring import canonical_slice

        seen: set[str] = set()
        for i, o in enumerate(v):
            key = canonical_slice(o.slice)
            if key in seen:
                raise ValueError(f"overrides[{i}]: slice '{o.slice}' has an override already (one per slice)")
            seen.add(key)
            if not o.knobs():
                raise ValueError(f"overrides[{i}] ({o.slice}): give at least one knob (sensitivity, direction, "
                                 "min_abs_change, min_rel_change, min_duration, min_volume)")
        return v

    @field_validator("history", "delay", "repeat_interval")
    @classmethod
    def _d(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    def label(self, lang: str = "en") -> str:
        return self.title.text(lang) if self.title else self.name
