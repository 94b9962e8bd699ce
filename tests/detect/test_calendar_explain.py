"""Calendar behaviours, explanations and event-level scoring."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from metricloop.detect import Calendar, Event, get_detector
from metricloop.detect.calendar import read_events
from metricloop.detect.explain import format_number, sentence
from metricloop.detect.scoring import alert_events, score_events
from metricloop.errors import MetricloopError


def test_chinese_holidays_and_make_up_workdays_come_from_chinesecalendar():
    events, warnings = Calendar(holiday_padding={}).china_events(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    names = {e.key for e in events}
    assert {"Spring Festival", "National Day", "Labour Day", "make-up workday"} <= names
    sf = next(e for e in events if e.key == "Spring Festival")
    assert sf.start.date() == dt.date(2025, 1, 28) and sf.end.date() == dt.date(2025, 2, 5)
    workdays = [e.start.date() for e in events if e.kind == "workday"]
    assert dt.date(2025, 1, 26) in workdays and all(d.weekday() >= 5 for d in workdays)
    assert not warnings
    _, warnings = Calendar().china_events(dt.date(2031, 1, 1), dt.date(2031, 1, 3))
    assert warnings and "2031" in warnings[0]


def _promo_series():
    times = pd.date_range("2024-01-01", periods=500, freq="D")
    rng = np.random.default_rng(2)
    v = 1000 * (1 + 0.02 * rng.standard_normal(500))
    for year in (2024, 2025):
        w = (times >= f"{year}-03-10") & (times < f"{year}-03-13")
        v[w] *= 2.0
    return times, v


def test_event_behaviours_exclude_suppress_compare():
    times, v = _promo_series()
    promo = [Event(name=f"spring sale {y}", start=f"{y}-03-10", end=f"{y}-03-13") for y in (2024, 2025)]
    in25 = (times >= "2025-03-10") & (times < "2025-03-13")
    none = get_detector("auto", direction="both").detect(v, times, calendar=Calendar(china_holidays=False))
    assert none.is_anomaly[0, in25].all()
    sup = [e.model_copy(update={"behaviour": "suppress"}) for e in promo]
    det = get_detector("auto", direction="both").detect(v, times, calendar=Calendar(sup, china_holidays=False))
    assert not det.is_anomaly[0, in25].any() and det.scores.excluded[0, in25].all()
    cmp = Calendar(promo, china_holidays=False)  # compare is the default
    det = get_detector("auto", direction="both").detect(v, times, calendar=cmp)
    assert not det.is_anomaly[0, in25].any()
    assert np.allclose(det.expected[0, in25] / 2000, 1, atol=0.1), "expected = the same event last year"
    v2 = v.copy()
    v2[in25] *= 0.5  # this year the promotion did nothing: compared with last time, that is a drop
    det = get_detector("auto", direction="both").detect(v2, times, calendar=cmp)
    assert det.is_anomaly[0, in25].all()
    exc = [e.model_copy(update={"behaviour": "exclude"}) for e in promo]
    det = get_detector("auto", direction="both").detect(v, times, calendar=Calendar(exc, china_holidays=False))
    assert det.is_anomaly[0, in25].all() and det.scores.excluded[0, in25].all()
    after = det.expected[0, np.flatnonzero(in25)[-1] + 3]
    assert abs(after / 1000 - 1) < 0.05, "event points stay out of the baseline"


def test_scoped_events_touch_only_their_slices(tmp_path):
    p = tmp_path / "promotions.csv"
    p.write_text("name,start,end,scope_dimension,scope_value\nDairy Weekend,2025-03-10,2025-03-12,category,Dairy\n")
    (ev,) = read_events(p)
    assert ev.end == dt.datetime(2025, 3, 13) and ev.scope == {"category": "Dairy"}
    assert ev.applies_to("category=Dairy") and ev.applies_to("") and ev.applies_to("category=Dairy,region=East")
    assert not ev.applies_to("category=Drinks")
    times = pd.date_range("2025-01-01", periods=100, freq="D")
    m = Calendar([ev], china_holidays=False).masks(times, "day", slices=["", "category=Dairy", "category=Drinks"])
    day = times.get_loc(pd.Timestamp("2025-03-11"))
    assert m.exclude[:, day].tolist() == [True, True, False]


def test_number_formats_and_sentences():
    assert format_number(1_210_000, "zh") == "121万" and format_number(1_210_000, "en") == "1.21M"
    assert format_number(3.2e8, "zh") == "3.2亿" and format_number(17_600, "en") == "17.6K"
    assert format_number(97.53, "en", "%") == "97.5%"
    zh = sentence(lang="zh", title="GMV", slice_label="华东区", actual=1.21e6, expected=1.76e6, lower=1.58e6,
                  upper=1.93e6)
    assert zh == "华东区 GMV 121万，比预期 176万 低 31%（正常区间 158万–193万）"
    en = sentence(lang="en", title="GMV", slice_label="region=East", actual=1.21e6, expected=1.76e6, lower=1.58e6,
                  upper=1.93e6)
    assert en == "GMV for region=East was 1.21M, 31% below the expected 1.76M (normal range 1.58M–1.93M)"
    rate = sentence(lang="zh", title="履约率", slice_label="", actual=95.1, expected=98.6, lower=97.9, upper=99.3,
                    unit="%")
    assert "低 3.5 个百分点" in rate


def test_every_flagged_point_explains_itself(daily):
    times, values, _ = daily
    values = values.copy()
    values[0, 200] *= 0.6
    det = get_detector("auto").detect(values[:1], times, names=["region=East"], good_direction="up")
    table = det.anomalies(metric="gmv", title_zh="成交额", title_en="GMV", slice_labels_zh={"region=East": "华东区"})
    row = table[table["time"] == times[200]].iloc[0]
    assert row["direction"] == "down" and row["deviation_bands"] < -1 and row["deviation_pct"] < -0.3
    assert row["lower"] < row["expected"] < row["upper"] and row["detector"].startswith("auto:")
    assert row["explanation_zh"].startswith("华东区 成交额") and "低" in row["explanation_zh"]
    assert row["explanation_en"].startswith("GMV for region=East was")


def test_event_level_scoring():
    anomalies = pd.DataFrame({
        "metric": ["gmv"] * 4,
        "slice": ["region=East", "region=East", "", "region=North"],
        "time": pd.to_datetime(["2025-01-10", "2025-01-11", "2025-01-10", "2025-03-01"]),
    })
    events = alert_events(anomalies)
    assert len(events) == 3
    labels = pd.DataFrame({
        "metric": ["gmv", "gmv"], "slice": ["region=East", "region=South"], "grain": ["day", "day"],
        "start": ["2025-01-10", "2025-02-01"], "end": ["2025-01-12", "2025-02-02"], "is_anomaly": ["true", "true"],
    })
    series = [("gmv", s, "day") for s in ("", "region=East", "region=North", "region=South")]
    s = score_events(events, labels, series=series, months=3)
    assert (s.true_alerts, s.false_alerts) == (2, 1)  # the total is explained by the East incident
    assert (s.detected, s.labels) == (1, 2)
    assert s.precision == 2 / 3 and s.recall == 0.5
    assert abs(s.false_alerts_per_series_per_quarter - 0.25) < 1e-9


def test_a_point_flagged_for_its_run_says_so():
    """A stock-out day inside the one-day range is flagged as the third low day in a row: the
    sentence must say why, not leave a reader with a value inside its own 'normal range'."""
    rng = np.random.default_rng(5)
    times = pd.date_range("2025-01-01", periods=200, freq="D")
    v = 1000 * (1 + 0.08 * rng.standard_normal((1, 200)))
    v[0, 190:193] = 620  # three days 3-4 sd low: none alone is beyond 5 sd
    det = get_detector("auto", direction="down").detect(v, times)
    rows = det.anomalies(metric="gmv", title_en="GMV", title_zh="GMV", unit="CNY")
    run_rows = rows[(rows["actual"] >= rows["lower"])]
    assert len(run_rows) >= 1
    assert "in a row below expected" in run_rows["explanation_en"].iloc[0]
    assert "连续第" in run_rows["explanation_zh"].iloc[0]
    assert not rows[rows["actual"] < rows["lower"]]["explanation_en"].str.contains("in a row").any()


def test_events_can_reach_past_their_dates(tmp_path):
    """A festival's parcels still arrive late for days after it: after_days (and before_days) widen
    an event by whole days; a bad value names the row."""
    p = tmp_path / "events.csv"
    p.write_text("name,start,end,before_days,after_days\nDouble 11,2025-11-01,2025-11-11,1,3\n"
                 "Dairy Weekend,2025-03-10,2025-03-12,,\n")
    ev, plain = read_events(p)
    assert ev.start == dt.datetime(2025, 10, 31) and ev.end == dt.datetime(2025, 11, 15)
    assert plain.end == dt.datetime(2025, 3, 13)
    p.write_text("name,start,end,after_days\nDouble 11,2025-11-01,2025-11-11,three\n")
    with pytest.raises(MetricloopError, match="row 2: after_days must be a whole number"):
        read_events(p)
    p.write_text("name,start,end,after_days\nDouble 11,2025-11-01,2025-11-11,-2\n")
    with pytest.raises(MetricloopError, match="cannot be negative"):
        read_events(p)
