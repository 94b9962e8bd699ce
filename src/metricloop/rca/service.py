"""Root-cause analysis on every incident: computed when it opens and again when it grows worse, stored as rows
(`rca_findings`), on the timeline, in the summary that messages are rendered from, and read back for the API and
the incident page. It never stops an incident from opening: a failure is recorded on the timeline with why."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from metricloop.errors import MetricloopError
from metricloop.rca.models import RcaFinding
from metricloop.rca.report import TOP_IN_MESSAGES, RcaReport, analyse

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    report: RcaReport | None
    error: str = ""

    def summary_fields(self) -> dict:
        """What the incident's summary carries for messages: the top causes and the explanation."""
        if self.report is None:
            return {"rca_error": self.error}
        r = self.report
        return {
            "rca_causes": [_short(c) for c in r.causes[:TOP_IN_MESSAGES]],
            "rca_explanation_zh": r.explanation_zh,
            "rca_explanation_en": r.explanation_en,
            "rca_error": "",
        }


def _short(c: dict) -> dict:
    return {k: c.get(k) for k in ("label", "dimensions", "actual", "expected", "deviation_pct", "share", "effects")
            if c.get(k) is not None}


def compute(ws, catalog, monitor, metric, *, slices: list[str], at: datetime, direction: str, grain: str,
            cache: dict | None = None) -> Outcome:
    """The analysis for an incident of `monitor` on `slices` at bucket `at`; any failure becomes an Outcome with
    the reason (never an exception: the incident opens either way)."""
    try:
        report = analyse(
            ws,
            metric.name,
            at=at,
            keep=[d for d in monitor.slicing.dimensions if d in metric.dimensions],
            grain=grain,
            detector=monitor.detector,
            # the alert's own holidays and events, for every leaf: a leaf whose holiday dip the calendar explains
            # is not a cause (read once per run: the run's incidents share it, as they share the cube)
            calendar=_calendar(ws, monitor, cache),
            slices=slices,
            direction=direction if direction in ("up", "down") else None,
            require_anomaly=False,
            catalog=catalog,
            cache=cache,
        )
        return Outcome(report)
    except MetricloopError as exc:
        return Outcome(None, exc.message)
    except Exception as exc:  # noqa: BLE001 - RCA must never break incident opening; the reason goes on the timeline
        log.warning("root-cause analysis failed: %s", traceback.format_exc())
        return Outcome(None, f"{type(exc).__name__}: {exc}")


def _calendar(ws, monitor, cache: dict | None):
    from metricloop.monitors.service import build_calendar

    if cache is None:
        return build_calendar(ws, monitor)
    key = ("calendar", monitor.name, monitor.calendar.model_dump_json())
    if key not in cache:
        cache[key] = build_calendar(ws, monitor)
    return cache[key]


def next_run(db_session: Session, incident_id: int) -> int:
    last = db_session.scalar(select(func.max(RcaFinding.run)).where(RcaFinding.incident_id == incident_id))
    return (last or 0) + 1


def record(db_session: Session, incident, outcome: Outcome, *, now: datetime, why: str = "opened") -> int:
    """Store the outcome as rows, and say it on the timeline. Returns the run number."""
    from metricloop.incidents import service as incidents

    run = next_run(db_session, incident.id)
    if outcome.report is None:
        db_session.add(RcaFinding(incident_id=incident.id, run=run, kind="report", rank=0, label="failed",
                                  data={"error": outcome.error, "why": why}, created_at=now))
        incidents.event(db_session, incident, "rca_failed", incidents.SYSTEM,
                        f"root-cause analysis failed: {outcome.error} · 根因分析失败", at=now, run=run,
                        error=outcome.error)
        return run
    r = outcome.report
    d = r.to_dict()
    report_data = {k: d[k] for k in ("metric", "at", "grain", "dimensions", "total", "significant",
                                     "explanation_zh", "explanation_en", "seconds")}
    report_data.update(why=why, message=d.get("message", ""), warnings=d.get("warnings", []))
    db_session.add(RcaFinding(incident_id=incident.id, run=run, kind="report", rank=0, label=r.metric,
                              data=report_data, created_at=now))
    for c in r.causes:
        db_session.add(RcaFinding(incident_id=incident.id, run=run, kind="cause", rank=c["rank"],
                                  label=c["label"][:500], data=c, created_at=now))
    for x in r.related:
        db_session.add(RcaFinding(incident_id=incident.id, run=run, kind="related", rank=x["rank"],
                                  label=x["metric"], data=x, created_at=now))
    top = ", ".join(c["label"] for c in r.causes[:TOP_IN_MESSAGES]) or "no significant cause"
    incidents.event(db_session, incident, "rca", incidents.SYSTEM,
                    f"root causes ({why}): {top} — {r.explanation_en}", at=now, run=run,
                    causes=[c["label"] for c in r.causes], related=[x["metric"] for x in r.related[:3]],
                    explanation_zh=r.explanation_zh)
    return run


def findings(db_session: Session, incident_id: int) -> dict:
    """The latest analysis of an incident, and how many runs there were: {run, runs, report, causes, related}."""
    run = db_session.scalar(select(func.max(RcaFinding.run)).where(RcaFinding.incident_id == incident_id))
    if run is None:
        return {"run": 0, "runs": 0, "status": "none", "report": None, "causes": [], "related": []}
    rows = db_session.scalars(
        select(RcaFinding).where(RcaFinding.incident_id == incident_id, RcaFinding.run == run)
        .order_by(RcaFinding.kind, RcaFinding.rank)
    ).all()
    report = next((r for r in rows if r.kind == "report"), None)
    failed = report is not None and report.label == "failed"
    return {
        "run": run,
        "runs": run,
        "status": "failed" if failed else "done",
        "computed_at": report.created_at.isoformat() if report is not None and report.created_at else None,
        "report": dict(report.data) if report is not None else None,
        "causes": [dict(r.data) for r in rows if r.kind == "cause"],
        "related": [dict(r.data) for r in rows if r.kind == "related"],
    }
