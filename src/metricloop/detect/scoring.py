"""Event-level scoring of flagged points against labelled incidents (used by backtest, tests, bench).

- An *alert event* is a run of flagged points of one series (metric × slice × grain); points at
  most `gap` buckets apart belong to the same event.
- A label row (incident × metric × slice × grain, `is_anomaly` true) is *detected* when an alert
  event of exactly that series overlaps [start, end + tolerance).
- An alert event is a *true alert* when it overlaps a true label of the same metric and grain
  whose slice overlaps the alert's (a regional incident explains an alert on the
  total; an app outage explains a dip in region=South, whose app orders it contains). Anything
  else is a false alert (with `related_metrics`, an alert on a ratio during an incident of the
  metric it is computed from also counts as explained), including alerts during labels with `is_anomaly` false
  (planned promotions, a late data feed), which are exactly what must not page anyone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from metricloop.errors import MetricloopError
from metricloop.grains import ByGrain, parse_grain

GRAIN_DELTA = ByGrain({"minute": pd.Timedelta(minutes=1), "hour": pd.Timedelta(hours=1), "day": pd.Timedelta(days=1),
                       "week": pd.Timedelta(days=7), "month": pd.Timedelta(days=31)},
                      derive=lambda g: pd.Timedelta(seconds=parse_grain(g)))  # 5min: 5 minutes


def parse_slice(key: Any) -> dict[str, str]:
    if key is None or (isinstance(key, float) and pd.isna(key)):
        return {}
    key = str(key).strip()
    if key in ("", "*"):
        return {}
    out = {}
    for part in key.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def canonical_slice(key: Any) -> str:
    """Sorted 'k=v,k=v' key; '' for the total."""
    d = parse_slice(key)
    return ",".join(f"{k}={d[k]}" for k in sorted(d))


def related(a: str, b: str) -> bool:
    """The slices overlap: no dimension is set to two different values. region=South overlaps
    channel=app (the South's app orders), and the total overlaps everything; region=South and
    region=East do not."""
    da, db = parse_slice(a), parse_slice(b)
    return all(db[k] == v for k, v in da.items() if k in db)


def read_labels(path: Path | str) -> pd.DataFrame:
    p = Path(path)
    try:
        df = pd.read_csv(p, dtype={"slice": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MetricloopError(f"cannot read labels: {exc}", where=str(p)) from None
    need = {"metric", "slice", "start", "end"}
    if not need <= set(df.columns):
        raise MetricloopError(f"labels need columns {', '.join(sorted(need))}", where=str(p))
    return normalise_labels(df)


def normalise_labels(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["slice"] = df["slice"].map(canonical_slice)
    df["start"] = pd.to_datetime(df["start"])
    df["end"] = pd.to_datetime(df["end"])
    if "grain" not in df:
        df["grain"] = "day"
    if "is_anomaly" not in df:
        df["is_anomaly"] = True
    df["is_anomaly"] = df["is_anomaly"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes", "t"))
    if "incident_id" not in df:
        df["incident_id"] = [f"label-{i}" for i in range(len(df))]
    return df.reset_index(drop=True)


def alert_events(anomalies: pd.DataFrame, *, grain: str = "day", gap: int = 1) -> pd.DataFrame:
    """Group flagged points (columns metric, slice, time[, grain]) into events per series."""
    cols = ["metric", "slice", "grain", "start", "end", "points"]
    if anomalies.empty:
        return pd.DataFrame(columns=cols)
    df = anomalies.copy()
    if "grain" not in df:
        df["grain"] = grain
    df["slice"] = df["slice"].map(canonical_slice)
    df["time"] = pd.to_datetime(df["time"])
    out = []
    for (metric, sl, g), part in df.sort_values("time").groupby(["metric", "slice", "grain"], sort=False):
        step = GRAIN_DELTA.get(g, pd.Timedelta(days=1))
        times = part["time"].drop_duplicates().tolist()
        start = prev = times[0]
        n = 1
        for t in times[1:]:
            if t - prev > step * gap:
                out.append((metric, sl, g, start, prev + step, n))
                start, n = t, 0
            prev = t
            n += 1
        out.append((metric, sl, g, start, prev + step, n))
    return pd.DataFrame(out, columns=cols)


@dataclass
class EventScore:
    precision: float
    recall: float
    f1: float
    true_alerts: int
    false_alerts: int
    labels: int
    detected: int
    series: int
    months: float
    alerts_per_series_per_month: float
    false_alerts_per_series_per_quarter: float
    missed: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    false: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    incidents: int = 0  # labelled incidents (incident_id) with at least one monitored series
    incidents_detected: int = 0  # of those, incidents at least one of whose series raised an alert

    @property
    def incident_recall(self) -> float:
        return self.incidents_detected / self.incidents if self.incidents else 1.0

    @property
    def incident_f1(self) -> float:
        """F1 with recall counted per incident (was the incident raised at all?), precision per alert event."""
        p, r = self.precision, self.incident_recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, pd.DataFrame)}


def score_events(
    events: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    series: list[tuple[str, str, str]] | None = None,
    months: float = 1.0,
    tolerance: int = 1,
    related_metrics: dict[str, set[str]] | None = None,
) -> EventScore:
    """Event-level precision, recall, F1 and alert rates.

    `series` lists the monitored (metric, slice, grain): only labels on them count for recall, and
    their number is the denominator of the alert rates. `related_metrics` maps a metric to the
    metrics it is computed from (conversion_rate → orders, visitors): an alert on it during a labelled
    incident of one of those, on an overlapping slice, is explained by that incident.
    """
    labels = normalise_labels(labels) if len(labels) else labels
    ev = events.copy()
    if len(ev):
        ev["slice"] = ev["slice"].map(canonical_slice)
    monitored = {(m, canonical_slice(s), g) for m, s, g in series} if series is not None else None
    true_labels = labels[labels["is_anomaly"]] if len(labels) else labels
    if monitored is not None and len(true_labels):
        keep = [(r.metric, r.slice, r.grain) in monitored for r in true_labels.itertuples()]
        true_labels = true_labels[keep]

    def overlaps(e: Any, lab: Any) -> bool:
        step = GRAIN_DELTA.get(lab.grain, pd.Timedelta(days=1))
        return e.start < lab.end + step * tolerance and e.end > lab.start

    detected = []
    for lab in true_labels.itertuples():
        hit = any(
            e.metric == lab.metric and e.slice == lab.slice and e.grain == lab.grain and overlaps(e, lab)
            for e in ev.itertuples()
        )
        detected.append(hit)
    true_flags = []
    for e in ev.itertuples():
        explains = {e.metric} | set((related_metrics or {}).get(e.metric, ()))
        ok = any(
            lab.metric in explains and e.grain == lab.grain and related(e.slice, lab.slice) and overlaps(e, lab)
            for lab in labels[labels["is_anomaly"]].itertuples()
        ) if len(labels) else False
        true_flags.append(ok)
    n_true = int(sum(true_flags))
    n_false = len(ev) - n_true
    n_labels = len(true_labels)
    n_det = int(sum(detected))
    precision = n_true / len(ev) if len(ev) else 1.0
    recall = n_det / n_labels if n_labels else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_series = len(monitored) if monitored is not None else max(1, ev[["metric", "slice", "grain"]].drop_duplicates()
                                                                .shape[0] if len(ev) else 1)
    per_month = len(ev) / max(n_series, 1) / max(months, 1e-9)
    false_q = n_false / max(n_series, 1) / max(months / 3.0, 1e-9)
    missed = true_labels[[not d for d in detected]] if n_labels else true_labels
    false = ev[[not f for f in true_flags]] if len(ev) else ev
    ids = true_labels["incident_id"].tolist() if n_labels else []
    incidents = set(ids)
    found = {i for i, d in zip(ids, detected, strict=True) if d}
    return EventScore(precision, recall, f1, n_true, n_false, n_labels, n_det, n_series, months, per_month,
                      false_q, missed, false, len(incidents), len(found))
