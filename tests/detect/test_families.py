"""Each series judged in its own noise family: sparse rates as counts of lumps, runs of a count tested
as a count, noise learnt per hour, holiday lifts learnt from the series' own past days off."""

import chinese_calendar
import numpy as np
import pandas as pd

from metricloop.detect import Calendar, get_detector
from metricloop.detect.csvio import detect_csv
from metricloop.detect.families import sparse_lump_size


def _flags(values, times, **kw):
    det = get_detector("auto").detect(values, times, **kw)
    return det, det.is_anomaly[0]


def test_a_sparse_error_rate_is_a_count_of_lumps_and_raises_no_storm(tmp_path):
    rng = np.random.default_rng(11)
    times = pd.date_range("2025-03-03", periods=1440 * 5, freq="min")
    reqs = rng.poisson(25, len(times))
    errs = rng.binomial(reqs, 0.01)
    rate = np.round(np.where(reqs > 0, errs / np.maximum(reqs, 1) * 100, np.nan), 3)
    path = tmp_path / "errors.csv"
    pd.DataFrame({"timestamp": times, "value": rate}).to_csv(path, index=False)
    res = detect_csv(path)
    # before: a Gaussian band collapsed onto 0 and every minute with an error alerted (hundreds)
    assert int(res.frame["is_anomaly"].sum()) <= 2
    assert np.isfinite(sparse_lump_size(rate[None, :], times, 2880, 24))[0]
    # a busy shop's shut nights (always 0, never in its busy hours) are not "sparse"
    hour = np.asarray(times.hour)
    shop = np.where((hour >= 9) & (hour < 21), 100 + rng.normal(0, 5, len(times)), 0.0)
    assert np.isnan(sparse_lump_size(shop[None, :], times, 2880, 24))[0]


def test_a_run_of_zeros_in_a_low_count_is_flagged_as_a_count():
    rng = np.random.default_rng(12)
    times = pd.date_range("2024-08-05", periods=24 * 42, freq="h")
    hour = np.asarray(times.hour)
    mean = 3.0 * (1 + 0.5 * np.sin(2 * np.pi * (hour - 8) / 24))
    v = rng.poisson(mean).astype(float)
    t0 = 24 * 35 + 9
    v[t0:t0 + 8] = 0.0  # eight hours without one order where ~30 were due
    det, flags = _flags(v, times)
    assert flags[t0:t0 + 10].any()
    assert det.sustained is not None and (det.sustained[0, t0:t0 + 10] >= 2).any()
    assert flags[24 * 14:t0].sum() <= 1  # and the quiet weeks before stay quiet


def test_noise_that_differs_by_hour_is_learnt_per_hour():
    """A conversion rate whose nights have a tenth of the visitors swings wider at night; judged by one
    width for every hour it alerts every few nights."""
    rng = np.random.default_rng(14)
    times = pd.date_range("2024-08-05", periods=24 * 56, freq="h")
    hour = np.asarray(times.hour)
    visitors = np.where((hour >= 8) & (hour < 23), 2000, 60)
    rate = rng.binomial(visitors, 0.2) / visitors
    _, flags = _flags(rate, times)
    assert flags.sum() <= 1


def test_a_holiday_lift_is_learnt_from_the_series_own_past_days_off():
    rng = np.random.default_rng(15)
    times = pd.date_range("2023-01-02", "2024-12-31", freq="D")
    days = [d.date() for d in times]
    off = np.array([chinese_calendar.is_holiday(d) and d.weekday() < 5 for d in days])
    dow = np.array([1.0, 1.0, 1.0, 1.0, 1.1, 0.7, 0.7])[times.day_of_week]
    v = 1000 * dow * (1 + 0.04 * rng.standard_normal(len(times)))
    v = np.where(off, 1000 * 0.7 * 1.9, v) * (1 + 0.04 * rng.standard_normal(len(times)))  # days off sell 1.9× a Sunday
    odd = times.get_loc(pd.Timestamp("2024-10-03"))
    v[odd] = 1000 * 0.7 * 0.9  # a day off unlike the series' own days off
    _, flags = _flags(v, times, calendar=Calendar(None, china_holidays="learn"))
    assert flags[odd]
    off[odd] = False
    # judged by the weekly rhythm alone, a dozen of these days off alerted (every one of National Day)
    assert flags[off].sum() == 0


def test_minute_data_with_gaps_keeps_its_step_and_raises_nothing_at_the_gap_edges(tmp_path):
    rng = np.random.default_rng(16)
    times = pd.date_range("2025-03-03", periods=1440 * 5, freq="min")
    hour = np.asarray(times.hour) + np.asarray(times.minute) / 60
    reqs = rng.poisson(300 * (1 + 0.6 * np.sin(2 * np.pi * (hour - 8) / 24))).astype(float)
    keep = rng.random(len(times)) > 0.02  # missing minutes
    edges = []
    for start, length in ((1440 * 2 + 300, 45), (1440 * 3 + 700, 240), (1440 * 4 + 100, 360)):
        keep[start:start + length] = False  # missing stretches: the exporter was down
        edges.append(times[start + length])
    path = tmp_path / "requests.csv"
    pd.DataFrame({"timestamp": times[keep], "value": reqs[keep]}).to_csv(path, index=False)
    res = detect_csv(path)
    assert res.steps[""] == "minute"  # not averaged into hours
    assert any("missing" in w for w in res.warnings)
    flagged = pd.to_datetime(res.frame.loc[res.frame["is_anomaly"], "timestamp"])
    assert len(flagged) <= 1
    for edge in edges:
        assert not ((flagged >= edge) & (flagged < edge + pd.Timedelta(minutes=30))).any()
