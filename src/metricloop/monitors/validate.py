"""Checks run by `apply` for the loop's kinds: every name a monitor, route or escalation uses must exist."""

from __future__ import annotations

from pydantic import ValidationError

from metricloop.definitions.kinds import Catalog
from metricloop.errors import MetricloopError, Problem
from metricloop.metrics.slices import combos_for


def _named(catalog: Catalog, kind: str, name: str | None) -> bool:
    return name is None or name in catalog.all(kind)


def loop_check(catalog: Catalog, entries) -> list[Problem]:
    problems: list[Problem] = []
    for e in entries:
        spec = e.spec
        if e.kind == "monitor":
            metric = catalog.metrics.get(spec.metric)
            if metric is None:
                problems.append(e.problem(f"unknown metric '{spec.metric}'", ("metric",)))
            else:
                for i, d in enumerate(spec.slicing.dimensions):
                    if d not in metric.dimensions:
                        allowed = ", ".join(metric.dimensions) or "none"
                        problems.append(
                            e.problem(
                                f"metric '{metric.name}' has no dimension '{d}' (allowed: {allowed})",
                                ("slicing", "dimensions", i),
                            )
                        )
                if isinstance(spec.slicing.combos, list):
                    for combo in combos_for(spec.slicing.dimensions, spec.slicing.combos):
                        for d in combo:
                            if d not in spec.slicing.dimensions:
                                problems.append(
                                    e.problem(
                                        f"combination uses '{d}', which is not in dimensions", ("slicing", "combos")
                                    )
                                )
            problems.extend(override_problems(e, spec))
            try:
                from metricloop.detect import detector_from_dict

                detector_from_dict(dict(spec.detector))
            except ValidationError as err:
                for d in err.errors():
                    problems.append(e.problem(d["msg"], ("detector", *d["loc"][:1])))
            except MetricloopError as err:
                problems.append(e.problem(err.message, ("detector",)))
            except (ValueError, TypeError, KeyError) as err:
                problems.append(e.problem(f"bad detector: {str(err).splitlines()[0]}", ("detector",)))
        elif e.kind == "route":
            for i, c in enumerate(spec.channels):
                if not _named(catalog, "channel", c):
                    problems.append(e.problem(f"unknown channel '{c}'", ("channels", i)))
            if not _named(catalog, "escalation", spec.escalation):
                problems.append(e.problem(f"unknown escalation policy '{spec.escalation}'", ("escalation",)))
            if not _named(catalog, "rotation", spec.rotation):
                problems.append(e.problem(f"unknown rotation '{spec.rotation}'", ("rotation",)))
            lk = spec.assignee_lookup
            if lk is not None and lk.source not in catalog.sources:
                problems.append(e.problem(f"unknown source '{lk.source}'", ("assignee_lookup", "source")))
        elif e.kind == "report":
            from metricloop.review.schemas import report_check

            problems.extend(report_check(catalog, e))
        elif e.kind == "escalation":
            for i, level in enumerate(spec.levels):
                for j, c in enumerate(level.channels):
                    if not _named(catalog, "channel", c):
                        problems.append(e.problem(f"unknown channel '{c}'", ("levels", i, "channels", j)))
                for j, who in enumerate(level.notify):
                    if who.startswith("oncall:") and not _named(catalog, "rotation", who.split(":", 1)[1]):
                        problems.append(e.problem(f"unknown rotation in '{who}'", ("levels", i, "notify", j)))
    return problems


def override_problems(e, spec) -> list[Problem]:
    """A per-slice override must name a slice the monitor can watch: only its slicing dimensions."""
    from metricloop.detect.scoring import parse_slice

    out = []
    for i, o in enumerate(spec.overrides):
        dims = set(parse_slice(o.slice))
        extra = sorted(dims - set(spec.slicing.dimensions))
        if extra:
            have = ", ".join(spec.slicing.dimensions) or "none"
            out.append(e.problem(f"slice '{o.slice}' uses {', '.join(extra)}, which the monitor does not slice by "
                                 f"(its dimensions: {have})", ("overrides", i, "slice")))
        elif not dims and not spec.slicing.total and o.slice.strip() in ("*", ""):
            out.append(e.problem("the monitor does not watch its total (slicing.total is false)",
                                 ("overrides", i, "slice")))
    return out
