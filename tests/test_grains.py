"""Step grains (5min, 15min, 2h...) in definitions, monitors' windows and time bucketing; the SQL of
each dialect is checked against DuckDB's and pandas' numbers in test_sources.py and test_query.py."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from pydantic import ValidationError

from metricloop.definitions.schemas import MetricSpec
from metricloop.metrics.timeutil import buckets, floor
from metricloop.monitors.schemas import MonitorSpec
from metricloop.monitors.service import window_for


def _metric(**kw) -> MetricSpec:
    return MetricSpec.model_validate({"name": "m", "title": {"en": "m"}, "owner": "a@example.com", "domain": "d",
                                      "source": "s", "table": "t", "time_column": "ts",
                                      "measure": {"agg": "count"}, **kw})


@pytest.mark.parametrize("given, canonical", [("5min", "5min"), ("15min", "15min"), ("30 minutes", "30min"),
                                              ("60min", "hour"), ("2h", "2h"), ("6h", "6h"), ("day", "day"),
                                              ("1d", "day"), ("7d", "week")])
def test_metrics_and_monitors_accept_step_grains(given, canonical):
    assert _metric(grain=given).grain == canonical
    assert MonitorSpec.model_validate({"name": "x", "metric": "m", "grain": given}).grain == canonical


@pytest.mark.parametrize("bad", ["45min", "7min", "5h", "30d", "fortnight", "0min"])
def test_a_step_that_does_not_divide_an_hour_or_a_day_is_refused_with_the_choices(bad):
    with pytest.raises(ValidationError, match="grain"):
        _metric(grain=bad)


def test_bucket_ranges_and_monitor_windows_count_in_steps():
    assert floor(pd.Timestamp("2024-03-05 13:47:12"), "5min") == pd.Timestamp("2024-03-05 13:45")
    assert floor(pd.Timestamp("2024-03-05 13:47:12"), "6h") == pd.Timestamp("2024-03-05 12:00")
    b = buckets(datetime(2024, 3, 5), datetime(2024, 3, 6), "15min")
    assert len(b) == 96 and b[1] - b[0] == pd.Timedelta("15min")
    mon = MonitorSpec.model_validate({"name": "x", "metric": "m", "grain": "5min", "evaluate": 3,
                                      "schedule": {"cron": "*/5 * * * *"}})
    win = window_for(mon, _metric(grain="5min"), "5min", datetime(2024, 3, 5, 13, 47), None)
    assert win.until == datetime(2024, 3, 5, 13, 45)
    assert win.evaluate_from == datetime(2024, 3, 5, 13, 30)  # three 5-minute buckets
    assert win.until - win.start == pd.Timedelta(days=3)  # the minute class's default history
