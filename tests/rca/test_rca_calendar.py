"""An incident's per-leaf expectations use the monitor's calendar, as its alert does (rca/service.py → cube.py).

The shop sells by region × channel over a DuckDB file from March to June 2024. Its `office` channel (canteen
orders of companies) sells on working days only: weekends, public holidays and the days around them are quiet,
and make-up workdays (调休) are busy. On 2024-06-10, a Monday and the Dragon Boat Festival, the office channel is
quiet everywhere, as on every holiday before, and North's app orders fall by 80 %: only the app is news."""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar
import numpy as np
import pandas as pd
import pytest

from metricloop.monitors.schemas import MonitorSpec
from metricloop.rca.report import analyse
from metricloop.rca.service import compute

FIRST, LAST = date(2024, 2, 26), date(2024, 6, 10)  # LAST: 端午节, a Monday off
REGIONS = ("East", "North", "South", "West")


def _orders() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    rows = []
    day = FIRST
    while day <= LAST:
        for region in REGIONS:
            for channel, busy, quiet in (("office", 100, 8), ("app", 60, 60), ("web", 40, 40)):
                n = rng.poisson(busy if chinese_calendar.is_workday(day) else quiet)
                if day == LAST and region == "North" and channel == "app":
                    n = rng.poisson(12)
                seconds = rng.integers(0, 86400, size=n)
                rows += [{"order_time": pd.Timestamp(day) + pd.Timedelta(seconds=int(s)), "region": region,
                          "channel": channel} for s in seconds]
        day += timedelta(days=1)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def orders_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rca_holiday_shop") / "orders.parquet"
    _orders().to_parquet(path, index=False)
    return path


@pytest.fixture
def shop(make_ws, orders_file, helpers):
    ws = make_ws()
    metric = {"name": "orders", "title": {"en": "Orders", "zh": "订单量"}, "owner": "ana@example.com",
              "domain": "sales", "source": "shop", "table": "orders", "time_column": "order_time",
              "timezone": "Asia/Shanghai", "measure": {"agg": "count"}, "dimensions": ["region", "channel"],
              "fill": "zero"}
    source = {"name": "shop", "type": "duckdb", "owner": "data@example.com", "tables": {"orders": str(orders_file)}}
    helpers.apply_text(ws, helpers.defs_yaml([source], [metric]))
    return ws


def _monitor(china_holidays="learn") -> MonitorSpec:
    # the calendar is the default one (Chinese holidays, learned from each series' own past), said out loud
    return MonitorSpec.model_validate({"name": "shop_orders", "metric": "orders", "slicing": {"total": True},
                                       "detector": {"detector": "auto", "direction": "down"},
                                       "calendar": {"china_holidays": china_holidays}})


def test_a_leaf_whose_holiday_dip_the_calendar_explains_is_not_a_cause(shop):
    catalog = shop.catalog()
    out = compute(shop, catalog, _monitor(), catalog.metric("orders"), slices=["*"], at=pd.Timestamp(LAST),
                  direction="down", grain="day")
    assert out.report is not None, out.error
    causes = [c["dimensions"] for c in out.report.causes]
    assert causes == [{"region": "North", "channel": "app"}]
    office = out.report.causes  # the office leaves were expected quiet: a holiday, as their past holidays were
    assert all(c["dimensions"].get("channel") != "office" for c in office)


def test_without_the_calendar_the_same_day_blames_the_holiday(shop):
    """What the incident path said before it used the monitor's calendar: the office channel's usual holiday."""
    r = analyse(shop, "orders", at=LAST.isoformat(), keep=[], detector={"detector": "auto", "direction": "down"},
                calendar=None, slices=["*"], direction="down", require_anomaly=False)
    assert {"channel": "office"} in [c["dimensions"] for c in r.causes]


def test_a_monitor_that_turns_holidays_off_gets_leaves_without_them(shop):
    catalog = shop.catalog()
    out = compute(shop, catalog, _monitor(china_holidays=False), catalog.metric("orders"), slices=["*"],
                  at=pd.Timestamp(LAST), direction="down", grain="day")
    assert out.report is not None, out.error
    assert {"channel": "office"} in [c["dimensions"] for c in out.report.causes]
