"""Tune a monitor: backtest its history with its feedback as labels, search the knobs, suggest, apply.

A suggestion is a row (`TuningSuggestion`) holding the monitor version it was computed from. Applying it writes a
new monitor version through the definitions service (so `metricloop rollback` undoes it); applying one computed
from a version someone has since edited is refused, with the diff of what they changed.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from metricloop.definitions.durations import parse_duration
from metricloop.errors import MetricloopError, NotFound
from metricloop.grains import ByGrain
from metricloop.monitors.schemas import CalendarRef, MonitorSpec, SliceOverride
from metricloop.tuning.models import TuningSuggestion
from metricloop.tuning.search import (
    CATCH,
    CATCH_PRICE,
    DROP,
    KEEP,
    Choice,
    Judge,
    Search,
    Setting,
    Variant,
    targets_from_labels,
)

DEFAULT_BUDGET = 2.0  # alerts per series per month
# how much history a tuning backtests (the bar: two years of days)
TUNE_HISTORY = ByGrain({"minute": "14d", "hour": "120d", "day": "730d", "week": "1460d", "month": "2920d"})
POOR_PRECISION = 0.8  # the weekly job suggests for monitors whose labelled precision is below this
MIN_LABELS = 3  # ... with at least this many labels to judge by
WEEK = timedelta(days=7)
LISTED = 100  # alerts listed as appearing / disappearing


class TuningConflict(MetricloopError):
    status_code = 409


def parse_budget(text: str | float | None, where: str = "--budget") -> float:
    """'2/series/month', '2' or 2.0 → 2.0 alerts per series per month."""
    if text is None:
        return DEFAULT_BUDGET
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = str(text).strip().lower().replace(" ", "")
        number = raw.split("/", 1)[0]
        unit = raw[len(number):]
        if unit not in ("", "/series/month", "/month/series"):
            raise MetricloopError(f"'{text}' is not a budget: give alerts per series per month, e.g. 2/series/month "
                                  "or 0.5", where=where)
        try:
            value = float(number)
        except ValueError:
            raise MetricloopError(f"'{text}' is not a budget: give alerts per series per month, e.g. "
                                  "2/series/month", where=where) from None
    if not np.isfinite(value) or value <= 0:
        raise MetricloopError(f"the budget must be a number of alerts above 0 (got {text})", where=where)
    return value


# ------------------------------------------------------------------ data and labels


@dataclass
class History:
    names: list[str]
    times: pd.DatetimeIndex
    values: np.ndarray
    numerator: np.ndarray | None
    denominator: np.ndarray | None
    grain: str
    months: float


def load_history(ws, monitor: MonitorSpec, *, catalog=None, at: datetime | None = None,
                 history: str | None = None) -> History:
    """The monitor's series as its runs see them (same slicing), over the tuning history, complete buckets only."""
    from metricloop.detect.backtest import months_between
    from metricloop.metrics.slices import explode
    from metricloop.monitors.service import local_now, window_for

    catalog = catalog or ws.catalog()
    metric = catalog.metric(monitor.metric)
    grain = monitor.grain or metric.grain
    win = window_for(monitor, metric, grain, local_now(metric.timezone, at), None)
    span = parse_duration(history or TUNE_HISTORY[grain])
    sl = monitor.slicing
    df = explode(ws, metric.name, dims=sl.dimensions, combos=sl.combos, total=sl.total, top_n=sl.top_n,
                 min_volume=sl.min_volume, start=win.until - span, end=win.until, grain=grain, catalog=catalog)
    if df.empty:
        raise MetricloopError(f"monitor {monitor.name} has no data to backtest over the last {history or span}",
                              where=f"monitor {monitor.name}")
    wide = df.pivot_table(index="slice", columns="time", values="value", aggfunc="first", dropna=False)
    names, times = list(wide.index), pd.DatetimeIndex(wide.columns)
    num = den = None
    if metric.is_ratio:
        num, den = (df.pivot_table(index="slice", columns="time", values=c, aggfunc="first", dropna=False)
                    .reindex(index=names, columns=times).to_numpy(float) for c in ("numerator", "denominator"))
    return History(names, times, wide.to_numpy(float), num, den, grain, months_between(times))


def feedback_labels(session, monitor: str) -> list[Any]:
    """The monitor's effective feedback labels (the feedback contract)."""
    from metricloop.feedback.service import labels_for_monitor

    return list(labels_for_monitor(session, monitor, effective=True))


# ------------------------------------------------------------------ the search


def _calendar_options(monitor: MonitorSpec) -> list[tuple[str, dict | None]]:
    """The monitor's calendar use, and the one other use most likely to remove holiday and event alerts."""
    c = monitor.calendar
    out: list[tuple[str, dict | None]] = [("current", None)]
    base = c.model_dump(mode="json")
    if c.events and c.behaviour != "suppress":
        out.append(("events suppress alerts", {**base, "behaviour": "suppress"}))
    elif c.china_holidays is False:
        out.append(("China holidays learned", {**base, "china_holidays": "learn"}))
    elif c.china_holidays == "learn":
        out.append(("China holidays for every series", {**base, "china_holidays": True}))
    return out


def _detector_options(monitor: MonitorSpec, detectors: list[str] | None) -> list[str]:
    current = str(monitor.detector.get("detector", "auto"))
    if detectors:
        return list(dict.fromkeys([current, *detectors]))
    return [current] if current in ("auto", "threshold", "change") else [current, "auto"]


def score_variants(ws, monitor: MonitorSpec, hist: History, *, catalog, detectors: list[str] | None = None,
                   calendars: bool = True, history_from: dict | None = None) -> list[Variant]:
    """Score the history once per detector × calendar use (the alert knobs do not change scores). `history_from`:
    the series re-baselined by `new_normal` feedback, scored from their new level on as runs score them."""
    from metricloop.detect import detector_from_dict
    from metricloop.monitors.service import build_calendar

    metric = catalog.metric(monitor.metric)
    out = []
    current = dict(monitor.detector)
    for name in _detector_options(monitor, detectors):
        spec = current if name == current.get("detector", "auto") else {
            "detector": name, **{k: v for k, v in current.items() if k in _SHARED_KNOBS}}
        for label, cal in _calendar_options(monitor) if calendars else [("current", None)]:
            m = monitor if cal is None else monitor.model_copy(update={"calendar": CalendarRef.model_validate(cal)})
            det = detector_from_dict(spec)
            scores = det.score(hist.values, hist.times, calendar=build_calendar(ws, m), numerator=hist.numerator,
                               denominator=hist.denominator, names=hist.names, grain=hist.grain,
                               ratio_scale=metric.ratio.scale if metric.ratio is not None else None,
                               history_from=history_from or None)
            out.append(Variant(name, label, det.config, scores, cal))
    return out


_SHARED_KNOBS = ("sensitivity", "direction", "min_abs_change", "min_rel_change", "min_duration", "min_volume",
                 "sustained", "warmup", "kind")


def base_setting(config) -> Setting:
    return Setting(0, float(config.sensitivity), config.direction, float(config.min_rel_change),
                   float(config.min_abs_change), config.min_volume, config.min_duration)


@dataclass
class Tuning:
    """What `tune` found: before and after, what changes, which alerts move, the trade-off if any."""

    monitor: str
    metric: str
    grain: str
    series: int
    months: float
    budget: float
    labels: dict[str, int]
    before: dict[str, Any]
    after: dict[str, Any]
    changes: list[dict[str, Any]]
    overrides: list[dict[str, Any]]
    appear: list[dict[str, Any]]
    disappear: list[dict[str, Any]]
    tradeoff: dict[str, str]  # {"zh": …, "en": …}; empty when the proposal meets every aim
    base_version: int
    base_spec: dict
    proposed_spec: dict
    evaluated: int = 0
    seconds: float = 0.0
    notes: list[dict[str, str]] = field(default_factory=list)

    @property
    def no_feedback(self) -> bool:
        return not any(self.labels.values())

    @property
    def changed(self) -> bool:
        return self.proposed_spec != self.base_spec

    def as_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor, "metric": self.metric, "grain": self.grain, "series": self.series,
            "months": round(self.months, 2), "budget": self.budget, "labels": self.labels,
            "no_feedback": self.no_feedback, "changed": self.changed, "before": self.before, "after": self.after,
            "changes": self.changes, "overrides": self.overrides, "appear": self.appear,
            "disappear": self.disappear, "tradeoff": self.tradeoff, "notes": self.notes,
            "base_version": self.base_version, "proposed_spec": self.proposed_spec,
            "evaluated": self.evaluated, "seconds": round(self.seconds, 2),
        }


def _summary(judge: Judge, o, months: float, n: int) -> dict[str, Any]:
    kinds = [t.kind for t in judge.targets]

    def count(kind: str, hit: bool) -> int:
        return int(sum(1 for k, t in zip(o.kept, kinds, strict=True) if t == kind and bool(k) == hit))

    return {
        "alerts": o.alerts,
        "alerts_per_month": round(o.alerts / max(months, 1e-9), 2),
        "alerts_per_series_per_month": round(o.per_series_month, 3),
        "confirmed_kept": count(KEEP, True), "confirmed": kinds.count(KEEP),
        "false_alarms_removed": count(DROP, False), "false_alarms": kinds.count(DROP),
        "missed_caught": count(CATCH, True), "missed": kinds.count(CATCH),
    }


def _events(mask: np.ndarray, names: list[str], times: pd.DatetimeIndex) -> set[tuple[int, int, int]]:
    """(row, first column, last column) of each alert: a run of flagged buckets."""
    out = set()
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return out
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    new = np.ones(len(rows), bool)
    new[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1] + 1)
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:] - 1, len(rows) - 1]
    for s, e in zip(starts, ends, strict=True):
        out.add((int(rows[s]), int(cols[s]), int(cols[e])))
    return out


def _moved(before: np.ndarray, after: np.ndarray, names, times, targets) -> tuple[list[dict], list[dict]]:
    """Alerts of one mask with no overlapping alert of the other on the same series, each with its label."""

    def label_of(row: int, a: int, b: int) -> str | None:
        for t in targets:
            if (t.row == row or t.row == -1) and t.a <= b and a <= t.b:
                return t.label
        return None

    def only(x: np.ndarray, y: np.ndarray) -> list[dict]:
        out = []
        for row, a, b in sorted(_events(x, names, times), key=lambda e: (e[1], e[0])):
            if y[row, a:b + 1].any():
                continue
            out.append({"slice": names[row], "start": times[a].isoformat(), "end": times[b].isoformat(),
                        "buckets": b - a + 1, "label": label_of(row, a, b)})
        return out

    return only(before, after), only(after, before)


def _knob_changes(base: Setting, new: Setting, variants: list[Variant]) -> list[dict[str, Any]]:
    out = []
    for k, v in new.knobs().items():
        old = base.knobs()[k]
        if v != old:
            out.append({"knob": k, "before": old, "after": v})
    if new.variant != base.variant:
        b, n = variants[base.variant], variants[new.variant]
        if b.detector != n.detector:
            out.append({"knob": "detector", "before": b.detector, "after": n.detector})
        if b.calendar != n.calendar:
            out.append({"knob": "calendar", "before": b.calendar, "after": n.calendar})
    return out


def _proposed_spec(monitor: MonitorSpec, base: Setting, choice: Choice, variants: list[Variant],
                   names: list[str], months: float) -> tuple[dict, list[dict]]:
    spec = copy.deepcopy(monitor.normalized())
    det = dict(monitor.detector)
    var = variants[choice.setting.variant]
    det["detector"] = var.detector
    defaults = {"min_rel_change": 0.0, "min_abs_change": 0.0}
    for k, v in choice.setting.knobs().items():
        if v == base.knobs()[k] and var.detector == variants[base.variant].detector:
            continue
        if v is None or defaults.get(k) == v:
            det.pop(k, None)
        else:
            det[k] = v
    spec["detector"] = det
    if var.calendar_spec is not None:
        spec["calendar"] = var.calendar_spec
    from metricloop.detect.scoring import canonical_slice

    mine = {canonical_slice(names[i]) for i in choice.overrides}
    kept = [o for o in monitor.overrides if canonical_slice(o.slice) not in mine]
    added = []
    for i, (s, alerts) in choice.overrides.items():
        knobs = {k: v for k, v in s.knobs().items() if v != choice.setting.knobs()[k]}
        if i in choice.catches:
            reason = ("a missed range only a dear setting of the whole monitor catches: this slice alone gets it "
                      f"({alerts} alerts in {months:.0f} months with the monitor's own knobs)")
        else:
            reason = f"noisier than the rest: {alerts} alerts in {months:.0f} months with the monitor's own knobs"
        added.append(SliceOverride(slice=names[i], **knobs, reason=reason))
    overrides = [o.normalized() for o in [*kept, *added]]
    if overrides:
        spec["overrides"] = overrides
    else:
        spec.pop("overrides", None)
    return MonitorSpec.model_validate(spec).normalized(), [o.normalized() for o in added]


def _tradeoff(judge: Judge, choice: Choice, alt: Choice | None, budget: float) -> dict[str, str]:
    o = choice.outcome
    priced = {j: v for j, v in choice.priced.items() if not o.kept[j]}
    lost = [t for j, (t, k) in enumerate(zip(judge.targets, o.kept, strict=True))
            if t.kind != DROP and not k and j not in priced]
    parts_en, parts_zh = [], []
    for j, (s, cost) in list(priced.items())[:5]:
        t = judge.targets[j]
        knobs = ", ".join(f"{k} {v}" for k, v in s.knobs().items() if v != choice.setting.knobs()[k])
        knobs = knobs or "another detector or calendar"
        parts_en.append(f"missed {t.slice} {t.start:%Y-%m-%d} is caught only by {knobs} for the whole monitor, "
                        f"which adds {cost} alerts over the history (more than {CATCH_PRICE} for one range) and no "
                        "setting of that slice alone catches it as cheaply: left as is")
        parts_zh.append(f"漏报 {t.slice} {t.start:%Y-%m-%d} 只有整个监控改为 {knobs} 才能补上，回测期内会多出 "
                        f"{cost} 条告警（一条漏报至多值 {CATCH_PRICE} 条），单独调整该切片也无法以同等代价补上："
                        "保持不变")
    if lost:
        what = ", ".join(f"{t.label} {t.slice} {t.start:%Y-%m-%d}" for t in lost[:5])
        parts_en.append(f"no setting keeps every confirmed alert and catches every missed range: {len(lost)} stay "
                        f"lost ({what})")
        parts_zh.append(f"没有任何设置能保留全部已确认告警并补上全部漏报：仍有 {len(lost)} 条无法覆盖（{what}）")
    if o.per_series_month > budget:
        parts_en.append(f"keeping them takes {o.per_series_month:.2f} alerts per series per month, over the budget "
                        f"of {budget:g}")
        parts_zh.append(f"保留它们需要每序列每月 {o.per_series_month:.2f} 条告警，超出预算 {budget:g}")
        if alt is not None:
            a = alt.outcome
            gone = [t for t, k in zip(judge.targets, a.kept, strict=True) if t.kind != DROP and not k]
            parts_en.append(f"within the budget ({a.per_series_month:.2f}/series/month) the best setting loses "
                            f"{len(gone)} of them: " + ", ".join(f"{t.label} {t.slice} {t.start:%Y-%m-%d}"
                                                                 for t in gone[:5]))
            parts_zh.append(f"在预算内（每序列每月 {a.per_series_month:.2f}）最好的设置会丢掉其中 {len(gone)} 条")
        else:
            parts_en.append("no setting of the knobs searched stays within the budget")
            parts_zh.append("所搜索的设置中没有能控制在预算内的")
    if not parts_en:
        return {}
    return {"en": "; ".join(parts_en), "zh": "；".join(parts_zh)}


def compute(ws, name: str, *, budget: float | str | None = None, at: datetime | None = None,
            labels: list[Any] | None = None, detectors: list[str] | None = None, history: str | None = None,
            calendars: bool = True, overrides: bool = True) -> Tuning:
    """Backtest monitor `name` with its feedback and search its knobs. Writes nothing."""
    from metricloop.monitors.overrides import row_mask

    started = time.perf_counter()
    budget = parse_budget(budget)
    catalog = ws.catalog()
    monitor: MonitorSpec = catalog.get("monitor", name)
    metric = catalog.metric(monitor.metric)
    with ws.db.session() as s:
        from metricloop.monitors.service import _version

        version = _version(s, name)
        if labels is None:
            labels = feedback_labels(s, name)
    hist = load_history(ws, monitor, catalog=catalog, at=at, history=history)
    with ws.db.session() as s:
        from metricloop.feedback.rebaseline import history_cuts

        cuts = history_cuts(s, name, hist.names)
    targets = targets_from_labels(labels, hist.names, hist.times)
    judge = Judge(targets, len(hist.names), hist.months)
    variants = score_variants(ws, monitor, hist, catalog=catalog, detectors=detectors, calendars=calendars,
                              history_from=cuts)
    base = base_setting(variants[0].config)
    search = Search(variants, base, judge, budget, metric.good_direction)
    choice, alt = search.run()
    if overrides:
        choice = search.overrides(choice, hist.names)
    v0 = variants[0]
    before_mask = row_mask(v0.scores, v0.config, monitor.overrides, hist.names, search.mask_of(base),
                           good_direction=metric.good_direction)
    before = judge(before_mask)
    after_mask = choice.mask
    if monitor.overrides and not choice.overrides:
        var = variants[choice.setting.variant]
        after_mask = row_mask(var.scores, var.config.model_copy(update=choice.setting.knobs()), monitor.overrides,
                              hist.names, after_mask, good_direction=metric.good_direction)
    after = judge(after_mask)
    # the proposal must not be worse than what runs now by the same ranking (ties keep the monitor as it is)
    if search.key(choice.setting, after, before)[:3] >= search.key(base, before, before)[:3] and not choice.overrides:
        choice = replace(choice, setting=base, outcome=before, mask=before_mask)
        after_mask, after = before_mask, before
    proposed, added = _proposed_spec(monitor, base, choice, variants, hist.names, hist.months)
    disappear, appear = _moved(before_mask, after_mask, hist.names, hist.times, targets)
    counts = {k: 0 for k in ("confirmed", "false_alarm", "expected", "missed", "new_normal")}
    for lab in labels:
        counts[lab.label] = counts.get(lab.label, 0) + 1
    tuning = Tuning(
        monitor=name, metric=metric.name, grain=hist.grain, series=len(hist.names), months=hist.months,
        budget=budget, labels=counts,
        before=_summary(judge, before, hist.months, len(hist.names)),
        after=_summary(judge, after, hist.months, len(hist.names)),
        changes=_knob_changes(base, choice.setting, variants), overrides=added,
        appear=appear[:LISTED], disappear=disappear[:LISTED],
        tradeoff=_tradeoff(judge, choice, alt, budget), base_version=version,
        base_spec=monitor.normalized(), proposed_spec=proposed, evaluated=search.evaluated,
        seconds=time.perf_counter() - started,
    )
    if tuning.no_feedback:
        tuning.notes.append({"en": f"monitor {name} has no feedback yet: tuned to the alert budget alone "
                                   f"({budget:g} per series per month)",
                             "zh": f"监控 {name} 还没有任何反馈：仅按告警预算（每序列每月 {budget:g} 条）调优"})
    elif len(targets) < sum(counts[k] for k in ("confirmed", "false_alarm", "expected", "missed")):
        tuning.notes.append({"en": "some labels fall outside the backtested history or on series the monitor no "
                                   "longer watches; they were left out",
                             "zh": "部分标注不在回测范围内或所在序列已不再监控，已忽略"})
    if not tuning.changed:
        tuning.notes.append({"en": "the current setting is already the best found: nothing to change",
                             "zh": "当前设置已是找到的最佳设置：无需修改"})
    return tuning


# ------------------------------------------------------------------ suggestions as rows


def suggest(ws, name: str, *, budget: float | str | None = None, actor: str = "metricloop",
            trigger: str = "manual", now: datetime | None = None, **kwargs: Any) -> tuple[TuningSuggestion, Tuning]:
    """Compute and store a suggestion; it replaces the monitor's open one. Unchanged settings are stored as
    `unchanged` (nothing to approve)."""
    tuning = compute(ws, name, budget=budget, **kwargs)
    now = now or datetime.now(UTC)
    with ws.db.session() as s:
        for old in s.scalars(select(TuningSuggestion).where(TuningSuggestion.monitor == name,
                                                            TuningSuggestion.status == "open")):
            old.status, old.decided_at, old.decided_by = "superseded", now, actor
        row = TuningSuggestion(
            monitor=name, status="open" if tuning.changed else "unchanged", trigger=trigger,
            base_version=tuning.base_version, base_spec=tuning.base_spec, proposed_spec=tuning.proposed_spec,
            budget=tuning.budget, summary=tuning.as_dict(), tradeoff=tuning.tradeoff.get("en", ""),
            created_by=actor, created_at=now, note="",
        )
        s.add(row)
        s.flush()
        s.expunge(row)
    return row, tuning


def get_suggestion(s, name: str, suggestion_id: int | None = None) -> TuningSuggestion:
    q = select(TuningSuggestion).where(TuningSuggestion.monitor == name)
    if suggestion_id is not None:
        row = s.scalar(q.where(TuningSuggestion.id == suggestion_id))
        if row is None:
            raise NotFound(f"monitor {name} has no tuning suggestion #{suggestion_id}", where="suggestion")
        return row
    row = s.scalar(q.where(TuningSuggestion.status == "open").order_by(TuningSuggestion.id.desc()).limit(1))
    if row is None:
        row = s.scalar(q.order_by(TuningSuggestion.id.desc()).limit(1))
    if row is None:
        raise NotFound(f"monitor {name} has no tuning suggestion yet: compute one with `metricloop tune {name}` "
                       "or POST /api/monitors/{name}/tuning", where="monitor")
    return row


def _open(s, name: str, suggestion_id: int | None, verb: str) -> TuningSuggestion:
    row = get_suggestion(s, name, suggestion_id)
    if row.status != "open":
        raise TuningConflict(f"suggestion #{row.id} of monitor {name} is {row.status}; only an open suggestion "
                             f"can be {verb}", where="suggestion")
    return row


def apply_suggestion(ws, name: str, *, actor: str, suggestion_id: int | None = None,
                     now: datetime | None = None) -> TuningSuggestion:
    """Make the suggestion's setting the monitor's new version (undone by rollback). Refused when the monitor
    changed since the suggestion was computed (the diff says how), or the suggestion is not open."""
    from metricloop.db.models import Definition, DefinitionVersion
    from metricloop.definitions import service as definitions
    from metricloop.metrics.validate import reference_check
    from metricloop.monitors.validate import loop_check

    now = now or datetime.now(UTC)
    with ws.db.session() as s:
        row = _open(s, name, suggestion_id, "applied")
        current = s.scalar(select(Definition).where(Definition.kind == "monitor", Definition.name == name))
        if current is None:
            raise NotFound(f"no monitor named '{name}'")
        if current.version != row.base_version:
            diff = definitions.spec_diff(row.base_spec, current.spec, f"monitor/{name}")
            who = current.updated_by or "someone"
            raise TuningConflict(
                f"monitor {name} changed since suggestion #{row.id} was computed from version {row.base_version} "
                f"(now version {current.version}, by {who}); compute a new suggestion. What changed:\n{diff}",
                where="monitor",
            )
        entry = definitions.Entry("monitor", name, MonitorSpec.model_validate(row.proposed_spec))
        result = definitions.apply(s, entries=[entry], author=actor, checks=[reference_check, loop_check])
        version = (result.updated or result.created or [(None, None, current.version)])[0][2]
        written = s.scalar(select(DefinitionVersion).where(DefinitionVersion.kind == "monitor",
                                                           DefinitionVersion.name == name,
                                                           DefinitionVersion.version == version))
        if written is not None and not written.comment:
            written.comment = f"tuning suggestion #{row.id}"
        row.status, row.decided_by, row.decided_at, row.applied_version = "applied", actor, now, version
        s.flush()
        s.expunge(row)
    return row


def reject_suggestion(ws, name: str, *, actor: str, suggestion_id: int | None = None, note: str = "",
                      now: datetime | None = None) -> TuningSuggestion:
    now = now or datetime.now(UTC)
    with ws.db.session() as s:
        row = _open(s, name, suggestion_id, "rejected")
        row.status, row.decided_by, row.decided_at, row.note = "rejected", actor, now, note
        s.flush()
        s.expunge(row)
    return row


def suggestion_dict(row: TuningSuggestion) -> dict[str, Any]:
    return {
        "id": row.id, "monitor": row.monitor, "status": row.status, "trigger": row.trigger,
        "base_version": row.base_version, "budget": row.budget, "tradeoff": row.tradeoff,
        "created_by": row.created_by, "created_at": _iso(row.created_at), "decided_by": row.decided_by,
        "decided_at": _iso(row.decided_at), "applied_version": row.applied_version, "note": row.note,
        "tuning": row.summary,
    }


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


@dataclass(frozen=True)
class OpenSuggestion:
    """An open tuning suggestion, as the weekly review lists it."""

    id: int
    monitor: str
    created_at: datetime  # UTC, aware
    trigger: str  # manual | weekly
    budget: float
    changes: list[dict[str, Any]]  # [{knob, before, after}]
    before: dict[str, Any]  # alerts_per_month, confirmed_kept/confirmed, false_alarms_removed/false_alarms, …
    after: dict[str, Any]
    tradeoff: str  # en; "" when the suggestion meets every aim


def open_suggestions(session) -> list[OpenSuggestion]:
    """Suggestions waiting for a person's approval, oldest first."""
    rows = session.scalars(select(TuningSuggestion).where(TuningSuggestion.status == "open")
                           .order_by(TuningSuggestion.created_at, TuningSuggestion.id))
    out = []
    for r in rows:
        t = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
        summary = r.summary or {}
        out.append(OpenSuggestion(r.id, r.monitor, t, r.trigger, r.budget, summary.get("changes", []),
                                  summary.get("before", {}), summary.get("after", {}), r.tradeoff))
    return out


# ------------------------------------------------------------------ weekly


def precision_of(labels: list[Any]) -> tuple[float | None, int]:
    """confirmed ÷ labelled alerts (confirmed, false alarm, expected), and how many were labelled."""
    from metricloop.feedback.service import JUDGED

    judged = [lab for lab in labels if lab.label in JUDGED]
    if not judged:
        return None, 0
    return sum(lab.label == "confirmed" for lab in judged) / len(judged), len(judged)


def weekly(ws, *, now: datetime | None = None) -> list[TuningSuggestion]:
    """For each enabled monitor whose labelled precision is poor and that has no suggestion from the last 7 days,
    compute one; apply it at once when the monitor says `auto_tune: true`."""
    import logging

    log = logging.getLogger("metricloop.tuning")
    now = now or datetime.now(UTC)
    out = []
    for name, monitor in sorted(ws.catalog().all("monitor").items()):
        if not monitor.enabled:
            continue
        with ws.db.session() as s:
            recent = s.scalar(select(TuningSuggestion.id).where(TuningSuggestion.monitor == name,
                                                                TuningSuggestion.created_at >= now - WEEK).limit(1))
            if recent is not None:
                continue
            labels = feedback_labels(s, name)
        precision, judged = precision_of(labels)
        if precision is None or judged < MIN_LABELS or precision >= POOR_PRECISION:
            continue
        try:
            row, tuning = suggest(ws, name, actor="metricloop weekly tuning", trigger="weekly", now=now,
                                  labels=labels)
            if row.status == "open" and monitor.auto_tune:
                row = apply_suggestion(ws, name, actor="metricloop auto_tune", suggestion_id=row.id, now=now)
            out.append(row)
        except MetricloopError as e:
            log.warning("weekly tuning of monitor %s: %s", name, e)
    return out
