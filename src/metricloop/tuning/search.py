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

    def __call__(self, mask: np.ndarray) -> Outcome:
        starts = mask.copy()
        starts[:, 1:] &= ~mask[:, :-1]
        per_row = starts.sum(axis=1)
        total = int(per_row.sum())
        kept = np.zeros(len(self.targets), bool)
        if len(self.targets):
            c = np.zeros((mask.shape[0], mask.shape[1] + 1), np.int32)
            np.cumsum(mask, axis=1, out=c[:, 1:])
            r = self.rows[self.one]
            kept[self.one] = c[r, self.b[self.one] + 1] - c[r, self.a[self.one]] > 0
            if (~self.one).any():
                col = np.zeros(mask.shape[1] + 1, np.int64)
                np.cumsum(mask.any(axis=0), out=col[1:])
                kept[~self.one] = col[self.b[~self.one] + 1] - col[self.a[~self.one]] > 0
        return Outcome(total, total / self.n / self.months, kept, per_row)

    def positives(self, o: Outcome) -> int:
        return int((o.kept & (self.kind != DROP)).sum())

    def drops_firing(self, o: Outcome) -> int:
        return int((o.kept & (self.kind == DROP)).sum())


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
    """The grid over stored scores, and the best setting by: every positive kept, then within the budget,
    then the fewest labelled false alarms, then the smallest change."""

    variants: list[Variant]
    base: Setting
    judge: Judge
    budget: float
    good_direction: str | None
    evaluated: int = 0

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

    def key(self, s: Setting, o: Outcome) -> tuple:
        over = max(0.0, o.per_series_month - self.budget)
        return (-self.judge.positives(o), round(over, 4), self.judge.drops_firing(o),
                round(distance(s, self.base, self.variants), 4), o.alerts)

    def run(self) -> tuple[Choice, Choice | None]:
        """(the proposal, the best setting within the budget when the proposal is over it).

        Coarse to fine: whole sensitivities first, then the half steps beside the best ones found."""
        best: list = [None, None]  # the proposal; the best within the budget

        def visit(grid: dict[str, list]) -> None:
            for setting, mask in self.masks(grid):
                self.evaluated += 1
                o = self.judge(mask)
                k = self.key(setting, o)
                if best[0] is None or k < best[0][0]:
                    best[0] = (k, setting, o, mask)
                if o.per_series_month <= self.budget:
                    wk = (k[0], k[2], k[3], k[4])
                    if best[1] is None or wk < best[1][0]:
                        best[1] = (wk, setting, o, mask)

        grid = self.grid()
        fine = grid["sensitivity"]
        coarse = [x for x in fine if float(x).is_integer() or x == self.base.sensitivity]
        visit({**grid, "sensitivity": coarse})
        for b in [x for x in best if x is not None]:
            s = b[1]
            near = [x for x in fine if x not in coarse and abs(x - s.sensitivity) <= 0.5]
            if near:
                visit({**grid, "variant": [s.variant], "sensitivity": near})
        top, within = best
        assert top is not None
        choice = Choice(top[1], top[2], top[3])
        alt = None
        if top[2].per_series_month > self.budget and within is not None:
            alt = Choice(within[1], within[2], within[3])
        return choice, alt

    def overrides(self, choice: Choice, names: list[str]) -> Choice:
        """Per-slice settings for series noisier than the rest: a row over three times the budget, or still
        firing on labelled false alarms, gets its own sensitivity, minimum change and duration when they keep
        its positives and do better on it. Same scoring variant, direction and volume floor as the global
        choice (overrides change alert knobs only)."""
        o = choice.outcome
        per_row_month = o.alerts_per_row / self.judge.months
        rows_with_drops = {t.row for t, k in zip(self.judge.targets, o.kept, strict=True)
                           if t.kind == DROP and k and t.row >= 0}
        noisy = [i for i in range(len(names)) if per_row_month[i] > 3 * self.budget or i in rows_with_drops]
        noisy = sorted(noisy, key=lambda i: -o.alerts_per_row[i])[:MAX_OVERRIDES]
        if not noisy:
            return choice
        picked: dict[int, tuple[Setting, np.ndarray, tuple]] = {}
        sub = {i: [j for j, t in enumerate(self.judge.targets) if t.row == i] for i in noisy}
        kinds = self.judge.kind
        c = choice.setting
        grid = {**self.grid(), "variant": [c.variant], "direction": [c.direction], "min_volume": [c.min_volume]}
        for setting, mask in self.masks(grid):
            for i in noisy:
                row = mask[i:i + 1]
                starts = int((row[0] & ~np.concatenate([[False], row[0, :-1]])).sum())
                ts = sub[i]
                pos = drops = 0
                for j in ts:
                    t = self.judge.targets[j]
                    hit = bool(row[0, t.a:t.b + 1].any())
                    if kinds[j] == DROP:
                        drops += hit
                    else:
                        pos += hit
                over = max(0.0, starts / self.judge.months - self.budget)
                k = (-pos, round(over, 4), drops, round(distance(setting, choice.setting, self.variants), 4), starts)
                if i not in picked or k < picked[i][2]:
                    picked[i] = (setting, row.copy(), k)
        mask = choice.mask.copy()
        chosen: dict[int, tuple[Setting, int]] = {}
        for i, (setting, row, _k) in picked.items():
            if setting == choice.setting:
                continue
            trial = mask.copy()
            trial[i] = row[0]
            trial_o = self.judge(trial)
            if self.judge.positives(trial_o) < self.judge.positives(choice.outcome):
                continue  # it would lose a positive counted over every series ("*" labels)
            mask = trial
            chosen[i] = (setting, int(o.alerts_per_row[i]))
        if not chosen:
            return choice
        return replace(choice, mask=mask, outcome=self.judge(mask), overrides=chosen)
