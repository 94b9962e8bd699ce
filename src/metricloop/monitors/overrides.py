"""Per-slice alert knobs: one scoring of every series, then each overridden slice judged with its own knobs."""

from __future__ import annotations

from typing import Any

import numpy as np

from metricloop.detect.conditions import Detection, apply_conditions
from metricloop.detect.scoring import canonical_slice


def detect_with_overrides(detector, overrides, values, times, *, names: list[str], good_direction=None,
                          **kwargs: Any) -> Detection:
    """`detector.detect(...)`, with the rows of each slice in `overrides` (SliceOverride) judged by the monitor's
    knobs updated with the override's. Scores are computed once; only the conditions run again."""
    scores = detector.score(values, times, names=names, **kwargs)
    det = apply_conditions(scores, detector.config, good_direction=good_direction)
    if not overrides:
        return det
    index = {canonical_slice(n): i for i, n in enumerate(names)}
    for o in overrides:
        i = index.get(canonical_slice(o.slice))
        if i is None:  # a slice not in this run's data (gone, or below the volume floor): nothing to judge
            continue
        own = apply_conditions(scores, detector.config.model_copy(update=o.knobs()), good_direction=good_direction)
        det.is_anomaly[i] = own.is_anomaly[i]
        det.direction[i] = own.direction[i]
        det.lower[i], det.upper[i] = own.lower[i], own.upper[i]
        if det.sustained is not None and own.sustained is not None:
            det.sustained[i] = own.sustained[i]
    return det


def row_mask(scores, config, overrides, names: list[str], base: np.ndarray, *, good_direction=None) -> np.ndarray:
    """The alert mask `base` (from `config`) with overridden rows judged by their own knobs (used by tuning)."""
    if not overrides:
        return base
    out = base.copy()
    index = {canonical_slice(n): i for i, n in enumerate(names)}
    for o in overrides:
        i = index.get(canonical_slice(o.slice))
        if i is None:
            continue
        out[i] = apply_conditions(scores, config.model_copy(update=o.knobs()), good_direction=good_direction
                                  ).is_anomaly[i]
    return out
