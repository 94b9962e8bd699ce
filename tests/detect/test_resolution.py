"""A series recorded at a coarse resolution (whole percent) that sits flat for long stretches: its
noise is never taken to be smaller than one step of its recording."""

import numpy as np
import pandas as pd

from metricloop.detect import get_detector
from metricloop.detect.engine import resolution


def test_resolution_is_the_smallest_step_between_values():
    win = np.array([[50.0, 50, 51, 51, np.nan, 53, 50], [2.0, 2, 2, 2, 2, 2, 2], [0.1, 0.35, 0.6, 0.6, 0.1, 0.1, 0.1]])
    assert np.allclose(resolution(win), [1.0, 0.0, 0.25])


def test_a_flat_series_in_whole_units_does_not_alert_on_one_step():
    """5-minute CPU in tenths of a percent, flat at 12.4 % with a move of a step or two now and then: a
    robust scale of the one-step errors is 0 there, so a move of 0.2 % looked like a deviation of 8 sd."""
    t = pd.date_range("2024-01-01", periods=4000, freq="5min")
    rng = np.random.default_rng(3)
    v = np.full(len(t), 12.4)
    blips = rng.choice(np.arange(10, len(t) - 1), 60, replace=False)
    v[blips] += rng.choice([-0.2, -0.1, 0.1, 0.2], len(blips))
    spike = 3500
    v[spike] = 14.0
    det = get_detector("auto").detect(v, t)
    flagged = set(np.flatnonzero(det.is_anomaly[0]))
    assert spike in flagged
    assert flagged - {spike} <= set(), sorted(flagged - {spike})[:20]


def test_written_scores_keep_their_order_near_one(tmp_path):
    """Scores near 1 (1 − 1e-9 and 1 − 1e-12) stay distinct and below 1 in the output file."""
    from metricloop.detect.csvio import write_csv

    f = pd.DataFrame({"timestamp": ["2024-01-01", "2024-01-02", "2024-01-03"], "value": [1.0, 2.0, 3.0],
                      "score": [0.5, 1 - 1e-9, 1 - 1e-12], "is_anomaly": [False, True, True]})
    write_csv(f, tmp_path / "o.csv")
    back = pd.read_csv(tmp_path / "o.csv")["score"].to_numpy()
    assert back[0] == 0.5 and back[1] < back[2] < 1.0


def test_a_smallest_step_that_is_chance_is_no_resolution():
    """Daily sales that move by thousands every day: their smallest step in a warm-up (3,464 on a
    series of 30,000) is chance, not a recording step, and as a floor it made the band 2.5 times too
    wide. A CPU in tenths of a percent keeps its step, and so does a disk idle but for its writes."""
    rng = np.random.default_rng(5)
    week = np.array([1.0, 0.95, 1.05, 1.0, 1.1, 1.6, 1.5])
    sales = np.round(30000 * week[np.arange(56) % 7] * np.exp(rng.normal(0, 0.04, 56)), 2)
    cpu = np.round(20 + np.cumsum(rng.choice([-0.1, 0.0, 0.1], 300)), 1)
    disk = np.zeros(600)
    disk[rng.choice(600, 40, replace=False)] = rng.integers(300_000, 900_000, 40)
    assert resolution(sales[None, :])[0] == 0.0
    assert np.isclose(resolution(cpu[None, :])[0], 0.1)
    steps = np.abs(np.diff(disk))
    assert resolution(disk[None, :])[0] == steps[steps > 0].min()


def test_daily_sales_with_big_daily_moves_get_a_band_as_wide_as_their_noise():
    t = pd.date_range("2024-01-01", periods=400, freq="D")
    rng = np.random.default_rng(8)
    # every day differs from the day before by 15 % or more: the smallest step of a warm-up is thousands
    week = np.array([1.0, 1.25, 0.8, 1.1, 1.4, 0.7, 1.2])[np.asarray(t.day_of_week)]
    v = np.round(30000 * week * np.exp(rng.normal(0, 0.04, len(t))), 2)
    det = get_detector("auto").detect(v, t)
    s = det.scores
    ok = ~s.learning[0]
    z = (v - s.expected[0])[ok] / s.scale[0][ok]
    assert 0.7 < 1.4826 * np.median(np.abs(z - np.median(z))) < 1.4
