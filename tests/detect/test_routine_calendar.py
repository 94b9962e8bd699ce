"""What a series' own past shows, not what is assumed: a job that runs at a different minute each
night is routine once most recent nights had it (`stats.routine_log_tail`), and a learned holiday
applies only to a series whose past can show it (`engine.run_engine`, released buckets)."""

import numpy as np
import pandas as pd

from metricloop.detect import Calendar, get_detector
from metricloop.detect.csvio import detect_csv
from metricloop.detect.stats import routine_log_tail


def _detect(tmp_path, t, v, name, **kw):
    p = tmp_path / f"{name}.csv"
    pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "value": v}).to_csv(p, index=False)
    return detect_csv(p, **kw).frame


def _jittered_job(days: int, seed: int = 3):
    """5-minute CPU: flat noise, and a job that lifts it for 10 minutes once a night, at a minute
    drawn each night between 03:00 and 04:00 (no fixed slot of a profile can hold it)."""
    t = pd.date_range("2024-06-03", periods=days * 288, freq="5min")
    rng = np.random.default_rng(seed)
    v = 5 + rng.normal(0, 0.3, len(t))
    job = np.zeros(len(t), bool)
    for d in range(days):
        at = d * 288 + 36 + int(rng.integers(0, 11))  # 03:00 … 03:50
        job[at:at + 2] = True
    v[job] += 20
    return t, v, job


def test_a_nightly_job_at_a_drifting_minute_becomes_routine(tmp_path):
    t, v, job = _jittered_job(21)
    flagged = _detect(tmp_path, t, v, "job")["is_anomaly"].to_numpy(bool)
    day = np.arange(len(t)) // 288
    # the first nights after the warm-up alert (nothing like it was seen), the last two weeks do not
    assert flagged[job & (day == 2)].any()
    assert not flagged[job & (day >= 7)].any(), np.flatnonzero(flagged & job)
    # a night the job takes five times its usual lift is news again
    v2 = v.copy()
    night = np.flatnonzero(job & (day == 15))
    v2[night] += 80
    assert _detect(tmp_path, t, v2, "job2")["is_anomaly"].to_numpy(bool)[night].any()


def test_routine_needs_most_recent_days_and_leaves_other_points_alone():
    per_day, T = 24, 24 * 10
    ell = np.zeros((1, T))
    ell[0, 3 * 24 + 12] = ell[0, 5 * 24 + 12] = 200.0  # two incidents at noon in a week: not a routine
    ell[0, 8 * 24 + 12] = 200.0
    usable = np.ones((1, T), bool)
    out = routine_log_tail(ell, usable, per_day, 1)
    assert out[0, 8 * 24 + 12] == 200.0
    ell[0, 6 * 24 + 12] = 200.0  # a third noon in the week before: now it is
    out = routine_log_tail(ell, usable, per_day, 1)
    assert out[0, 8 * 24 + 12] < 5.0
    assert (out[0, :8 * 24] == ell[0, :8 * 24]).all()  # days before any routine: unchanged
    # monotone in ℓ at a routine point
    lo, hi = ell.copy(), ell.copy()
    lo[0, 8 * 24 + 12], hi[0, 8 * 24 + 12] = 300.0, 2000.0
    a = routine_log_tail(lo, usable, per_day, 1)[0, 8 * 24 + 12]
    b = routine_log_tail(hi, usable, per_day, 1)[0, 8 * 24 + 12]
    assert 0 <= a < b


def test_a_series_that_starts_in_the_spring_festival_learns_from_it(tmp_path):
    """Data that begin in the learned Spring Festival's fortnight, of a series that knows nothing of
    it: its warm-up is two days of its own points, not the festival's end (before: a week of Twitter
    volume and two of NAB's windows fell in a warm-up that waited for the festival to pass)."""
    t = pd.date_range("2015-02-19", periods=14 * 288, freq="5min")  # the Spring Festival 2015 and after
    rng = np.random.default_rng(0)
    hour = np.asarray(t.hour + t.minute / 60)
    v = 100 + 30 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 2, len(t))
    out = 13 * 288 + 150  # 4 March: the festival (and its week after) is over
    v[out:out + 20] = 0.0  # an outage
    cal = Calendar(china_holidays="learn")
    scores = get_detector("auto").score(v[None, :], t, calendar=cal, step=300.0)
    assert int(np.argmax(~scores.learning[0])) == 576
    assert not scores.suppressed[0, :576].any()  # what it learnt from is not silenced either
    flagged = _detect(tmp_path, t, v, "sf", calendar=cal)["is_anomaly"].to_numpy(bool)
    assert flagged[out:out + 20].any()
    assert flagged[:out].sum() <= 1


def test_a_retail_day_series_keeps_its_first_spring_festival_out():
    """A daily series with a weekly rhythm and no Spring Festival before: the festival, unlike any
    other day off, is kept out until there is one to compare with (as before)."""
    t = pd.date_range("2024-10-20", periods=150, freq="D")
    rng = np.random.default_rng(2)
    dow = np.asarray(t.day_of_week)
    v = 1000 * np.where(dow >= 5, 1.4, 1.0) * (1 + rng.normal(0, 0.03, len(t)))
    sf = (t >= "2025-01-26") & (t < "2025-02-12")
    v[sf] *= 0.3  # shops close
    det = get_detector("auto").detect(v, t, calendar=Calendar(china_holidays="learn"))
    assert not det.is_anomaly[0, sf].any()
    assert det.scores.suppressed[0, sf].all()
