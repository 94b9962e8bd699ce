"""Who gets an alert and how: routes matched by labels, on-call rotations, assignee lookups."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
from sqlglot import exp

from metricloop.alerting.matchers import matches_all, parse_matchers
from metricloop.definitions.kinds import Catalog
from metricloop.errors import MetricloopError
from metricloop.routing.schemas import AssigneeLookup, RotationSpec, RouteSpec


@dataclass
class RouteDecision:
    assignee: str = ""
    team: str = ""
    channels: list[str] = field(default_factory=list)
    escalation: str | None = None
    routes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def on_call(rotation: RotationSpec, at: datetime) -> str:
    """The member on call at `at` (aware, or naive in the rotation's timezone). Overrides win."""
    tz = ZoneInfo(rotation.timezone)
    local = at.astimezone(tz).replace(tzinfo=None) if at.tzinfo else at
    for o in rotation.overrides:
        if o.start <= local < o.end:
            return o.member
    period = pd.Timedelta(days=1 if rotation.period == "daily" else 7)
    turns = int((pd.Timestamp(local) - pd.Timestamp(rotation.start)) // period)
    return rotation.members[turns % len(rotation.members)]


def lookup_assignee(ws, catalog: Catalog, lookup: AssigneeLookup, labels: dict[str, str]) -> str | None:
    value = labels.get(lookup.key)
    if value is None:
        return None
    source = ws.source(lookup.source, catalog)
    query = (
        exp.select(exp.column(lookup.column, quoted=True))
        .from_(exp.to_table(lookup.table, dialect=source.dialect))
        .where(exp.column(lookup.key_column or lookup.key, quoted=True).eq(exp.Literal.string(str(value))))
        .limit(1)
    )
    df = source.query(query.sql(dialect=source.dialect))
    return None if df.empty or pd.isna(df.iloc[0, 0]) else str(df.iloc[0, 0])


def resolve_route(ws, catalog: Catalog, labels: dict[str, str], *, at: datetime, fallback: str = "") -> RouteDecision:
    """Try routes by (order, name). The first match decides the owner and escalation; channels add up
    while matched routes say `continue: true`. With no match the metric's owner is assigned."""
    decision = RouteDecision()
    routes: list[RouteSpec] = sorted(catalog.all("route").values(), key=lambda r: (r.order, r.name))
    for route in routes:
        if not matches_all(parse_matchers(route.matchers), labels):
            continue
        decision.routes.append(route.name)
        first = len(decision.routes) == 1
        for c in route.channels:
            if c not in decision.channels:
                decision.channels.append(c)
        if first:
            decision.team = route.team
            decision.escalation = route.escalation
            decision.assignee, why = _assignee(ws, catalog, route, labels, at)
            decision.reasons.append(f"route {route.name} matched ({', '.join(route.matchers) or 'all'}); {why}")
        else:
            decision.reasons.append(f"route {route.name} also matched (continue): adds channels {route.channels}")
        if not route.continue_:
            break
    if not decision.routes:
        decision.reasons.append("no route matched: assigned to the metric's owner, no channels")
    if not decision.assignee:
        decision.assignee = fallback
        if decision.routes:
            decision.reasons.append(f"the route named nobody: falls back to {fallback or 'nobody'}")
    return decision


def _assignee(ws, catalog: Catalog, route: RouteSpec, labels: dict[str, str], at: datetime) -> tuple[str, str]:
    if route.assignee:
        return route.assignee, f"assignee {route.assignee}"
    if route.assignee_lookup is not None:
        lk = route.assignee_lookup
        try:
            found = lookup_assignee(ws, catalog, lk, labels)
        except MetricloopError as e:
            found, err = None, str(e)
        else:
            err = ""
        if found:
            return found, f"{lk.column} of {lk.key}={labels.get(lk.key)} in {lk.table}"
        if err:
            return "", f"lookup in {lk.table} failed ({err})"
    if route.rotation:
        rotation = catalog.all("rotation").get(route.rotation)
        if rotation is not None:
            who = on_call(rotation, at)
            return who, f"on call in {route.rotation}: {who}"
    return "", "no assignee on the route"
