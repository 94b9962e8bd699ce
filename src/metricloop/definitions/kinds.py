"""The registry of definition kinds. Built-in kinds register the same way later ones will."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter

from metricloop.definitions.schemas import MetricSpec, SourceSpec
from metricloop.errors import NotFound


@dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    spec_type: Any
    order: int  # apply/export order: what others refer to comes first
    adapter: TypeAdapter = field(compare=False, repr=False, default=None)  # type: ignore[assignment]

    def parse(self, raw: Any) -> BaseModel:
        return self.adapter.validate_python(raw)


KINDS: dict[str, Kind] = {}


def register_kind(name: str, plural: str, spec_type: Any, order: int) -> Kind:
    kind = Kind(name, plural, spec_type, order, TypeAdapter(spec_type))
    KINDS[name] = kind
    return kind


def kind_named(name: str) -> Kind:
    plurals = {k.plural: k.name for k in KINDS.values()}
    key = plurals.get(name, name)
    if key not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise NotFound(f"unknown kind '{name}' (known: {known})")
    return KINDS[key]


def by_plural() -> dict[str, Kind]:
    return {k.plural: k for k in sorted(KINDS.values(), key=lambda k: k.order)}


register_kind("source", "sources", SourceSpec, order=10)
register_kind("metric", "metrics", MetricSpec, order=20)


class Catalog:
    """All definitions of a workspace, typed. Read-only; changes go through the service."""

    def __init__(self, specs: dict[str, dict[str, BaseModel]]) -> None:
        self.specs = {k: dict(specs.get(k, {})) for k in KINDS}

    def all(self, kind: str) -> dict[str, Any]:
        return self.specs.get(kind, {})

    @property
    def sources(self) -> dict[str, Any]:
        return self.all("source")

    @property
    def metrics(self) -> dict[str, MetricSpec]:
        return self.all("metric")  # type: ignore[return-value]

    def get(self, kind: str, name: str) -> Any:
        items = self.all(kind)
        if name in items:
            return items[name]
        if kind == "metric":
            for m in items.values():
                if name in m.aliases:
                    return m
        import difflib

        close = difflib.get_close_matches(name, list(items), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise NotFound(f"no {kind} named '{name}'.{hint}")

    def metric(self, name: str) -> MetricSpec:
        return self.get("metric", name)

    def source(self, name: str) -> Any:
        return self.get("source", name)

    def with_changes(self, entries: list[Any]) -> Catalog:
        merged = {k: dict(v) for k, v in self.specs.items()}
        for e in entries:
            merged.setdefault(e.kind, {})[e.name] = e.spec
        return Catalog(merged)


def _register_loop_kinds() -> None:
    """Kinds of the rest of the loop register here, the same way an extension would."""
    from metricloop.knowledge.categories import RootCauseSpec
    from metricloop.monitors.schemas import MonitorSpec
    from metricloop.notify.schemas import ChannelSpec
    from metricloop.routing.schemas import EscalationSpec, MaintenanceSpec, RotationSpec, RouteSpec

    register_kind("channel", "channels", ChannelSpec, order=30)
    register_kind("rotation", "rotations", RotationSpec, order=35)
    register_kind("escalation", "escalations", EscalationSpec, order=40)
    register_kind("route", "routes", RouteSpec, order=50)
    register_kind("monitor", "monitors", MonitorSpec, order=60)
    register_kind("maintenance", "maintenance", MaintenanceSpec, order=70)
    register_kind("root_cause", "root_causes", RootCauseSpec, order=80)
    from metricloop.review.schemas import ReportSpec

    register_kind("report", "reports", ReportSpec, order=90)  # the weekly review sent to channels


_register_loop_kinds()
