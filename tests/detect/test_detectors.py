"""Detector interface, built-in detectors and knobs, on real computations."""

import numpy as np
import pandas as pd
import pytest

from metricloop.detect import Calendar, Event, apply_conditions, default_direction, detector_names, get_detector
from metricloop.detect.base import DetectorConfig, detector_from_dict
from metricloop.detect.conditions import standardised
from metricloop.detect.stats import sensitivity_to_k
from metricloop.errors import MetricloopError

FAST = ["threshold", "change", "band", "auto", "zscore"]
OPTIONS = {"threshold": {"upper": 1150.0, "lower": 700.0}}


def test_registry_lists_builtins_and_rejects_unknown():
    assert {"threshold", "change", "band", "seasonal", "auto", "zscore"} <= set(detector_names())
    with pytest.raises(MetricloopError, match="unknown detector"):
        get_detector("nope")


@pytest.mark.parametrize("name", FAST + ["seasonal"])
def test_config_round_trips_through_a_dict(name):
    det = get_detector(name, {"sensitivity": 7, "direction": "up", **OPTIONS.get(name, {})})
    data = det.to_dict()
    assert data["detector"] == name and data["sensitivity"] == 7
    again = detector_from_dict(data)
    assert again.to_dict() == data
    assert type(again.config).from_dict(data) == again.config


def test_config_validation_is_clear():
    with pytest.raises(ValueError):
        get_detector("auto", sensitivity=11)
    with pytest.raises(ValueError, match="lower and/or an upper"):
        get_detector("threshold")


@pytest.mark.parametrize("name", FAST + ["seasonal"])
def test_appending_future_points_never_changes_past_outputs(name, daily):
    times, values, _ = daily
    values = values.copy()
    values[:, 300] *= 0.5
    cut = 330 if name != "seasonal" else 120
    vals = values[:2] if name == "seasonal" else values
    n_full = 360 if name != "seasonal" else 160
    cal = Calendar([Event(name="promo 2024", start="2024-06-01", end="2024-06-04")])
    det = get_detector(name, OPTIONS.get(name, {}))
    short = det.detect(vals[:, :cut], times[:cut], calendar=cal)
    full = det.detect(vals[:, :n_full], times[:n_full], calendar=cal)
    for attr in ("expected", "lower", "upper", "is_anomaly"):
        a, b = getattr(short, attr), getattr(full, attr)[:, :cut]
        np.testing.assert_array_equal(a, b, err_msg=f"{name}.{attr} changed when future points were appended")
    np.testing.assert_array_equal(short.scores.score, full.scores.score[:, :cut])


def test_vectorised_scoring_equals_one_series_at_a_time(daily):
    times, values, _ = daily
    det = get_detector("auto")
    together = det.score(values, times)
    for i in range(values.shape[0]):
        alone = det.score(values[i], times)
        np.testing.assert_allclose(alone.expected[0], together.expected[i], equal_nan=True)


def test_auto_finds_a_spike_and_picks_the_weekly_profile(daily):
    times, values, _ = daily
    values = values.copy()
    values[:, 200] *= 0.6
    det = get_detector("auto").detect(values, times)
    assert det.is_anomaly[:, 200].all()
    assert all(m.endswith("day_of_week") for m in det.scores.model)
    false = det.is_anomaly.copy()
    false[:, 200] = False
    assert false.sum() <= 3  # 5 series × ~390 scored days


def test_auto_adapts_to_a_new_normal(daily):
    times, values, _ = daily
    values = values.copy()
    values[:, 250:] *= 1.4
    det = get_detector("auto", direction="both").detect(values, times)
    assert det.is_anomaly[:, 250].all()
    assert not det.is_anomaly[:, 280:].any(), "still alerting a month after a level change"


def test_anomalies_stay_out_of_the_baseline(daily):
    times, values, _ = daily
    values = values.copy()
    values[:, 200:205] *= 3.0  # a burst shorter than the new-normal window
    det = get_detector("band", seasonality="day_of_week").detect(values, times)
    before = det.expected[:, 199]
    after = det.expected[:, 212]
    assert np.all(np.abs(after / before - 1) < 0.3)


def test_count_aware_low_volume_counts():
    rng = np.random.default_rng(3)
    times = pd.date_range("2025-01-01", periods=300, freq="D")
    counts = rng.poisson(2.0, size=(20, 300)).astype(float)
    counts[:, 250] = 20  # ten times the usual day: beyond k=5 even for the noisiest estimate of the mean
    det = get_detector("auto").detect(counts, times)
    assert all(":count:" in m for m in det.scores.model)
    assert det.is_anomaly[:, 250].all()
    false = det.is_anomaly.copy()
    false[:, 250] = False
    assert false.sum() <= 5  # 20 series × 270 days of Poisson noise
    assert np.nanmin(det.lower) >= 0  # count bands never go below zero


def test_ratio_aware_band_uses_the_denominator():
    rng = np.random.default_rng(5)
    times = pd.date_range("2025-01-01", periods=200, freq="D")
    den = np.array([[30.0], [30000.0]]) * np.ones((2, 200))
    num = rng.binomial(den.astype(int), 0.98).astype(float)
    num[:, 150] = np.round(den[:, 150] * 0.96)  # a 2-point drop on both
    rate = num / den * 100
    det = get_detector("auto").detect(rate, times, numerator=num, denominator=den)
    assert all(":ratio:" in m for m in det.scores.model)
    assert not det.is_anomaly[0, 150], "a 2 % drop on 30 orders is noise"
    assert det.is_anomaly[1, 150], "a 2 % drop on 30,000 orders is not"
    assert np.nanmax(det.upper) <= 100 and np.nanmin(det.lower) >= 0  # a rate in % stays within 0–100 %
    full = np.full((1, 200), 138.0)
    perfect = get_detector("auto").detect(full / full * 100 + 1e-14, times, numerator=full, denominator=full)
    assert not perfect.is_anomaly.any(), "100 % (give or take rounding) is on the ceiling, not above it"


def test_sensitivity_mapping_and_monotonic_alert_count(daily):
    assert sensitivity_to_k(0) == 7.0 and sensitivity_to_k(5) == 5.0 and sensitivity_to_k(10) == 3.0
    # an hourly series is judged 24 times a day: its k is raised to the same false alerts per day
    assert sensitivity_to_k(5, "hour") == pytest.approx(5.58, abs=0.01)
    assert sensitivity_to_k(5, "day") == sensitivity_to_k(5, "week") == 5.0
    # a step is judged 86,400 s / step times a day: 48 at 30 minutes, 288 at 5, 1,440 at 1
    assert sensitivity_to_k(5, "hour", 3600) == sensitivity_to_k(5, "hour")
    assert sensitivity_to_k(5, "hour", 1800) == pytest.approx(5.70, abs=0.01)
    assert sensitivity_to_k(5, "minute", 300) == pytest.approx(6.00, abs=0.01)
    assert sensitivity_to_k(5, "minute", 60) == sensitivity_to_k(5, "minute") == pytest.approx(6.25, abs=0.01)
    times, values, _ = daily
    scores = get_detector("auto").score(values, times)
    counts = [apply_conditions(scores, DetectorConfig(sensitivity=s, direction="both")).is_anomaly.sum()
              for s in (0, 5, 10)]
    assert counts[0] <= counts[1] <= counts[2]


def test_direction_defaults_from_the_good_direction(daily):
    assert default_direction("up") == "down" and default_direction("down") == "up"
    assert default_direction("none") == "both" and default_direction(None) == "both"
    times, values, _ = daily
    values = values.copy()
    values[:, 200] *= 1.6
    det = get_detector("auto")
    assert not det.detect(values, times, good_direction="up").is_anomaly[:, 200].any()
    assert det.detect(values, times, good_direction="down").is_anomaly[:, 200].all()


def test_min_change_duration_volume_and_warmup(daily):
    times, values, _ = daily
    values = values.copy()
    values[:, 200] *= 0.8
    values[:, 300:303] *= 0.6
    base = get_detector("auto").detect(values, times)
    assert base.is_anomaly[:, 200].all()
    assert not get_detector("auto", min_rel_change=0.3).detect(values, times).is_anomaly[:, 200].any()
    assert not get_detector("auto", min_abs_change=1e6).detect(values, times).is_anomaly.any()
    dur = get_detector("auto", min_duration=3).detect(values, times)
    assert not dur.is_anomaly[:, 200].any() and dur.is_anomaly[:, 302].all()
    assert not get_detector("auto", min_volume=1e9).detect(values, times).is_anomaly.any()
    warm = get_detector("auto", warmup=60).detect(values, times)
    assert warm.scores.learning[:, :60].all() and not warm.is_anomaly[:, :60].any()
    assert (warm.state() != "learning").all()
    short = get_detector("auto").detect(values[:, :10], times[:10])
    assert (short.state() == "learning").all()


def test_threshold_and_change_detectors():
    times = pd.date_range("2025-01-01", periods=60, freq="D")
    v = np.full(60, 99.0)
    v[40] = 96.0
    det = get_detector("threshold", lower=98).detect(v, times)
    assert np.flatnonzero(det.is_anomaly[0]).tolist() == [40]
    assert det.scores.score[0, 40] >= 0.5 and det.scores.score[0, 39] == 0
    w = np.tile([100.0, 100, 100, 100, 100, 50, 50], 9)[:60]
    wk = get_detector("change", offset="last_week", max_pct=0.2).detect(w, times)
    prev = get_detector("change", offset="previous", max_pct=0.2).detect(w, times)
    assert not wk.is_anomaly.any() and prev.is_anomaly.any()
    w2 = w.copy()
    w2[50] = 20
    mean4 = get_detector("change", offset="same_weekday_mean", weeks=4, max_pct=0.2).detect(w2, times)
    assert mean4.is_anomaly[0, 50] and mean4.expected[0, 50] == 100
    yr = pd.date_range("2024-01-01", periods=800, freq="D")
    ly = get_detector("change", offset="last_year").score(np.arange(800.0), yr)
    assert ly.expected[0, 400] == 400 - 364
    ld = get_detector("change", offset="last_year", year_align="date").score(np.arange(800.0), yr)
    assert ld.expected[0, 500] == 500 - 365


def test_hourly_series_get_an_hour_profile():
    rng = np.random.default_rng(11)
    times = pd.date_range("2025-01-01", periods=24 * 60, freq="h")
    shape = 1 + 0.8 * np.sin((np.asarray(times.hour) - 6) / 24 * 2 * np.pi)
    v = 500 * shape * (1 + 0.03 * rng.standard_normal((3, len(times))))
    v[:, 24 * 50 + 12: 24 * 50 + 15] *= 0.5  # a three-hour drop
    blip, far = 24 * 55 + 12, 24 * 57 + 12
    first = get_detector("auto").detect(v, times)  # causal: what it expects at `blip` ignores the value there
    sd = (first.expected[:, blip] - first.lower[:, blip]) / first.k
    v[:, blip] = first.expected[:, blip] - (first.k + 1.2) * sd  # a one-hour blip: hours need two in a row
    v[:, far] *= 0.4  # ... unless one hour is far beyond any blip (band + 1.5 sd)
    det = get_detector("auto").detect(v, times)
    assert all(":hour_" in m for m in det.scores.model)
    assert det.is_anomaly[:, 24 * 50 + 13].all()
    assert (det.values[:, blip] < det.lower[:, blip]).all()  # out of band, and yet
    assert not det.is_anomaly[:, blip].any()
    assert det.is_anomaly[:, far].all()
    assert get_detector("auto", min_duration=1).detect(v, times).is_anomaly[:, blip].all()
    # an explicit minimum duration is taken as written, however far out the point
    assert not get_detector("auto", min_duration=2).detect(v, times).is_anomaly[:, far].any()


def test_a_shop_closed_at_night_is_judged_by_its_open_hours():
    """Hours that were always 0 (shut) are expected to stay 0 and say nothing about the noise of the open
    hours: learnt from 10 hours of exact zeros a day, the noise looked tiny and every busy noon alerted."""
    rng = np.random.default_rng(5)
    times = pd.date_range("2025-01-01", periods=24 * 56, freq="h")
    hour = np.asarray(times.hour)
    open_ = (hour >= 8) & (hour < 22)
    mean = np.where(open_, 300 + 200 * np.sin((hour - 8) / 14 * np.pi), 0.0)
    v = rng.poisson(np.broadcast_to(mean, (4, len(times)))).astype(float)
    v[:, 24 * 50 + 10: 24 * 50 + 13] = 0.0  # an outage in opening hours
    det = get_detector("auto").detect(v, times)
    live = ~det.scores.learning
    shut = live & ~open_[None, :]
    assert (det.expected[shut] == 0).all()
    assert det.is_anomaly[:, 24 * 50 + 11].all()
    outside = np.ones(len(times), bool)
    outside[24 * 50 + 10: 24 * 50 + 14] = False
    assert det.is_anomaly[:, outside].sum() <= 1  # noon's ordinary noise is not an incident


def test_a_sparse_count_with_empty_weekends_is_not_a_closed_shop():
    from metricloop.detect.profiles import closed_slots

    rng = np.random.default_rng(3)
    complaints = rng.poisson(0.8, (1, 28)).astype(float)
    complaints[0, 5::7] = 0.0
    complaints[0, 6::7] = 0.0  # four empty weekends: chance, for one complaint a day
    ph = np.arange(28) % 7
    assert not closed_slots(complaints, ph, 7).any()
    shop = rng.poisson(40.0, (1, 28)).astype(float)
    shop[0, 6::7] = 0.0  # closed on Sundays, open and busy otherwise
    assert closed_slots(shop, ph, 7)[0].tolist() == [False] * 6 + [True]


def test_an_hourly_sum_of_baskets_is_scored_as_a_count_of_lumps():
    """Hourly GMV is a few baskets an hour: its variance grows with its mean like a count's. Scored
    as a count of basket-sized lumps, five empty midday hours alert (as 0 orders would), and a smooth
    series with proportional noise stays Gaussian."""
    rng = np.random.default_rng(5)
    times = pd.date_range("2025-03-03", periods=24 * 70, freq="h")
    hour = np.asarray(times.hour)
    rate = 0.3 + 9 * np.clip(np.sin((hour - 7) / 15 * np.pi), 0, None)  # baskets an hour
    n = rng.poisson(np.broadcast_to(rate, (4, len(times))))
    gmv = np.array([[rng.lognormal(3.8, 0.5, k).sum() for k in row] for row in n])
    out = slice(24 * 60 + 11, 24 * 60 + 16)
    gmv[:, out] = 0.0
    det = get_detector("auto", direction="down").detect(gmv, times)  # GMV: a drop is the bad news
    assert all(":lumps:" in m for m in det.scores.model)
    assert det.is_anomaly[:, out].any(axis=1).sum() >= 3
    false = det.is_anomaly.copy()
    false[:, out] = False
    assert false.sum() <= 1  # 4 series × 56 days of hours
    # a quiet night's big basket or two is a sum's chance, not a surge (a mostly empty slot is
    # fitted by its mean, not its median of 0)
    both = get_detector("auto", direction="both").detect(gmv, times).is_anomaly.copy()
    both[:, out] = False
    assert (both[:, 1:] & ~both[:, :-1]).sum() + both[:, 0].sum() <= 4
    z = standardised(det.scores)
    # an empty hour is ~3 sd as a count of baskets (as a Gaussian sum it was ~2)
    assert (z[:, out].mean(axis=1) < -2.0).all() and np.median(z[:, out]) < -2.8
    smooth = 500 * (1.2 + np.sin(hour / 24 * 2 * np.pi)) * (1 + 0.04 * rng.standard_normal((3, len(times))))
    assert all(":gauss:" in m for m in get_detector("auto").detect(smooth, times).scores.model)


def test_errors_that_run_together_need_more_than_a_run_to_alert():
    """Store stock-out rates: each SKU that empties stays empty for days, so a chance cluster of
    empty shelves lasts days. The run test counts such a run as fewer independent days (lag-1
    correlation of the errors, learnt causally) and stays quiet; a real stock-out of a whole
    category still alerts at once."""
    from metricloop.detect.conditions import lag_correlation

    rng = np.random.default_rng(3)
    n_series, T, skus = 40, 500, 33
    times = pd.date_range("2025-01-01", periods=T, freq="D")
    empty = np.zeros((n_series, T, skus), bool)
    starts = rng.random((n_series, T, skus)) < 0.008
    length = rng.integers(1, 6, (n_series, T, skus))  # empty for 1–5 days
    for lag in range(5):
        empty[:, lag:] |= starts[:, : T - lag] & (length[:, : T - lag] > lag)
    out_n = empty.sum(axis=2).astype(float)
    out_n[0, 400:404] += 9  # a category gone: 9 more SKUs out for four days
    den = np.full(out_n.shape, float(skus))
    det = get_detector("auto", direction="up").detect(out_n / den * 100, times, numerator=out_n, denominator=den)
    assert det.is_anomaly[0, 400:404].any()
    false = det.is_anomaly.copy()
    false[0, 400:404] = False
    assert false.sum() == 0  # 40 stores × ~16 months (counted as independent days: 5 false alerts)
    z = standardised(det.scores)
    assert np.median(lag_correlation(z)[:, -1]) > 0.2


def test_recovery_after_a_new_normal_is_no_news():
    """A store's sales fall 40 % for two weeks: the drop alerts, after a week the lower level is
    accepted as the new normal, and when sales come back the return to the old level does not
    alert as a 'surge'. A real surge after a recovery still does."""
    rng = np.random.default_rng(8)
    times = pd.date_range("2025-01-06", periods=200, freq="D")
    v = 1000 * (1 + 0.03 * rng.standard_normal((3, 200)))
    v[:, 120:134] *= 0.6
    det = get_detector("auto", direction="both").detect(v, times)
    assert det.is_anomaly[:, 120].all()
    assert not det.is_anomaly[:, 134:150].any()
    assert abs(det.expected[0, 140] / 1000 - 1) < 0.05
    v[:, 160] *= 1.5
    assert get_detector("auto", direction="both").detect(v, times).is_anomaly[:, 160].all()
