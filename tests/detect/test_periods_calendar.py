"""Cycles found in a series' own past; holidays applied only where a series' past shows them."""

import datetime as dt

import chinese_calendar
import numpy as np
import pandas as pd
import pytest

from metricloop.detect import Calendar, Event, get_detector
from metricloop.detect.periods import detect_periods


def test_periods_are_found_not_assumed():
    rng = np.random.default_rng(1)
    t = np.arange(700)
    ar = np.zeros(700)
    for i in range(1, 700):
        ar[i] = 0.9 * ar[i - 1] + rng.normal()
    rows = np.array([
        np.sin(2 * np.pi * t / 288) + 0.2 * rng.normal(size=700),  # a day of 5-minute points
        (t % 288 > 108) * 48.0 + 20.0,  # a square wave, no noise
        np.sin(2 * np.pi * t / 7) + 0.5 * rng.normal(size=700),  # a week of days
        rng.normal(size=700),  # noise
        np.cumsum(rng.normal(size=700)),  # a random walk
        ar,  # red noise
        np.ones(700),  # constant
    ])
    assert detect_periods(rows, hints=(288,)).tolist() == [288, 288, 7, 0, 0, 0, 0]
    # a cycle must be seen twice: 300 points cannot show a 288-point day
    assert detect_periods(rows[:1, :300]).tolist() == [0]


@pytest.mark.parametrize("step", ["1min", "5min", "10min", "30min", "1h", None])
def test_a_perfectly_periodic_series_raises_nothing_at_any_step(step):
    n = 6000 if step in ("1min", "5min", "10min") else 3000
    per_day = {"1min": 1440, "5min": 288, "10min": 144, "30min": 48, "1h": 24, None: 50}[step]
    t = np.arange(n)
    # a square wave with a ramp: jumps a level model would never see coming
    v = np.where(t % per_day < per_day // 3, 20.0, 68.0) + (t % per_day) * 0.01
    times = pd.date_range("2024-03-01", periods=n, freq=step) if step else None
    # a plain sequence has no day to wait for: it is given a warm-up of two cycles; a timed series waits
    # two days by itself
    det = get_detector("auto", warmup=None if step else 2 * per_day).detect(v, times)
    assert int(det.is_anomaly.sum()) == 0
    # the day is followed: as a detected cycle, or (a timed series whose step the grains know) an hour-of-day profile
    # a day of 5-minute points is its time-of-day slots (slot_of_day:288), as good as cycle:288
    assert det.scores.model[0].endswith(f"cycle:{per_day}") or (step is not None and (
        "hour" in det.scores.model[0] or f"slot_of_day:{per_day}" in det.scores.model[0]))


def test_a_declared_period_longer_than_the_history_is_ignored_with_a_warning():
    v = np.sin(np.arange(100) / 3.0) + 10
    scores = get_detector("auto", period=500).score(v)
    assert any("period of 500 points is longer than the history (100 points)" in w for w in scores.warnings)
    assert not scores.model[0].endswith("cycle:500")
    with pytest.raises(Exception, match="period"):
        get_detector("auto", period=1)


def test_a_declared_period_is_used():
    t = np.arange(400)
    v = 10 + np.where(t % 13 < 4, 5.0, 0.0)
    det = get_detector("auto", period=13).detect(v)
    assert det.scores.model[0].endswith("cycle:13")
    assert int(det.is_anomaly.sum()) == 0


def _weekly(times, rng, holiday_like: bool):
    """Weekdays 100, weekends 60 (3 % noise); with `holiday_like` days off look like a Sunday and
    make-up workdays like a Monday."""
    off = np.array([chinese_calendar.is_holiday(d.date()) for d in times])
    weekend = np.asarray(times.day_of_week >= 5)
    busy = ~off if holiday_like else ~weekend
    return np.where(busy, 100.0, 60.0) * (1 + 0.03 * rng.standard_normal(len(times)))


def test_a_plain_weekly_series_is_not_judged_by_chinese_holidays():
    rng = np.random.default_rng(3)
    times = pd.date_range("2024-09-01", "2026-06-30", freq="D")
    v = _weekly(times, rng, holiday_like=False)
    det = get_detector("auto").detect(v, times, calendar=Calendar())
    assert int(det.is_anomaly.sum()) == 0
    assert det.scores.calendar is None or int(det.scores.calendar.max()) == 0
    # declared by a person, the calendar applies to it as before
    declared = get_detector("auto").detect(v, times, calendar=Calendar(china_holidays=True))
    assert int(declared.is_anomaly.sum()) > 5


def test_a_series_whose_past_holidays_looked_like_days_off_learns_the_pattern():
    rng = np.random.default_rng(4)
    times = pd.date_range("2024-09-01", "2026-06-30", freq="D")
    v = _weekly(times, rng, holiday_like=True)
    # a real drop on a later holiday that falls on a weekday (Labour Day 2026, Friday 1 May)
    drop = times.get_loc(pd.Timestamp("2026-05-01"))
    v[drop] *= 0.4
    # (no Spring Festival padding: this synthetic series works the days around it)
    det = get_detector("auto").detect(v, times, calendar=Calendar(holiday_padding={}))
    flagged = np.flatnonzero(det.is_anomaly[0])
    assert drop in flagged
    assert len(flagged) <= 3  # the first holidays, before anything was learned, at most
    assert all(times[i] < pd.Timestamp("2025-03-01") for i in flagged if i != drop)
    row = det.anomalies(metric="gmv").set_index("time").loc[pd.Timestamp("2026-05-01")]
    assert "holiday pattern, learned from" in row["explanation_en"]
    assert "按节假日模式（从过去" in row["explanation_zh"]


def test_a_calendar_file_naming_dates_outside_the_series_warns_and_changes_nothing(tmp_path):
    rng = np.random.default_rng(5)
    times = pd.date_range("2025-03-01", periods=200, freq="D")
    v = 100 * (1 + 0.03 * rng.standard_normal(len(times)))
    far = Event(name="Double 11 2019", start=dt.datetime(2019, 11, 11), end=dt.datetime(2019, 11, 12))
    with_file = get_detector("auto").score(v, times, calendar=Calendar([far], china_holidays=False))
    without = get_detector("auto").score(v, times, calendar=Calendar(china_holidays=False))
    assert any("fall outside the series" in w and "Double 11 2019" in w for w in with_file.warnings)
    np.testing.assert_array_equal(with_file.score, without.score)


def test_scores_keep_their_order_up_to_the_largest_deviations():
    from metricloop.detect.stats import score_log_tail, tail_score

    rng = np.random.default_rng(8)
    times = pd.date_range("2025-01-01", periods=200, freq="D")
    # the same history, then one spike of 17 sd, 67 sd, 300 sd or 3300 sd: the score orders them
    # (it is monotone in the deviation at every point; across time a series' own past spikes teach
    # its tail, so a later spike is judged against them)
    v = np.tile(1000 * (1 + 0.03 * rng.standard_normal(200)), (4, 1))
    for row, size in enumerate((1.5, 3.0, 10.0, 100.0)):
        v[row, 150] *= size
    sc = get_detector("auto").score(v, times).score[:, 150]
    assert (sc < 1.0).all() and (np.diff(sc) > 0).all()
    ell = np.array([0.1, 2.0, 11.5, 30.0, 300.0, 745.0, 1e6, 1e300])
    assert (np.diff(tail_score(ell)) > 0).all() and tail_score(ell)[-1] < 1.0
    np.testing.assert_allclose(score_log_tail(tail_score(ell))[:6], ell[:6], rtol=1e-4)
    np.testing.assert_allclose(tail_score(np.array([np.log(100.0)])), [0.99])  # exactly 1 − P up to P = 1e-5


@pytest.mark.parametrize("kind", ["gauss", "counts"])
def test_scores_on_clean_series_are_calibrated(kind):
    rng = np.random.default_rng(9)
    if kind == "gauss":
        times = pd.date_range("2024-01-01", periods=730, freq="D")
        week = 1 + 0.2 * (np.asarray(times.day_of_week) >= 5)
        values = 1000 * week[None, :] * (1 + 0.05 * rng.standard_normal((60, len(times))))
    else:
        times = pd.date_range("2025-01-01", periods=24 * 90, freq="h")
        shape = 1 + 0.8 * np.sin(2 * np.pi * np.asarray(times.hour) / 24)
        values = rng.poisson(rng.uniform(5, 50, (40, 1)) * shape[None, :]).astype(float)
    scores = get_detector("auto").score(values, times)
    s = scores.score[~scores.learning]
    # within a factor of 2 to 0.99; the goal (2 to 0.9999) is not met yet at 0.999 (bench/detect_calibration.py)
    for level, factor in ((0.9, 2), (0.99, 2), (0.999, 3)):
        share = float((s >= level).mean())
        assert (1 - level) / factor <= share <= factor * (1 - level), (level, share)


def test_a_heavy_tailed_series_learns_its_own_tail():
    """Student-t noise (3 degrees of freedom) under a Gaussian model: the generalised Pareto tail
    fitted to its own past excesses cuts the share of points past 0.999 to about 8 in 1,000 where
    the model's tail alone gives 26 (the goal, 2 in 1,000, is not met yet)."""
    from metricloop.detect import band as band_mod

    rng = np.random.default_rng(12)
    times = pd.date_range("2025-01-01", periods=24 * 200, freq="h")
    values = 1000 * (1 + 0.03 * rng.standard_t(3, (20, len(times))))
    own = band_mod.calibrate_log_tail
    shares = {}
    for label, cal in (("fit", own), ("model", lambda ell, usable: ell)):
        band_mod.calibrate_log_tail = cal
        try:
            scores = get_detector("auto").score(values, times)
        finally:
            band_mod.calibrate_log_tail = own
        s = scores.score[~scores.learning]
        shares[label] = float((s >= 0.999).mean()) / 0.001
    assert shares["fit"] < 12 and shares["model"] > 2.5 * shares["fit"], shares


def test_a_first_holiday_is_judged_with_the_spread_holidays_usually_have():
    """Before a series has any past day off to learn its lift from, a holiday is still judged by its
    weekly rhythm, but with the uncertainty of a lift nobody has seen yet (`LIFT_PRIOR_SD`): a shop
    that does half again its Sunday on its first Mid-Autumn is not an incident. From the first
    holiday on, the lift is the series' own."""
    from metricloop.detect.families import LIFT_PRIOR_SD, holiday_lift

    times = pd.date_range("2024-08-01", "2024-10-31", freq="D")
    masks = Calendar().masks(times, "day")
    first = times.get_loc(pd.Timestamp("2024-09-16"))  # Mid-Autumn, a Monday: the first day off
    later = times.get_loc(pd.Timestamp("2024-10-04"))  # National Day, after 6 days off were seen
    assert masks.evidence[first] and masks.evidence[later] and not masks.evidence[:first - 2].any()
    values = np.full((1, len(times)), 100.0)
    values[0, masks.evidence] = 150.0
    expected = np.full(values.shape, 100.0)
    sd = np.full(values.shape, 3.0)
    e, s = holiday_lift(values, expected, sd, np.array([False]), np.zeros(values.shape, bool), masks, 86400.0)
    assert e[0, first] == 100.0  # no lift is assumed
    # the noise plus the lift's spread (less what the noise already holds) and its mean's error
    assert s[0, first] == pytest.approx(np.sqrt(9 + 100**2 * (2 * LIFT_PRIOR_SD**2 - 9 / 100**2)))
    assert (150.0 - e[0, first]) / s[0, first] < 2  # half again the usual day is well inside
    assert e[0, later] > 120.0 and s[0, later] < s[0, first]  # learnt: the series' own lift
    ordinary = ~masks.evidence
    assert (e[0, ordinary] == 100.0).all() and (s[0, ordinary] == 3.0).all()
