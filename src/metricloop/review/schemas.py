"""The `report` definition kind: a weekly review sent to channels on a schedule (docs/feedback.md, Weekly review).

```yaml
reports:
  - name: logistics_weekly
    team: logistics          # and/or domain: fulfilment
    schedule: {cron: "0 9 * * 1", timezone: Asia/Shanghai}   # default: Mondays 09:00
    channels: [ops_im]
    to: [head.ops@example.com]   # for email channels (added to the channel's own `to`)
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from metricloop.definitions.schemas import Name, Spec
from metricloop.monitors.schemas import Schedule


class ReportSpec(Spec):
    """A weekly review of a team and/or a domain, sent as a digest to channels once per week."""

    name: Name
    kind: Literal["weekly"] = "weekly"
    description: str = ""
    team: str | None = Field(None, description="the team, as routes name it")
    domain: str | None = Field(None, description="the metric domain")
    schedule: Schedule = Field(default_factory=lambda: Schedule(cron="0 9 * * 1"))
    channels: list[Name] = Field(min_length=1)
    to: list[str] = Field(default_factory=list, description="people for email channels")
    language: Literal["zh", "en"] | None = Field(None, description="default: each channel's language")
    enabled: bool = True

    @model_validator(mode="after")
    def _scope(self) -> ReportSpec:
        if not (self.team or self.domain):
            raise ValueError("a report needs a team or a domain (or both)")
        return self


def report_check(catalog, e) -> list:
    """`apply` check of a report: its channels exist, its domain exists, an email channel has someone to write to."""
    spec, problems = e.spec, []
    for i, c in enumerate(spec.channels):
        channel = catalog.all("channel").get(c)
        if channel is None:
            problems.append(e.problem(f"unknown channel '{c}'", ("channels", i)))
        elif channel.type == "email" and not (spec.to or channel.to):
            problems.append(e.problem(f"email channel '{c}' has no `to` and the report none either", ("to",)))
    domains = {m.domain for m in catalog.metrics.values()}
    if spec.domain is not None and spec.domain not in domains:
        problems.append(e.problem(f"unknown domain '{spec.domain}' (known: {', '.join(sorted(domains))})", ("domain",)))
    teams = {r.team for r in catalog.all("route").values() if r.team}
    if spec.team is not None and spec.team not in teams:
        known = ", ".join(sorted(teams)) or "none"
        problems.append(e.problem(f"no route names team '{spec.team}' (teams of routes: {known})", ("team",)))
    return problems
