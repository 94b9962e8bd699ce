"""Any regular sampling interval: the step is inferred from the data, seasonal spans are counted in
points of it, irregular data is bucketed to it; long-form files; bad input around steps."""

import numpy as np
import pandas as pd
import pytest

from metricloop.detect import get_detector
from metricloop.detect.csvio import detect_csv
from metricloop.detect.prepare import infer_step, parse_grain, prepare_batch, step_name
from metricloop.errors import MetricloopError


@pytest.mark.parametrize("freq, name", [("1min", "minute"), ("5min", "5min"), ("10min", "10min"),
                                        ("15min", "15min"), ("30min", "30min"), ("1h", "hour"), ("2h", "2h"),
                                        ("4h", "4h"), ("6h", "6h"), ("1D", "day"), ("7D", "week"), ("MS", "month")])
def test_step_is_the_most_common_spacing_despite_gaps_duplicates_and_jitter(freq, name):
    t = pd.date_range("2024-01-01", periods=400, freq=freq)
    assert infer_step(t).name == name and infer_step(t).regular
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(400, 300, replace=False))  # a quarter missing: gaps of 2-4 steps
    gappy = t[keep].append(t[keep[:20]]).sort_values()  # and duplicates
    assert infer_step(gappy).name == name
    if freq not in ("MS",):
        step = (t[1] - t[0]).total_seconds()
        jitter = pd.to_timedelta(rng.uniform(-0.05, 0.05, 400) * step, unit="s")
        info = infer_step(t + jitter)
        assert info.name == name and not info.regular


def test_daylight_saving_days_keep_a_daily_or_hourly_step():
    local = pd.date_range("2024-03-01", "2024-11-30", freq="D", tz="Europe/Berlin")
    assert infer_step(local).name == "day"
    hourly = pd.date_range("2024-03-20", "2024-04-10", freq="h", tz="Europe/Berlin").tz_localize(None)
    assert infer_step(hourly).name == "hour"  # local wall time: one 2-hour spacing on the spring day


def test_points_per_day_and_week_follow_the_step():
    t = pd.date_range("2024-01-01", periods=10, freq="5min")
    b = prepare_batch(np.ones(10), t)
    assert b.step == 300 and b.grain == "minute" and b.points_per_day == 288 and b.points_per_week == 2016
    b = prepare_batch(np.ones(10), pd.date_range("2024-01-01", periods=10, freq="30min"))
    assert b.grain == "hour" and b.points_per_day == 48
    assert prepare_batch(np.ones(10), grain="15min").points_per_day == 96
    assert prepare_batch(np.ones(10), grain="hour").step == 3600
    assert parse_grain("2h") == 7200 and step_name(900) == "15min" and step_name(600) == "10min"
    with pytest.raises(MetricloopError, match="unknown grain"):
        parse_grain("fortnightly")


def _daily_cycle(freq, days, seed=0, spike_at=None):
    t = pd.date_range("2024-01-01", periods=int(days * pd.Timedelta("1D") / pd.Timedelta(freq)), freq=freq)
    rng = np.random.default_rng(seed)
    hour = t.hour + t.minute / 60
    v = np.asarray(100 + 60 * np.sin(2 * np.pi * (hour - 6) / 24) + 3 * rng.standard_normal(len(t)))
    if spike_at is not None:
        v[spike_at] += 80
    return t, v


@pytest.mark.parametrize("freq", ["5min", "30min"])
def test_sub_hourly_data_learns_its_daily_cycle_and_stays_quiet(tmp_path, freq):
    """5- and 30-minute data have a daily cycle: the detector follows it and does not raise an alert
    storm on the cycle itself (before, such data was a plain sequence with no daily rhythm)."""
    t, v = _daily_cycle(freq, 21)
    spike = len(t) - len(t) // 5
    v[spike] += 120
    p = tmp_path / "a.csv"
    pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "value": v}).to_csv(p, index=False)
    res = detect_csv(p)
    assert not any("regular spacing" in w or "irregular" in w for w in res.warnings)
    assert res.steps == {"": freq}
    flagged = np.flatnonzero(res.frame["is_anomaly"].to_numpy())
    assert spike in flagged
    assert len(flagged) <= 0.005 * len(t) + 2, flagged
    scores = get_detector("auto").score(v, t)
    assert scores.step == pd.Timedelta(freq).total_seconds()
    per_day = round(86400 / scores.step)
    # the daily cycle is followed: an hour-of-day profile (keyed on the time-of-day slot at 5 and 30
    # minutes) or the day detected as a cycle of its points, not "none"
    assert ("hour" in scores.model[0] or f"slot_of_day:{per_day}" in scores.model[0]
            or f"slot_by_daytype:{per_day}" in scores.model[0]
            or scores.model[0].endswith(f"cycle:{per_day}")), scores.model[0]


def test_irregular_data_is_bucketed_to_the_inferred_step_and_the_warning_names_it(tmp_path):
    rng = np.random.default_rng(2)
    base = pd.date_range("2024-01-01", periods=3000, freq="10min")
    t = base + pd.to_timedelta(rng.integers(-60, 61, len(base)), unit="s")
    p = tmp_path / "j.csv"
    pd.DataFrame({"ts": t.strftime("%Y-%m-%d %H:%M:%S"), "v": 5 + rng.standard_normal(len(t))}).to_csv(p, index=False)
    res = detect_csv(p)
    assert any("irregular" in w and "10min bucket" in w for w in res.warnings), res.warnings
    assert len(res.frame) == len(t) and res.frame["expected"].notna().mean() > 0.8
    assert res.frame["is_anomaly"].sum() <= 0.01 * len(t)


def test_step_that_changes_mid_series_is_named_and_gets_no_alert_storm(tmp_path):
    h = pd.date_range("2024-01-01", periods=24 * 14, freq="h")
    m = pd.date_range(h[-1] + pd.Timedelta("5min"), periods=288 * 4, freq="5min")
    t = h.append(m)
    rng = np.random.default_rng(3)
    v = 50 + rng.standard_normal(len(t))
    p = tmp_path / "c.csv"
    pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M"), "v": v}).to_csv(p, index=False)
    res = detect_csv(p)
    text = " ".join(res.warnings)
    assert "spacing changes" in text and "hour before" in text and "5min after" in text, res.warnings
    assert res.frame["is_anomaly"].sum() <= 0.01 * len(t)


def test_three_points_get_a_documented_result(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("date,v\n2024-01-01,1\n2024-01-02,2\n2024-01-03,300\n")
    res = detect_csv(p)
    assert len(res.frame) == 3 and not res.frame["is_anomaly"].any() and (res.frame["score"] == 0).all()
    assert any("only 3 point(s)" in w for w in res.warnings)


def test_long_form_is_split_per_id_each_with_its_own_step(tmp_path):
    ta, va = _daily_cycle("1h", 21, seed=1)
    tb, vb = _daily_cycle("5min", 6, seed=2)
    vb[-300] += 150
    df = pd.concat([pd.DataFrame({"ts": ta, "host": "a", "load": va}),
                    pd.DataFrame({"ts": tb, "host": "b", "load": vb})]).sample(frac=1, random_state=1)
    p = tmp_path / "long.csv"
    df.to_csv(p, index=False)
    res = detect_csv(p)
    assert res.id_col == "host" and res.steps == {"a": "hour", "b": "5min"} or res.steps == {"b": "5min", "a": "hour"}
    out = res.frame
    assert list(out.columns[:3]) == ["timestamp", "host", "value"] and len(out) == len(df)
    assert out["host"].tolist() == df["host"].tolist()
    b = out[out["host"] == "b"]
    assert b.loc[b["value"] == vb[-300], "is_anomaly"].all()
    assert out["is_anomaly"].sum() <= 0.01 * len(df) + 2
    # named explicitly, and a numeric id works too
    df["host"] = df["host"].map({"a": 1, "b": 2})
    df.to_csv(p, index=False)
    res = detect_csv(p, id_col="host", value_col="load")
    assert set(res.steps) == {"1", "2"}
    with pytest.raises(MetricloopError, match="no column"):
        detect_csv(p, id_col="nope")


def test_mixed_time_zones_are_converted_to_utc_with_a_warning(tmp_path):
    t = pd.date_range("2024-03-25", periods=24 * 20, freq="h", tz="UTC")
    local = t.tz_convert("Europe/Berlin")  # +01:00 and +02:00 offsets around the DST change
    stamps = [x.isoformat() for x in local]
    stamps[5] = t[5].tz_localize(None).isoformat()  # one without an offset
    rng = np.random.default_rng(4)
    p = tmp_path / "tz.csv"
    pd.DataFrame({"timestamp": stamps, "v": 10 + rng.standard_normal(len(t))}).to_csv(p, index=False)
    res = detect_csv(p)
    assert any("UTC" in w for w in res.warnings)
    assert res.steps == {"": "hour"} and not any("irregular" in w for w in res.warnings)
    assert res.frame["timestamp"].tolist() == stamps
    assert res.frame["is_anomaly"].sum() <= 5
