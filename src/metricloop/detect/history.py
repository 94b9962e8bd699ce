"""A series' history cut: points before it are left out of everything the detector learns (a re-baseline).

Feedback `new_normal` from a date says the level from then on is normal: the series is judged as if it had begun
on that date, so it warms up again on the new level instead of comparing it with the old one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd


def cut_history(batch: Any, names: list[str] | None, history_from: dict[str, datetime] | None) -> int:
    """Blank (NaN) each named series' points before its cut, in place. Returns how many series were cut."""
    if not history_from or batch.times is None:
        return 0
    index = {name: i for i, name in enumerate(names or [str(i) for i in range(batch.values.shape[0])])}
    times = batch.times.tz_localize(None) if batch.times.tz is not None else batch.times
    # the caller's arrays stay as they were: prepare_batch may hand them through without a copy
    batch.values = batch.values.copy()
    batch.numerator = None if batch.numerator is None else batch.numerator.copy()
    batch.denominator = None if batch.denominator is None else batch.denominator.copy()
    cut = 0
    for name, start in history_from.items():
        i = index.get(name)
        if i is None or start is None:
            continue
        ts = pd.Timestamp(start)
        before = np.asarray(times < (ts.tz_localize(None) if ts.tz is not None else ts))
        if not before.any():
            continue
        for arr in (batch.values, batch.numerator, batch.denominator):
            if arr is not None:
                arr[i, before] = np.nan
        cut += 1
    return cut
