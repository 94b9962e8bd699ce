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
