"""A series' history cut (feedback new_normal): points before it are left out of what the detector learns, so a
level shift stops being flagged once the series is judged from its new level; other series and the caller's arrays
are untouched."""

import numpy as np
import pandas as pd

from metricloop.detect import get_detector


def shifted() -> tuple[np.ndarray, pd.DatetimeIndex]:
    t = pd.date_range("2026-06-01", periods=120, freq="D")
    rng = np.random.default_rng(3)
    base = 1000 + rng.normal(0, 10, (2, 120))
    base[0, 100:] *= 0.6  # series 0 drops 40 % for good on day 100; series 1 does not
    return base, t


def test_a_cut_series_stops_flagging_its_new_level_and_the_others_do_not_change():
    values, t = shifted()
    before = values.copy()
    det = get_detector("auto", direction="down")
    plain = det.detect(values, t, names=["a", "b"], grain="day")
    cut = det.detect(values, t, names=["a", "b"], grain="day", history_from={"a": t[100].to_pydatetime()})
    assert plain.is_anomaly[0, 101:106].all()  # without the cut the old level keeps flagging the new one
    assert not cut.is_anomaly[0, 100:].any()
    assert cut.scores.learning[0, 100]  # it warms up again from the cut
    np.testing.assert_array_equal(cut.is_anomaly[1], plain.is_anomaly[1])
    np.testing.assert_array_equal(values, before)  # the caller's values are not blanked


def test_a_cut_naming_no_series_or_after_the_data_changes_nothing():
    values, t = shifted()
    det = get_detector("auto", direction="down")
    plain = det.detect(values, t, names=["a", "b"], grain="day")
    other = det.detect(values, t, names=["a", "b"], grain="day",
                       history_from={"zzz": t[50].to_pydatetime(), "b": t[0].to_pydatetime()})  # fmt: skip
    np.testing.assert_array_equal(plain.is_anomaly, other.is_anomaly)
