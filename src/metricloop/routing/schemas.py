"""Routes, on-call rotations and escalation policies."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from pydantic import Field, field_validator, model_validator

from metricloop.alerting.matchers import validate_matchers
from metricloop.definitions.durations import parse_duration
from metricloop.definitions.schemas import Name, Spec, TimezoneName


class Override(Spec):
    member: str
    start: datetime
    end: datetime


class RotationSpec(Spec):
    """Who is on call: members take turns daily or weekly from `start`; overrides win."""

    name: Name
    members: list[str] = Field(min_length=1)
    period: Literal["daily", "weekly"] = "weekly"
    start: datetime = Field(description="a hand-over moment in the rotation's timezone (naive local time)")
    timezone: TimezoneName = "Asia/Shanghai"
    overrides: list[Override] = Field(default_factory=list)


class SlaTarget(Spec):
    ack: str = Field(description="time to acknowledge, e.g. 15m")
    resolve: str = Field(description="time to resolve, e.g. 4h")

    @field_validator("ack", "resolve")
    @classmethod
    def _d(cls, v: str) -> str:
        parse_duration(v)
        return v


DEFAULT_SLA = {
    "P1": {"ack": "15m", "resolve": "4h"},
    "P2": {"ack": "1h", "resolve": "1d"},
    "P3": {"ack": "4h", "resolve": "3d"},
}


class EscalationLevel(Spec):
    after: str = Field(description="delay after the incident opened (or the previous repeat), e.g. 15m")
    notify: list[str] = Field(
        default_factory=list, description="people (emails), 'assignee', 'oncall:ROTATION' or 'owner'"
    )
    channels: list[Name] = Field(default_factory=list, description="channels for this level (default: the route's)")

    @field_validator("after")
    @classmethod
    def _d(cls, v: str) -> str:
        parse_duration(v)
        return v


class EscalationSpec(Spec):
    """Unacknowledged incidents climb the levels; acknowledging stops it at once."""

    name: Name
    levels: list[EscalationLevel] = Field(min_length=1)
    repeat: int = Field(0, ge=0, le=10, description="times to run through the levels again")
    sla: dict[Literal["P1", "P2", "P3"], SlaTarget] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> EscalationSpec:
        delays = [parse_duration(level.after) for level in self.levels]
        if delays != sorted(delays):
            raise ValueError("levels must be in order of their `after` delay")
        return self


class AssigneeLookup(Spec):
    """Find the assignee in master data, e.g. the store's manager in the stores table."""

    source: Name
    table: str
    key: str = Field(description="label whose value is looked up, e.g. store")
    column: str = Field(description="column holding the person, e.g. manager_email")
    key_column: str | None = Field(None, description="column compared with the label (default: same as key)")


class RouteSpec(Spec):
    """Matches alert labels to an owner, channels and an escalation policy. Checked in `order`."""

    name: Name
    order: int = Field(100, description="routes are tried by ascending order, then name")
    matchers: list[str] = Field(default_factory=list, description="label=value, label!=value, label=~re, label!~re")
    assignee: str | None = None
    assignee_lookup: AssigneeLookup | None = None
    rotation: Name | None = Field(None, description="assign to whoever is on call in this rotation")
    team: str = ""
    channels: list[Name] = Field(default_factory=list)
    escalation: Name | None = None
    continue_: bool = Field(False, alias="continue", description="also try later routes (extra channels)")

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, v: list[str]) -> list[str]:
        return validate_matchers(v)


class TimeWindow(Spec):
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _order(self) -> TimeWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class MaintenanceSpec(Spec):
    """Planned work: alerts matching these labels are muted during the windows (local times)."""

    name: Name
    matchers: list[str] = Field(default_factory=list)
    windows: list[TimeWindow] = Field(default_factory=list)
    daily: list[tuple[time, time]] = Field(default_factory=list, description="recurring [start, end] each day")
    reason: str = ""

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, v: list[str]) -> list[str]:
        return validate_matchers(v)
