"""Search a monitor's alert knobs against what people said about its alerts.

The detector's scores do not depend on the alert knobs (see `metricloop.detect.conditions`): each scoring
variant (detector × calendar use) is scored once, each sensitivity's out-of-band points are found once, and
direction, minimum change, volume floor and duration are swept over those stored flags. Every grid point is
then judged with cumulative sums, not by grouping alerts in Python.

Targets come from feedback labels:
- keep: a `confirmed` alert or range — some alert must still fire in it;
- catch: a `missed` range — some alert must fire in it;
- drop: a `false_alarm` or `expected` alert or range — ideally nothing fires in it.
`new_normal` is not a target: it re-baselines the series (the feedback service's business).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from metricloop.detect.base import DetectorConfig, Scores
from metricloop.detect.conditions import alert_mask, band_flags, default_direction, standardised, usable_points
from metricloop.detect.scoring import canonical_slice

KEEP, CATCH, DROP = "keep", "catch", "drop"
KIND_OF = {"confirmed": KEEP, "missed": CATCH, "false_alarm": DROP, "expected": DROP}
TOLERANCE = 1  # a label's range counts one bucket past its end (the convention of detect.scoring)
SENSITIVITIES = tuple(np.round(np.arange(0.0, 10.01, 0.5), 2))
REL_CHANGES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
DURATIONS = (None, 2, 3)
MAX_OVERRIDES = 5
# how much evidence a change needs (see Search.key and docs/feedback.md, "The search"):
MIN_EVIDENCE = 2  # labelled false alarms a monitor-wide change must stop firing on ...
MIN_SLICES = 2  # ... on at least this many series; fewer is a per-slice override's business
MARGIN = 0.5  # how far past the labelled false alarms a justified step down the sensitivity scale goes
SENSITIVITY_STEP = 1.0  # a monitor-wide sensitivity step down that one false alarm justifies
CATCH_PRICE = 3  # alerts over the history a newly caught missed range may cost; dearer ones are caught per slice


@dataclass(frozen=True)
class Setting:
    """One point of the grid: a scoring variant and the alert knobs applied to its scores."""

    variant: int  # index into the scoring variants
    sensitivity: float
    direction: str | None
    min_rel_change: float
    min_abs_change: float
    min_volume: float | None
    min_duration: int | None

    def knobs(self) -> dict[str, Any]:
        return {
            "sensitivity": self.sensitivity,
            "direction": self.direction,
            "min_rel_change": self.min_rel_change,
            "min_abs_change": self.min_abs_change,
            "min_volume": self.min_volume,
            "min_duration": self.min_duration,
        }


@dataclass
class Target:
    label_id: int
    label: str
    kind: str
    slice: str
    start: pd.Timestamp
    end: pd.Timestamp
    row: int  # -1: every series
    a: int  # first column, inclusive
    b: int  # last column (with tolerance), inclusive


@dataclass
class Outcome:
    """How one setting does on the history."""

    alerts: int
    per_series_month: float
    kept: np.ndarray  # bool per target: an alert fires in it
    alerts_per_row: np.ndarray
    probed: np.ndarray | None = None  # bool per probe (Judge.probe): an alert still fires in it

    def hits(self, targets: list[Target], kind: str) -> int:
        return int(sum(bool(k) for k, t in zip(self.kept, targets, strict=True) if t.kind == kind))


@dataclass
class Variant:
    """One scoring of the history: a detector with a calendar use."""

    detector: str
    calendar: str  # "current" or a description of the calendar tried
    config: DetectorConfig
    scores: Scores
    calendar_spec: dict | None = None  # the monitor's calendar: section for this variant (None = unchanged)


@dataclass
class Choice:
    setting: Setting
    outcome: Outcome
    mask: np.ndarray
    # row → its own setting, and the row's alerts under the global setting
    overrides: dict[int, tuple[Setting, int]] = field(default_factory=dict)
    # missed ranges left because only an expensive monitor-wide setting catches them: target → (setting, alerts
    # it adds over the history); those a per-slice override caught are not in it
    priced: dict[int, tuple[Setting, int]] = field(default_factory=dict)
    catches: set[int] = field(default_factory=set)  # override rows set to catch a missed range the choice leaves


def targets_from_labels(labels: list[Any], names: list[str], times: pd.DatetimeIndex) -> list[Target]:
    """Feedback labels (the feedback contract's FeedbackLabel) → targets on the series × time grid. Labels on
    series or times the history does not cover are left out."""
    index = {canonical_slice(n): i for i, n in enumerate(names)}
    out = []
    last = len(times) - 1
    for lab in labels:
        kind = KIND_OF.get(lab.label)
        if kind is None:
            continue
        key = str(lab.slice)
        if key == "*" and getattr(lab, "alert_id", None) is None:
            row = -1  # every series
        else:
            row = index.get(canonical_slice(key))
            if row is None:
                continue
        start, end = pd.Timestamp(lab.start), pd.Timestamp(lab.end)
        a = int(times.searchsorted(start, "left"))
        b = int(times.searchsorted(end, "right")) - 1
        if a > last or b < 0 or b < a:
            continue
        if kind != DROP:
            b = min(last, b + TOLERANCE)
        out.append(Target(lab.id, lab.label, kind, key, start, end, row, a, b))
    return out


class Judge:
    """Scores a flag matrix against the targets and the budget, with cumulative sums."""

    def __init__(self, targets: list[Target], n_series: int, months: float) -> None:
        self.targets = targets
        self.n = max(n_series, 1)
        self.months = max(months, 1e-9)
        self.rows = np.array([t.row for t in targets], dtype=np.int64)
        self.a = np.array([t.a for t in targets], dtype=np.int64)
        self.b = np.array([t.b for t in targets], dtype=np.int64)
        self.one = self.rows >= 0
        self.kind = np.array([t.kind for t in targets], dtype=object)
        self.probes = (np.zeros(0, np.int64),) * 3
        self.contested = contested(targets)

    def probe(self, ranges: list[tuple[int, int, int]]) -> None:
        """Also say, for each (row, first, last) range, whether an alert fires in it (Outcome.probed)."""
        self.probes = tuple(np.array([r[k] for r in ranges], dtype=np.int64) for k in range(3))

    def __call__(self, mask: np.ndarray) -> Outcome:
        starts = mask.copy()
        starts[:, 1:] &= ~mask[:, :-1]
        per_row = starts.sum(axis=1)
        total = int(per_row.sum())
        kept = np.zeros(len(self.targets), bool)
        pr, pa, pb = self.probes
        probed = None
        if len(self.targets) or len(pr):
            c = np.zeros((mask.shape[0], mask.shape[1] + 1), np.int32)
            np.cumsum(mask, axis=1, out=c[:, 1:])
            probed = c[pr, pb + 1] - c[pr, pa] > 0
        if len(self.targets):
            r = self.rows[self.one]
            kept[self.one] = c[r, self.b[self.one] + 1] - c[r, self.a[self.one]] > 0
            if (~self.one).any():
                col = np.zeros(mask.shape[1] + 1, np.int64)
                np.cumsum(mask.any(axis=0), out=col[1:])
                kept[~self.one] = col[self.b[~self.one] + 1] - col[self.a[~self.one]] > 0
        return Outcome(total, total / self.n / self.months, kept, per_row, probed)

    def positives(self, o: Outcome) -> int:
        return int((o.kept & (self.kind != DROP)).sum())

    def drops_firing(self, o: Outcome) -> int:
        return int((o.kept & (self.kind == DROP)).sum())


def contested(targets: list[Target]) -> np.ndarray:
    """Per target: a false alarm (or expected) label whose range overlaps a confirmed or missed range on an
    overlapping slice — one slice of an incident called noise while others are called real. Labels that
    contradict each other are no evidence for a change: tuning neither rewards nor penalises silencing it."""
    from metricloop.detect.scoring import related

    out = np.zeros(len(targets), bool)
    positives = [t for t in targets if t.kind != DROP]
    for j, t in enumerate(targets):
        if t.kind == DROP:
            out[j] = any(p.a <= t.b and t.a <= p.b and (p.row == -1 or t.row == -1 or related(p.slice, t.slice))
                         for p in positives)
    return out


def unlabelled_alerts(mask: np.ndarray, judge: Judge) -> list[tuple[int, int, int]]:
    """(row, first, last) of each alert of `mask` that overlaps no label's range."""
    m = mask.copy()
    for t in judge.targets:  # blank the labelled ranges: what is left of an alert touching one is still judged
        if t.row >= 0:
            m[t.row, t.a:t.b + 1] = False
        else:
            m[:, t.a:t.b + 1] = False
    out = []
    starts = m & ~np.concatenate([np.zeros((m.shape[0], 1), bool), m[:, :-1]], axis=1)
    ends = m & ~np.concatenate([m[:, 1:], np.zeros((m.shape[0], 1), bool)], axis=1)
    for (r, a), (_r2, b) in zip(zip(*np.nonzero(starts), strict=True), zip(*np.nonzero(ends), strict=True),
                                strict=True):
        touches = any(t.row in (r, -1) and t.a <= b + 1 and a - 1 <= t.b for t in judge.targets)
        if not touches:
            out.append((int(r), int(a), int(b)))
    return out


def distance(s: Setting, base: Setting, variants: list[Variant]) -> float:
    """How far a setting is from the monitor's own: small changes first, one knob before several."""
    d = abs(s.sensitivity - base.sensitivity) / 2.0
    d += 1.0 if s.direction != base.direction else 0.0
    d += abs(s.min_rel_change - base.min_rel_change) / 0.1 * 0.5
    d += 1.0 if s.min_abs_change != base.min_abs_change else 0.0
    d += 1.0 if s.min_volume != base.min_volume else 0.0
    d += abs((s.min_duration or 1) - (base.min_duration or 1)) * 1.0
    if s.variant != base.variant:
        v, b = variants[s.variant], variants[base.variant]
        d += (1.5 if v.detector != b.detector else 0.0) + (1.0 if v.calendar != b.calendar else 0.0)
    return d


@dataclass
class Search:
    """The grid over stored scores, and the best setting by: every positive kept (a missed range newly caught
    only at its price, CATCH_PRICE), then within the budget, then the fewest labelled false alarms (counted only
    with enough evidence: MIN_EVIDENCE on MIN_SLICES series, or one for a small sensitivity step), then the
    fewest of the current alerts nobody labelled silenced, then the smallest change."""

    variants: list[Variant]
    base: Setting
    judge: Judge
    budget: float
    good_direction: str | None
    evaluated: int = 0
    _records: dict[Setting, Outcome] = field(default_factory=dict, repr=False)  # every setting judged

    def grid(self) -> dict[str, list]:
        v0 = self.variants[0]
        default = default_direction(self.good_direction)
        directions = [self.base.direction, None, "both"]
        if (self.base.direction or default) == "both":
            directions += ["up", "down"]
        # None (the metric's default) and that same direction written out are one option, not two
        directions = [d for d in dict.fromkeys(directions) if not (d == default and d != self.base.direction)]
        return {
            "variant": list(range(len(self.variants))),
            "sensitivity": sorted(set(SENSITIVITIES) | {self.base.sensitivity}),
            "direction": directions,
            "min_rel_change": sorted(set(REL_CHANGES) | {self.base.min_rel_change}),
            "min_volume": list(dict.fromkeys([self.base.min_volume, None, *self._volume_floors(v0.scores)])),
            "min_duration": list(dict.fromkeys([self.base.min_duration, *DURATIONS])),
        }

    @staticmethod
    def _volume_floors(scores: Scores) -> list[float]:
        vol = scores.volume if scores.volume is not None else np.fmax(np.abs(scores.values), np.abs(scores.expected))
        with np.errstate(invalid="ignore"):
            means = np.nanmean(np.where(np.isfinite(vol), vol, np.nan), axis=1)
        means = means[np.isfinite(means)]
        if len(means) < 4:
            return []
        return [float(np.round(np.quantile(means, 0.25), 6))]

    def masks(self, grid: dict[str, list] | None = None):
        """Yield (setting, mask) over the grid; each variant's z, relative change and each sensitivity's
        flags computed once."""
        g = grid or self.grid()
        rest = list(itertools.product(g["direction"], g["min_rel_change"], g["min_volume"], g["min_duration"]))
        for vi in g["variant"]:
            var = self.variants[vi]
            sc = var.scores
            z = standardised(sc)
            with np.errstate(invalid="ignore", divide="ignore"):
                relative = np.abs(sc.values - sc.expected) / np.abs(sc.expected)
            usable = usable_points(sc)
            for s in g["sensitivity"]:
                cfg = var.config.model_copy(update={"sensitivity": float(s)})
                flags = band_flags(sc, cfg, z=z)
                for d, rel, vol, dur in rest:
                    setting = Setting(vi, float(s), d, float(rel), self.base.min_abs_change, vol, dur)
                    knob = cfg.model_copy(update={"direction": d, "min_rel_change": float(rel), "min_volume": vol,
                                                  "min_duration": dur})
                    yield setting, alert_mask(sc, flags, knob, good_direction=self.good_direction, relative=relative,
                                              usable=usable)

    def mask_of(self, setting: Setting) -> np.ndarray:
        var = self.variants[setting.variant]
        cfg = var.config.model_copy(update=setting.knobs())
        flags = band_flags(var.scores, cfg)
        return alert_mask(var.scores, flags, cfg, good_direction=self.good_direction)

    # ---------------------------------------------------------------- how much a change is worth

    def _raw(self, s: Setting) -> Outcome:
        """The setting's band (detector, calendar, sensitivity, direction) with the current setting's minimum
        change, volume floor and duration: what it costs before any knob buys its noise back."""
        raw = replace(s, min_rel_change=self.base.min_rel_change, min_abs_change=self.base.min_abs_change,
                      min_volume=self.base.min_volume, min_duration=self.base.min_duration)
        return self._outcome(raw)

    def _outcome(self, s: Setting) -> Outcome:
        """The setting's outcome, judged once and kept."""
        o = self._records.get(s)
        if o is None:
            o = self._records[s] = self.judge(self.mask_of(s))
        return o

    def _sensitivity_only(self, s: Setting) -> bool:
        """Whether the setting differs from the current one in its sensitivity alone (or not at all)."""
        return s == replace(self.base, sensitivity=s.sensitivity)

    def _ref(self) -> Outcome:
        """The current setting's outcome; its alerts that overlap no label become the judge's probes."""
        o = self._records.get(self.base)
        if o is None:
            mask = self.mask_of(self.base)
            self.judge.probe(unlabelled_alerts(mask, self.judge))
            self._records.clear()  # outcomes judged before the probes were set lack them
            o = self._records[self.base] = self.judge(mask)
        return o

    def catch_cost(self, s: Setting, o: Outcome) -> int:
        """Alerts the setting adds over the whole history, compensating knobs undone (see `_raw`)."""
        return max(o.alerts, self._raw(s).alerts) - self._ref().alerts

    def cheap(self, s: Setting, o: Outcome, caught: int) -> bool:
        """Whether newly caught `missed` ranges are worth moving the whole monitor: the band that catches them
        stays within the budget and costs at most CATCH_PRICE more alerts per range caught."""
        raw = self._raw(s)
        return raw.per_series_month <= self.budget and self.catch_cost(s, o) <= CATCH_PRICE * caught

    def _terms(self, s: Setting, o: Outcome, ref: Outcome) -> tuple[int, int, int]:
        """(positives, false-alarm term, unlabelled alerts silenced) of a monitor-wide setting judged against the
        reference outcome (the current setting's).

        Positives: confirmed alerts, missed ranges the reference catches already, and missed ranges newly
        caught when the setting that catches them is cheap (`cheap`); an expensive catch is left to a
        per-slice override. False-alarm term: minus the labelled false alarms the setting stops (net of those
        it starts), counted only with enough evidence — at least MIN_EVIDENCE of them on at least MIN_SLICES
        series, or a step down the sensitivity alone of at most SENSITIVITY_STEP; without it the setting is no
        better than the current one (fewer labels are a slice's business: the per-slice overrides take them).
        More false alarms firing always counts against a setting."""
        kind = self.judge.kind
        unjudged = int((~o.probed).sum()) if o.probed is not None else 0
        new = (kind == CATCH) & ~ref.kept
        pos = int((o.kept & (kind != DROP) & ~new).sum())
        caught = int((o.kept & new).sum())
        if caught and self.cheap(s, o, caught):
            pos += caught
        drop = (kind == DROP) & ~self.judge.contested
        removed = drop & ref.kept & ~o.kept
        net = int(removed.sum()) - int((drop & o.kept & ~ref.kept).sum())
        if net <= 0:
            return pos, -net, unjudged
        rows = {int(r) for r in self.judge.rows[removed]}
        spread = self.judge.n if -1 in rows else len(rows)
        if net >= MIN_EVIDENCE and spread >= MIN_SLICES:
            return pos, -net, unjudged
        # a small step down the calibrated scale alone silences the least surprising alerts of every series
        # first, not the small changes of one kind of series (a relative floor does: aggregates dilute a
        # slice's incident): one label is enough for it
        if self._sensitivity_only(s) and \
                self.base.sensitivity - SENSITIVITY_STEP <= s.sensitivity < self.base.sensitivity:
            return pos, -net, unjudged
        return pos, 0, unjudged

    def key(self, s: Setting, o: Outcome, ref: Outcome | None = None) -> tuple:
        """Rank of a monitor-wide setting against `ref` (the current setting's outcome by default): the most
        positives, within the budget, the fewest false alarms (with enough evidence), the smallest change."""
        ref = self._ref() if ref is None else ref
        pos, drops, unjudged = self._terms(s, o, ref)
        over = max(0.0, o.per_series_month - self.budget)
        return (-pos, round(over, 4), drops, unjudged, round(distance(s, self.base, self.variants), 4), o.alerts)

    def run(self) -> tuple[Choice, Choice | None]:
        """(the proposal, the best setting within the budget when the proposal is over it).

        Coarse to fine: whole sensitivities first, then the half steps beside the best ones found. Every
        setting's outcome is kept, so that each is judged against the current setting once all are known."""
        self._ref()  # first: it sets the judge's probes
        records = self._records

        def visit(grid: dict[str, list]) -> None:
            for setting, mask in self.masks(grid):
                self.evaluated += 1
                if setting not in records:
                    records[setting] = self.judge(mask)

        def pick() -> tuple[Setting, Setting | None]:
            ref = self._ref()
            top = within = None
            for s, o in list(records.items()):
                k = self.key(s, o, ref)
                if top is None or k < top[0]:
                    top = (k, s)
                if o.per_series_month <= self.budget:
                    wk = (k[0], *k[2:])
                    if within is None or wk < within[0]:
                        within = (wk, s)
            assert top is not None
            return top[1], within[1] if within is not None else None

        grid = self.grid()
        fine = grid["sensitivity"]
        coarse = [x for x in fine if float(x).is_integer() or x == self.base.sensitivity]
        visit({**grid, "sensitivity": coarse})
        for s in dict.fromkeys(x for x in pick() if x is not None):
            near = [x for x in fine if x not in coarse and abs(x - s.sensitivity) <= 0.5]
            if near:
                visit({**grid, "variant": [s.variant], "sensitivity": near})
        top, within = pick()
        top = self._margin(top)
        choice = Choice(top, records[top], self.mask_of(top))
        choice.priced = self._priced(choice)
        alt = None
        if records[top].per_series_month > self.budget and within is not None:
            alt = Choice(within, records[within], self.mask_of(within))
        return choice, alt

    def _margin(self, top: Setting) -> Setting:
        """A step down the sensitivity scale that labelled false alarms justify goes MARGIN past the smallest
        one that silences them, when that keeps every positive and stays as good on the rest: the false alarms
        to come are about as surprising as those seen, not all just above them."""
        if not (self._sensitivity_only(top) and top.sensitivity < self.base.sensitivity):
            return top
        ref = self._ref()
        k = self.key(top, self._records[top], ref)
        if k[2] >= 0:  # not a step the false alarms justified
            return top
        lower = replace(top, sensitivity=max(0.0, top.sensitivity - MARGIN))
        kl = self.key(lower, self._outcome(lower), ref)
        if kl[0] == k[0] and kl[1] <= k[1] and kl[2] <= k[2]:
            return lower
        return top

    def _priced(self, choice: Choice) -> dict[int, tuple[Setting, int]]:
        """Missed ranges the choice leaves that some monitor-wide setting catches, but only an expensive one:
        target index → (the cheapest such setting, the alerts it adds over the history)."""
        kind, ref = self.judge.kind, self._ref()
        out: dict[int, tuple[Setting, int]] = {}
        left = np.flatnonzero((kind == CATCH) & ~choice.outcome.kept & ~ref.kept)
        for s, o in self._records.items():
            for j in left:
                if o.kept[j]:
                    cost = self.catch_cost(s, o)
                    if j not in out or cost < out[j][1]:
                        out[int(j)] = (s, cost)
        return out

    def overrides(self, choice: Choice, names: list[str]) -> Choice:
        """Per-slice settings: a row over three times the budget, or still firing on labelled false alarms (one
        is enough: it is that slice's own setting), or holding a missed range only an expensive monitor-wide
        setting catches, gets its own sensitivity, minimum change and duration when they keep its positives and
        do better on it — a newly caught missed range at most CATCH_PRICE more alerts on the slice. Same scoring
        variant, direction and volume floor as the global choice (overrides change alert knobs only)."""
        o = choice.outcome
        targets, kinds = self.judge.targets, self.judge.kind
        per_row_month = o.alerts_per_row / self.judge.months
        rows_with_drops = {t.row for t, k, c in zip(targets, o.kept, self.judge.contested, strict=True)
                           if t.kind == DROP and k and t.row >= 0 and not c}
        priced_rows = list(dict.fromkeys(targets[j].row for j in choice.priced if targets[j].row >= 0))
        noisy = [i for i in range(len(names)) if per_row_month[i] > 3 * self.budget or i in rows_with_drops]
        noisy = sorted(noisy, key=lambda i: -o.alerts_per_row[i])
        rows = list(dict.fromkeys([*priced_rows, *noisy]))[:MAX_OVERRIDES]
        if not rows:
            return choice
        sub = {i: [j for j, t in enumerate(targets) if t.row == i] for i in rows}
        c = choice.setting
        grid = {**self.grid(), "variant": [c.variant], "direction": [c.direction], "min_volume": [c.min_volume]}
        # per row and setting: (positives kept, new catches, drops firing, alerts); new = not caught by the choice
        stats: dict[int, dict[Setting, tuple[int, int, int, int, int]]] = {i: {} for i in rows}
        unlabelled = unlabelled_alerts(choice.mask, self.judge)
        own = {i: [(a, b) for r, a, b in unlabelled if r == i] for i in rows}
        for setting, mask in self.masks(grid):
            for i in rows:
                row = mask[i]
                starts = int((row & ~np.concatenate([[False], row[:-1]])).sum())
                silenced = sum(not row[a:b + 1].any() for a, b in own[i])
                pos = new = drops = 0
                for j in sub[i]:
                    t = targets[j]
                    hit = bool(row[t.a:t.b + 1].any())
                    if kinds[j] == DROP:
                        drops += hit and not self.judge.contested[j]
                    elif kinds[j] == CATCH and not o.kept[j]:
                        new += hit
                    else:
                        pos += hit
                stats[i][setting] = (pos, new, drops, starts, silenced)
        picked: dict[int, Setting] = {}
        for i in rows:
            ref_starts = int(o.alerts_per_row[i])
            best = None
            for setting, (pos, new, drops, starts, silenced) in stats[i].items():
                raw = replace(setting, min_rel_change=c.min_rel_change, min_duration=c.min_duration)
                cost = max(starts, stats[i].get(raw, (0, 0, 0, starts, 0))[3]) - ref_starts
                if new and cost <= CATCH_PRICE * new:
                    pos += new
                over = max(0.0, starts / self.judge.months - self.budget)
                k = (-pos, round(over, 4), drops, silenced, round(distance(setting, c, self.variants), 4), starts)
                if best is None or k < best[0]:
                    best = (k, setting)
            if best is not None and best[1] != c:
                picked[i] = best[1]
        mask = choice.mask.copy()
        chosen: dict[int, tuple[Setting, int]] = {}
        for i, setting in picked.items():
            trial = mask.copy()
            trial[i] = self.mask_of(setting)[i]
            trial_o = self.judge(trial)
            if self.judge.positives(trial_o) < self.judge.positives(choice.outcome):
                continue  # it would lose a positive counted over every series ("*" labels)
            mask = trial
            chosen[i] = (setting, int(o.alerts_per_row[i]))
        if not chosen:
            return choice
        out = self.judge(mask)
        priced = {j: v for j, v in choice.priced.items() if not out.kept[j]}
        catches = {targets[j].row for j in choice.priced if out.kept[j] and targets[j].row in chosen}
        return replace(choice, mask=mask, outcome=out, overrides=chosen, priced=priced, catches=catches)
