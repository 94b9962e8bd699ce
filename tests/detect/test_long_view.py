"""The long view of a sub-hourly series (`stats.history_log_tail`): its value against its own past weeks,
beside the one-step forecast, whose level forgets within hours and so follows a slow slide."""

import numpy as np
import pandas as pd

from metricloop.detect import get_detector
from metricloop.detect.explain import anomalies_frame, sentence
from metricloop.detect.stats import history_log_tail


def _machine(slide: bool, seed: int) -> tuple[np.ndarray, pd.DatetimeIndex, int]:
    """A machine's temperature every 5 minutes: a random walk pulled back towards 85 (sd about 2) for ten
    days; then (if `slide`) it falls to 20 over a whole day, 0.23 a step against step-to-step noise of
    0.8, and stays there."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2024-03-01", periods=288 * 12, freq="5min")
    v = np.empty(len(t))
    v[0] = 85.0
    for i in range(1, len(t)):
        v[i] = v[i - 1] + 0.08 * (85.0 - v[i - 1]) + rng.normal(0, 0.8)
    start = 288 * 10
    if slide:
        v = v - 65.0 * np.clip((np.arange(len(t)) - start) / 288.0, 0.0, 1.0)
    return v, t, start


SEEDS = range(8)


def test_the_long_view_is_causal_and_waits_for_its_history():
    rng = np.random.default_rng(1)
    x = rng.normal(10, 1, (3, 500))
    usable = np.ones_like(x, bool)
    usable[1, 100:120] = False
    full, mean_full, _ = history_log_tail(x, usable, 200, 50)
    part, mean_part, _ = history_log_tail(x[:, :300], usable[:, :300], 200, 50)
    assert np.array_equal(full[:, :300], part)
    assert np.array_equal(np.isnan(mean_full[:, :300]), np.isnan(mean_part[:, :300]))
    assert (full[:, :50] == 0).all() and np.isnan(mean_full[:, :50]).all()
    # the mean at t is that of the points before t
    assert np.isclose(mean_full[0, 60], x[0, :60].mean())


def test_a_slow_slide_far_from_the_past_weeks_alerts_with_its_reason():
    """The forecast follows a day-long slide step by step (without the long view none of these eight
    machines alerted during it); against its own past the machine at 40 is 20 sd off."""
    caught = []
    for seed in SEEDS:
        v, t, start = _machine(slide=True, seed=seed)
        det = get_detector("auto").detect(v, t)
        hits = np.flatnonzero(det.is_anomaly[0, start:start + 288]) + start
        if not len(hits):
            continue
        caught.append(seed)
        assert det.scores.history is not None and det.scores.history[0, hits].any()
        frame = anomalies_frame(det, metric="temperature")
        frame = frame[pd.DatetimeIndex(frame["time"]) >= t[start]]
        marked = frame[frame["explanation_en"].str.contains("its own level over the past 4 weeks")]
        assert len(marked), frame["explanation_en"].head().tolist()
        row = marked.iloc[0]
        # shown against the past weeks: expected near 85, not the forecast that followed the slide
        assert row["direction"] == "down" and row["expected"] > 80 > row["actual"]
        assert "对照自身过去 4 周的水平" in row["explanation_zh"]
    assert len(caught) >= 5, caught


def test_the_same_machines_without_the_slide_stay_mostly_quiet():
    """The wander of such a machine is itself autocorrelated: a few runs of it pass the run test (two
    machines' alert events with the forecast alone, four with the long view beside it)."""
    events = 0
    for seed in SEEDS:
        v, t, _ = _machine(slide=False, seed=seed)
        flags = get_detector("auto").detect(v, t).is_anomaly[0]
        events += int(flags[0]) + int((flags[1:] & ~flags[:-1]).sum())
    assert events <= 4, events


def test_hourly_and_daily_series_are_judged_by_the_forecast_alone():
    rng = np.random.default_rng(2)
    for freq, n in (("h", 24 * 40), ("D", 120)):
        t = pd.date_range("2024-01-01", periods=n, freq=freq)
        det = get_detector("auto").score(rng.normal(50, 2, n), t)
        assert det.history is None


def test_the_sentence_names_the_long_view():
    kw = dict(title="Temperature", slice_label="", actual=22.0, expected=84.0, lower=70.0, upper=98.0)
    assert sentence(lang="en", history_days=28, **kw).endswith("; judged against its own level over the past 4 weeks")
    assert sentence(lang="zh", history_days=28, **kw).endswith("；对照自身过去 4 周的水平")
    assert "judged against" not in sentence(lang="en", **kw)
