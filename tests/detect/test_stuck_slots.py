"""A slot of an hourly profile that the warm-up got wrong is re-set from its own recent visits.

Below a day a slot is visited once a day or once a week, and a visit beyond the exclusion line never
enters the baseline: without the re-check's release, a Thursday 14:00 rush that began after the
warm-up is "an anomaly" every Thursday for good, and its weekly excesses teach the score's
calibration that huge deviations are common, so a real spike is then missed."""

import numpy as np
import pandas as pd

from metricloop.detect import get_detector
from metricloop.detect.engine import EngineParams


def _shop(seed: int = 3, weeks: int = 10) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    t = pd.date_range("2025-03-03", periods=24 * 7 * weeks, freq="h")
    rng = np.random.default_rng(seed)
    hour = np.asarray(t.hour)
    day = 0.1 + np.exp(-0.5 * ((hour - 12) / 3.0) ** 2) + 0.6 * np.exp(-0.5 * ((hour - 19) / 2.0) ** 2)
    week = np.array([1.0, 0.95, 1.05, 1.0, 1.1, 1.3, 1.25])[np.asarray(t.day_of_week)]
    level = 400 * day * week
    rush = (np.asarray(t.day_of_week) == 3) & np.isin(hour, (14, 15)) & (np.arange(len(t)) >= 24 * 7 * 3)
    level = np.where(rush, 2.2 * level, level)  # from week 4: a standing Thursday-afternoon offer
    return t, level * np.exp(rng.normal(0, 0.05, len(t))), rush


def test_a_weekly_rush_the_warm_up_missed_is_learned_not_alerted_every_week():
    t, v, rush = _shop()
    det = get_detector("auto").detect(v, t)
    exp = det.scores.expected[0]
    late = rush & (np.arange(len(t)) >= 24 * 7 * 7)  # the last three Thursdays
    assert np.all(np.abs(v[late] / exp[late] - 1) < 0.25), np.round(v[late] / exp[late], 2)
    # news while the past weeks cannot tell it from a one-off (a slot's fit is a median of its visits),
    # then routine: never on the last four Thursdays
    rush_alerts = {t[i].normalize() for i in np.flatnonzero(det.is_anomaly[0] & rush)}
    assert len(rush_alerts) <= 3 and max(rush_alerts) < t[24 * 7 * 6], sorted(rush_alerts)


def test_after_the_release_a_real_spike_elsewhere_is_still_caught():
    t, v, _ = _shop()
    at = 24 * 7 * 8 + 24 * 1 + 11  # a Tuesday 11:00 in week 9
    v = v.copy()
    v[at] *= 1.6
    det = get_detector("auto").detect(v, t)
    assert det.is_anomaly[0, at]


def test_the_release_can_be_turned_off_and_then_the_slot_stays_wrong():
    from metricloop.detect.engine import run_engine
    from metricloop.detect.prepare import Batch

    t, v, rush = _shop()
    batch = Batch(v[None, :], t, "hour", step=3600.0)
    late = rush & (np.arange(len(t)) >= 24 * 7 * 7)
    on = run_engine(batch, None, EngineParams(warmup=24 * 14, reselect_every=24 * 7))
    off = run_engine(batch, None, EngineParams(warmup=24 * 14, reselect_every=24 * 7, release_z=0))
    err_on = np.abs(v[late] / on.expected[0, late] - 1).max()
    err_off = np.abs(v[late] / off.expected[0, late] - 1).min()
    assert err_on < 0.25 < err_off, (err_on, err_off)


def test_a_new_saturday_routine_of_a_daily_series_is_learned_at_a_re_check():
    t = pd.date_range("2024-01-01", periods=700, freq="D")
    rng = np.random.default_rng(1)
    week = np.array([1.0, 0.95, 1.05, 1.0, 1.1, 1.3, 1.25])[np.asarray(t.day_of_week)]
    new = (np.asarray(t.day_of_week) == 5) & (np.arange(len(t)) >= 300)
    v = np.where(new, 1.8, 1.0) * 1000 * week * np.exp(rng.normal(0, 0.05, len(t)))
    det = get_detector("auto").detect(v, t)
    saturdays = np.flatnonzero(new)
    # the daily re-check comes every eight weeks: a few Saturdays are news, then the slot is learned
    assert det.is_anomaly[0, saturdays].sum() <= 9
    tail = saturdays[-10:]
    assert np.all(np.abs(v[tail] / det.scores.expected[0, tail] - 1) < 0.2)
