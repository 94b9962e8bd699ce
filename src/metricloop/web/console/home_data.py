"""The home screen's figures from the database: counts by severity and by owner over every open incident (a
GROUP BY, not a capped list), and short lists of the open incidents that breached their SLA, that are data-quality
problems, and that are the person's own."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from metricloop.incidents.models import Incident
from metricloop.incidents.service import OPEN_STATES

LISTED = 20  # rows per list on the home screen; the incident list has the rest


def _open(allowed: set[str] | None):
    q = select(Incident).where(Incident.state.in_(OPEN_STATES))
    return q if allowed is None else q.where(Incident.metric.in_(sorted(allowed) or [""]))


def _counts(s, allowed: set[str] | None, column) -> dict[str, int]:
    q = _open(allowed).with_only_columns(column, func.count()).group_by(column)
    out: dict[str, int] = {}
    for k, n in s.execute(q).all():
        out[k or ""] = out.get(k or "", 0) + n
    return out


def home_figures(s, allowed: set[str] | None, *, me: tuple[str, ...]) -> dict:
    newest = (Incident.created_at.desc(), Incident.id.desc())
    by_severity = _counts(s, allowed, Incident.severity)
    return {
        "by_severity": by_severity,
        "by_owner": _counts(s, allowed, Incident.assignee),
        "open_count": sum(by_severity.values()),
        "breaches": list(
            s.scalars(
                _open(allowed)
                .where(or_(Incident.ack_breached, Incident.resolve_breached))
                .order_by(*newest)
                .limit(LISTED)
            )
        ),  # fmt: skip
        "data_quality": list(
            s.scalars(_open(allowed).where(Incident.kind == "data_quality").order_by(*newest).limit(LISTED))
        ),  # fmt: skip
        "mine": list(
            s.scalars(
                _open(allowed)
                .where(Incident.assignee.in_([m for m in me if m] or [""]))
                .order_by(*newest)
                .limit(LISTED)
            )
        ),  # fmt: skip
    }


def latest_run_quality(s, monitors: list[str], lang: str = "en") -> list[dict]:
    """What each monitor's latest finished run found wrong with its data ("metric:check:slice" in its details):
    the data-quality state as the loop last saw it, without querying any source from the home screen. Each
    finding is said in words ("visitors: Data incomplete (region=North)"), its code kept for the title."""
    from metricloop.monitors.models import MonitorRun
    from metricloop.monitors.service import check_words

    if not monitors:
        return []
    last = (
        select(func.max(MonitorRun.id))
        .where(
            MonitorRun.monitor.in_(monitors), MonitorRun.status.in_(("ok", "failed")), MonitorRun.trigger != "backtest"
        )
        .group_by(MonitorRun.monitor)
    )
    out = []
    for r in s.scalars(select(MonitorRun).where(MonitorRun.id.in_(last)).order_by(MonitorRun.monitor)):
        failing = [_said(str(x), lang, check_words) for x in (r.details or {}).get("data_quality", [])]
        if r.status == "failed" or failing:
            out.append({"monitor": r.monitor, "failing": failing, "error": (r.error or "").splitlines()[0][:200]
                        if r.status == "failed" else "", "run": r.id})  # fmt: skip
    return out


def _said(code: str, lang: str, check_words) -> dict:
    """"visitors:completeness:region=North" → {"code": …, "text": "visitors: Data incomplete (region=North)"}."""
    metric, _, rest = code.partition(":")
    check, _, slice_ = rest.partition(":")
    where = "" if slice_ in ("", "*") else (f"（{slice_}）" if lang == "zh" else f" ({slice_})")
    colon = "：" if lang == "zh" else ": "
    return {"code": code, "text": f"{metric}{colon}{check_words(check, lang)}{where}" if check else code}
