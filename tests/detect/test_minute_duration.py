"""Series sampled every minute: one odd reading never alerts alone under the default duration; two
minutes in a row do. A 5-minute average far out still alerts at once (tests/detect/test_resolution.py)."""

import numpy as np
import pandas as pd

from metricloop.detect import DetectorConfig, get_detector
from metricloop.detect.conditions import apply_conditions


def _latency(seed: int = 7) -> tuple[pd.DatetimeIndex, np.ndarray]:
    t = pd.date_range("2025-03-03", periods=1440 * 4, freq="min")
    rng = np.random.default_rng(seed)
    hour = np.asarray(t.hour) + np.asarray(t.minute) / 60
    level = 200 * (1 + 0.2 * np.sin(2 * np.pi * (hour - 8) / 24))
    return t, level * np.exp(rng.normal(0, 0.05, len(t)))


def test_one_odd_minute_does_not_alert_two_in_a_row_do():
    t, v = _latency()
    lone, pair = 1440 * 3 + 300, 1440 * 3 + 900
    v[lone] *= 3.0  # one reading three times the usual: a pause, a scrape that caught a burst
    v[pair:pair + 2] *= 2.0  # two minutes at twice the usual: something is wrong
    det = get_detector("auto").detect(v, t)
    flagged = set(np.flatnonzero(det.is_anomaly[0]))
    assert lone not in flagged
    assert pair + 1 in flagged, "the second minute of the pair raises the alert"
    # one alert event, from the pair on (the run test may carry it a point or two past the pair's end)
    assert min(flagged) == pair + 1 and max(flagged) - min(flagged) + 1 == len(flagged) <= 4, sorted(flagged)
    # a duration you set is taken as written: 1 alerts on the lone reading too
    again = apply_conditions(det.scores, DetectorConfig(min_duration=1))
    assert again.is_anomaly[0, lone]
