"""Sub-hourly series key their daily profile on the time-of-day slot at their own step, refined
from the hour profile only where the series' own past shows it (`profiles.refine_slots`)."""

import numpy as np
import pandas as pd

from metricloop.detect.csvio import detect_csv
from metricloop.detect.prepare import PROFILES, candidate_profiles, phase_index


def _cron_series(days: int, seed: int = 0):
    """5-minute CPU-like data, a mild daily cycle, and a job that runs every day at 03:30 for 5 minutes."""
    t = pd.date_range("2024-03-04", periods=days * 288, freq="5min")
    rng = np.random.default_rng(seed)
    hour = t.hour + t.minute / 60
    v = np.asarray(20 + 4 * np.sin(2 * np.pi * (hour - 8) / 24)) + rng.normal(0, 1.0, len(t))
    cron = (t.hour == 3) & (t.minute == 30)
    v[cron] += 40
    return t, np.asarray(v), np.asarray(cron)


def test_slot_profiles_are_keyed_on_the_series_own_step():
    assert candidate_profiles("minute", 300.0) == ["none", "slot_by_daytype:288", "slot_of_day:288", "hour_of_week"]
    assert PROFILES["slot_of_day:288"] == 288 and PROFILES["slot_by_daytype:48"] == 96
    # hourly and daily series keep their hour and day profiles
    assert candidate_profiles("hour", 3600.0) == ["none", "hour_by_daytype", "hour_of_day", "hour_of_week"]
    assert candidate_profiles("day", 86400.0) == ["day_of_week"]
    t = pd.DatetimeIndex(["2024-03-09 03:30", "2024-03-11 03:30", "2024-03-11 23:55"])  # Sat, Mon, Mon
    assert phase_index(t, 3, "slot_of_day:288").tolist() == [42, 42, 287]
    assert phase_index(t, 3, "slot_by_daytype:288").tolist() == [288 + 42, 42, 287]


def _flagged(tmp_path, t, v, name):
    p = tmp_path / f"{name}.csv"
    pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "value": v}).to_csv(p, index=False)
    return detect_csv(p).frame["is_anomaly"].to_numpy().astype(bool)


def test_a_daily_job_at_a_fixed_minute_is_learned_once_the_slot_has_been_seen_a_week(tmp_path):
    t, v, cron = _cron_series(28)
    flagged = _flagged(tmp_path, t, v, "a")
    day = np.arange(len(t)) // 288
    # the last two weeks: the 03:30 job is part of the day, not an alert every night
    late = day >= 14
    assert not flagged[late & cron].any(), np.flatnonzero(flagged & late)
    assert flagged[late].sum() <= 3
    # its own hour is not widened by it: a real 03:10 excursion of the same size as 03:30's job still alerts
    v2 = v.copy()
    at = int(np.flatnonzero((day == 24) & (t.hour == 3) & (t.minute == 10))[0])
    v2[at] += 40
    assert _flagged(tmp_path, t, v2, "b")[at]


def test_weekend_nights_unseen_in_the_warm_up_are_learned_by_the_re_checks(tmp_path):
    """A warm-up of a Tuesday and a Wednesday has no weekend: its nights start as the weekdays' and
    the first weekend nights, 4× busier, are out of band. The re-checks see those points too, so
    the weekend nights are learned (before: flagged every weekend, as nyc_taxi's were)."""
    t = pd.date_range("2024-03-05", periods=42 * 48, freq="30min")  # a Tuesday
    rng = np.random.default_rng(1)
    hour = np.asarray(t.hour + t.minute / 60)
    v = 1000 + 800 * np.sin(2 * np.pi * (hour - 9) / 24)
    night = (np.asarray(t.day_of_week) >= 5) & (hour < 5)
    v = np.where(night, 4 * v, v) * (1 + 0.05 * rng.standard_normal(len(t)))
    flagged = _flagged(tmp_path, t, v, "c")
    day = np.arange(len(t)) // 48
    # a weekend slot may differ from the weekdays' once 7 weekend days have shown it: the sixth week
    # is judged by its own nights (main still flagged 4 of its 20 night points, the first week all 20;
    # now 2 or 3, depending on how heavy a tail the earlier weekends taught the calibration)
    late = day >= 35
    assert flagged[late & night].sum() <= 3, np.flatnonzero(flagged & late)
    assert not flagged[~night & (day >= 2)].any()
