"""/api/monitors and /api/runs: what is watched, and every evaluation as a row."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from sqlalchemy import select

from metricloop.api.contract import errors
from metricloop.api.deps import Actor, check_metric, db_session, metric_scope, operator, viewer, workspace
from metricloop.api.params import Body, Limit, Moment, RunId
from metricloop.db.times import utc_iso
from metricloop.errors import NotFound
from metricloop.monitors.models import Anomaly, MonitorRun

router = APIRouter(tags=["monitors"], dependencies=[Depends(viewer)])


def run_dict(r: MonitorRun) -> dict:
    return {
        "id": r.id,
        "monitor": r.monitor,
        "monitor_version": r.monitor_version,
        "trigger": r.trigger,
        "scheduled_for": utc_iso(r.scheduled_for),
        "data_until": r.data_until.isoformat() if r.data_until else None,
        "started_at": utc_iso(r.started_at),
        "finished_at": utc_iso(r.finished_at),
        "status": r.status,
        "series_evaluated": r.series_evaluated,
        "anomalies": r.anomalies,
        "alerts": r.alerts,
        "error": r.error,
        "details": r.details,
    }


def anomaly_dict(a: Anomaly) -> dict:
    return {
        "id": a.id,
        "monitor": a.monitor,
        "metric": a.metric,
        "slice": a.slice,
        "time": a.time.isoformat(),
        "actual": a.actual,
        "expected": a.expected,
        "lower": a.lower,
        "upper": a.upper,
        "score": a.score,
        "direction": a.direction,
        "detector": a.detector,
        "explanation_zh": a.explanation_zh,
        "explanation_en": a.explanation_en,
        "alert_id": a.alert_id,
    }


@router.get("/api/monitors")
def monitors(ws=Depends(workspace), actor: Actor | None = Depends(viewer)) -> list[dict]:
    allowed = metric_scope(ws, actor)
    monitors = ws.catalog().all("monitor").values()
    return [m.normalized() for m in monitors if allowed is None or m.metric in allowed]


@router.get("/api/monitors/{name}")
def monitor(name: str, ws=Depends(workspace), actor: Actor | None = Depends(viewer)) -> dict:
    spec = ws.catalog().get("monitor", name)
    check_metric(ws, actor, spec.metric, "monitor", name)
    return spec.normalized()


class RunBody(Body):
    at: Moment | None = Field(
        None,
        description="judge as of this moment (ISO, with its offset; without one it is the metric's local time). "
        "Before now it is a backtest: nothing is written but the run, nothing sent. Later than now, or before the "
        "metric's data, is refused (422).",
    )
    notify: bool = Field(False, description="with `at` in the past: take the alert path and notify as of then")


@router.post("/api/monitors/{name}/run", responses=errors(502))
async def run_now(name: str, body: RunBody | None = None, actor: Actor = Depends(operator), ws=Depends(workspace)):
    """Run one monitor now (or as of `at`), outside its schedule. A run that meets another run of the same
    monitor in progress is recorded as `skipped` and says which one (`details.skipped`)."""
    from metricloop.monitors.service import manual_run

    check_metric(ws, actor, ws.catalog().get("monitor", name).metric, "monitor", name)
    body = body or RunBody()
    run = await run_in_threadpool(manual_run, ws, name, at=body.at, notify=body.notify, where="at")
    return run_dict(run)


@router.get("/api/runs")
def runs(
    s=Depends(db_session),
    monitor: str | None = None,
    status: Annotated[str | None, Query(description="running, ok, failed")] = None,
    limit: Limit = 100,
) -> list[dict]:
    q = select(MonitorRun).order_by(MonitorRun.id.desc()).limit(limit)
    if monitor:
        q = q.where(MonitorRun.monitor == monitor)
    if status:
        q = q.where(MonitorRun.status == status)
    return [run_dict(r) for r in s.scalars(q)]


@router.get("/api/runs/{run_id}")
def run(run_id: RunId, s=Depends(db_session)) -> dict:
    r = s.get(MonitorRun, run_id)
    if r is None:
        raise NotFound(f"no run #{run_id}")
    out = run_dict(r)
    out["anomalies_found"] = [anomaly_dict(a) for a in s.scalars(select(Anomaly).where(Anomaly.run_id == run_id))]
    return out
