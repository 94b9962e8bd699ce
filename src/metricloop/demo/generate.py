"""Deterministic demo data: a Chinese retail chain that also sells online and ships parcels.

``generate(out_dir)`` writes, under ``out_dir/data``:

- ``stores.csv``, ``promotions.csv``, ``holidays.csv``, ``labels.csv`` (ground truth of injected incidents);
- ``orders/``, ``inventory/``, ``visitors/``, ``complaints/`` partitioned by month
  (``orders_YYYY_MM.parquet`` …, snappy).  All timestamps are naive Asia/Shanghai local time.

How the numbers are made
    Expected orders per day × store × channel × hour are a product of factors: store size, the
    region's channel mix, weekday/off-day shape (holiday make-up workdays count as workdays), a
    +12 %/year trend, festival and promotion lifts, the Spring Festival drop, an hour-of-day shape
    and a small lognormal day noise.  Counts are Poisson; each order then gets a category (mix by
    channel, drinks peak in summer), a SKU (Zipf popularity), a quantity and a lognormal amount.
    Everything is vectorised per month; each month and each table has its own random stream derived
    from ``seed``, so the same seed and scale give byte-identical files.

Calendar
    ``holidays.csv`` comes from the ``chinesecalendar`` package: one row per named day (statutory
    off days and make-up workdays); ordinary weekends are not listed.  The Spring Festival is
    located from it; its first statutory off day is taken as the eve.  Years the package does not
    cover get weekends as off days, no holidays and no Spring Festival effect.

Inventory sampling
    Each store tracks a subset of the catalogue in its daily snapshots: about
    ``20 + 40 * sqrt(scale)`` SKUs (all of them when the catalogue is smaller), stratified by
    category and drawn by popularity, so scale 0.1 stays near 1.1 M inventory rows.  A tracked SKU
    at zero stock sells nothing that day (the lost sale is not written as an order).

Delivery times
    ``delivered_at`` is filled for every delivered order, even when it lies after ``end`` (the data
    is as of when the last parcel arrived), so on-time rates of the last days are complete.

Incidents
    Planned relative to ``end`` (the dates in ``_INCIDENTS`` are for the default end 2026-11-20 and
    move with it; one that would land on a holiday, festival or promotion moves back a week at a
    time).  ``labels.csv`` lists one row per incident × affected metric series.  With the default end
    the showcase (last 30 days) is: Dairy Weekend promotion +60 % (Oct 23–25, expected), quality
    complaints ×5 in Chengdu (Oct 27–28), miniapp outage 11:00–17:00 (Oct 29), SH-003 out of Fresh
    (Nov 15–18), ZTO late in South (Nov 17–19) and the North visitors feed missing on Nov 20.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import chinese_calendar
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_END = dt.date(2026, 11, 20)
ORDERS_AT_SCALE_1 = 10_000_000
DAY = np.timedelta64(1, "D")

REGIONS = ("East", "North", "South", "Central", "Southwest")
CHANNELS = ("store", "app", "miniapp", "delivery_platform")
ONLINE = np.array([False, True, True, True])
CATEGORIES = ("Drinks", "Snacks", "Fresh", "Dairy", "Household", "Personal Care")
CARRIERS = ("SF", "JD", "ZTO", "YTO", "EMS")
STATUSES = ("completed", "cancelled", "returned")
COMPLAINT_TYPES = ("late_delivery", "quality", "service", "refund", "other")
WAREHOUSES = tuple(f"WH-{r}-{i}" for r in REGIONS for i in (1, 2))

# code, name, region, province, city, relative size, opened, manager, e-mail name
_STORES = """
SH-001 上海徐汇店 East Shanghai Shanghai 2.6 2015-05-18 王伟 wei.wang
SH-002 上海静安店 East Shanghai Shanghai 2.2 2016-09-01 李芳 fang.li
SH-003 上海陆家嘴旗舰店 East Shanghai Shanghai 9.0 2014-04-26 张娜 na.zhang
SH-004 上海长宁店 East Shanghai Shanghai 1.8 2018-03-10 刘敏 min.liu
SH-005 上海闵行店 East Shanghai Shanghai 1.6 2020-06-18 陈静 jing.chen
NJ-001 南京新街口店 East Jiangsu Nanjing 2.4 2016-12-08 杨磊 lei.yang
NJ-002 南京河西店 East Jiangsu Nanjing 1.3 2021-05-01 黄洋 yang.huang
SU-001 苏州观前店 East Jiangsu Suzhou 1.7 2019-08-16 赵艳 yan.zhao
SU-002 苏州园区店 East Jiangsu Suzhou 1.2 2025-09-26 周勇 yong.zhou
HZ-001 杭州西湖店 East Zhejiang Hangzhou 2.8 2015-10-01 吴军 jun.wu
HZ-002 杭州滨江店 East Zhejiang Hangzhou 1.5 2019-04-20 徐杰 jie.xu
HZ-003 杭州萧山店 East Zhejiang Hangzhou 1.1 2022-07-09 孙娟 juan.sun
NB-001 宁波天一店 East Zhejiang Ningbo 1.3 2020-11-11 马涛 tao.ma
BJ-001 北京国贸旗舰店 North Beijing Beijing 8.0 2014-09-28 朱明 ming.zhu
BJ-002 北京海淀店 North Beijing Beijing 2.3 2016-06-12 胡超 chao.hu
BJ-003 北京西单店 North Beijing Beijing 2.0 2017-01-15 郭秀英 xiuying.guo
BJ-004 北京望京店 North Beijing Beijing 1.6 2021-03-27 何霞 xia.he
TJ-001 天津和平店 North Tianjin Tianjin 1.8 2017-05-20 林平 ping.lin
TJ-002 天津南开店 North Tianjin Tianjin 1.1 2022-10-15 罗刚 gang.luo
QD-001 青岛市南店 North Shandong Qingdao 1.4 2019-07-06 高桂英 guiying.gao
JN-001 济南泉城店 North Shandong Jinan 1.0 2023-04-22 梁婷 ting.liang
GZ-001 广州天河旗舰店 South Guangdong Guangzhou 7.0 2015-01-18 郑鹏 peng.zheng
GZ-002 广州越秀店 South Guangdong Guangzhou 1.9 2017-11-04 谢浩 hao.xie
GZ-003 广州番禺店 South Guangdong Guangzhou 1.2 2021-09-18 宋丽 li.song
SZ-001 深圳南山店 South Guangdong Shenzhen 2.7 2016-08-08 唐强 qiang.tang
SZ-002 深圳福田店 South Guangdong Shenzhen 2.1 2018-12-22 韩晨 chen.han
SZ-003 深圳宝安店 South Guangdong Shenzhen 1.3 2022-01-08 冯欣怡 xinyi.feng
XM-001 厦门思明店 South Fujian Xiamen 1.2 2020-05-30 邓子轩 zixuan.deng
FZ-001 福州鼓楼店 South Fujian Fuzhou 0.9 2023-08-19 曹梓涵 zihan.cao
WH-001 武汉江汉店 Central Hubei Wuhan 2.2 2016-04-16 彭宇航 yuhang.peng
WH-002 武汉武昌店 Central Hubei Wuhan 1.5 2019-10-12 曾思远 siyuan.zeng
WH-003 武汉光谷店 Central Hubei Wuhan 1.2 2022-05-28 肖雨萱 yuxuan.xiao
CS-001 长沙五一店 Central Hunan Changsha 1.9 2017-07-01 田嘉怡 jiayi.tian
CS-002 长沙岳麓店 Central Hunan Changsha 1.0 2023-01-07 董俊杰 junjie.dong
ZZ-001 郑州二七店 Central Henan Zhengzhou 1.3 2020-09-19 潘文博 wenbo.pan
CD-001 成都春熙路旗舰店 Southwest Sichuan Chengdu 6.0 2015-06-06 袁一诺 yinuo.yuan
CD-002 成都高新店 Southwest Sichuan Chengdu 1.7 2018-08-25 蔡浩然 haoran.cai
CD-003 成都武侯店 Southwest Sichuan Chengdu 1.2 2021-12-11 蒋佳琪 jiaqi.jiang
CQ-001 重庆解放碑店 Southwest Chongqing Chongqing 2.0 2017-03-18 余志强 zhiqiang.yu
CQ-002 重庆观音桥店 Southwest Chongqing Chongqing 1.4 2020-01-11 杜晓东 xiaodong.du
KM-001 昆明翠湖店 Southwest Yunnan Kunming 0.9 2025-04-18 叶海燕 haiyan.ye
"""
# Per region: channel mix (store, app, miniapp, delivery_platform) and parcel carrier mix (SF … EMS).
_CHANNEL_MIX = {
    "East": (0.50, 0.17, 0.19, 0.14),
    "North": (0.55, 0.15, 0.18, 0.12),
    "South": (0.52, 0.15, 0.19, 0.14),
    "Central": (0.60, 0.13, 0.17, 0.10),
    "Southwest": (0.58, 0.13, 0.18, 0.11),
}
_CARRIER_MIX = {
    "East": (0.26, 0.20, 0.24, 0.20, 0.10),
    "North": (0.24, 0.30, 0.20, 0.16, 0.10),
    "South": (0.20, 0.15, 0.40, 0.15, 0.10),
    "Central": (0.22, 0.20, 0.25, 0.20, 0.13),
    "Southwest": (0.22, 0.20, 0.24, 0.18, 0.16),
}
_SAME_CITY_CARRIERS = (0.55, 0.45, 0.0, 0.0, 0.0)  # delivery_platform orders go by SF / JD same-city
_PROMISE_HOURS = np.array([24.0, 24.0, 48.0, 48.0, 72.0])
_CONVERSION = np.array([0.16, 0.09, 0.08, 0.12])  # orders per visitor, by channel

# Category mix by channel (rows: CHANNELS), prefixes, catalogue share, unit price median, extra units.
_CATEGORY_MIX = np.array([
    [0.22, 0.17, 0.30, 0.14, 0.10, 0.07],
    [0.16, 0.16, 0.28, 0.14, 0.14, 0.12],
    [0.20, 0.18, 0.27, 0.15, 0.11, 0.09],
    [0.30, 0.16, 0.30, 0.14, 0.06, 0.04],
])
_SKU_PREFIX = ("DRK", "SNK", "FRS", "DRY", "HHD", "PCR")
_CATALOGUE_SHARE = np.array([0.20, 0.22, 0.18, 0.14, 0.14, 0.12])
_PRICE = np.array([6.0, 12.0, 22.0, 14.0, 30.0, 38.0])
_EXTRA_UNITS = np.array([2.2, 1.4, 1.1, 1.4, 0.6, 0.5])
_CHANNEL_BASKET = np.array([1.0, 1.6, 1.4, 1.2])  # online baskets are larger

# Day shape by weekday (Mon..Sun) on workdays and on off days, by channel.
_WORKDAY = np.array([
    [0.96, 0.97, 0.98, 1.00, 1.08, 1.00, 1.00],
    [1.06, 1.02, 1.00, 1.00, 0.97, 1.00, 1.00],
    [1.02, 1.00, 1.00, 1.00, 1.03, 1.00, 1.00],
    [0.97, 0.97, 1.00, 1.00, 1.10, 1.00, 1.00],
])
_OFFDAY = np.array([
    [1.24, 1.24, 1.24, 1.24, 1.24, 1.30, 1.24],
    [1.04, 1.04, 1.04, 1.04, 1.04, 1.05, 1.03],
    [1.10, 1.10, 1.10, 1.10, 1.10, 1.12, 1.08],
    [1.20, 1.20, 1.20, 1.20, 1.20, 1.24, 1.18],
])
_STORE_HOURS = [0] * 8 + [.5, .6, .7, .9, 1, .8, .6, .6, .7, 1, 1.2, 1.1, .8, .5] + [0, 0]
_STORE_HOURS_OFF = [0] * 8 + [.4, .6, .9, 1, 1, 1, 1, 1, 1, 1, 1, .9, .7, .4] + [0, 0]
_APP_HOURS = [.35, .2, .1, .06, .05, .07, .15, .35, .55, .7, .8, .9, 1, .85, .7, .7, .75, .8, .9, 1, 1.15,
              1.2, 1, .65]
_MINI_HOURS = [.3, .16, .08, .05, .04, .06, .15, .4, .6, .75, .9, 1.1, 1.2, 1, .75, .7, .75, .85, .95, 1,
               1.05, 1, .8, .5]
_DELIVERY_HOURS = [.1, .06, .03, .02, .02, .03, .08, .2, .35, .45, .6, 1.3, 1.2, .6, .45, .45, .6, 1, 1.3,
                   1, .6, .5, .35, .2]

_LATE_RATE = 0.008
_INCIDENT_LATE_RATE = 0.40
_MIN_HISTORY_DAYS = 35


@dataclass(frozen=True)
class Promotion:
    name: str
    name_zh: str
    start: dt.date
    end: dt.date  # inclusive
    scope_dimension: str  # "", region, category or channel
    scope_value: str
    expected_lift: float
    kind: str  # promotion | festival
    after_days: int = 0  # days after the end the event still shapes the data (parcels of the last rush)


@dataclass(frozen=True)
class Incident:
    kind: str
    first: dt.date
    days: int = 1
    store: str = ""
    category: str = ""
    carrier: str = ""
    region: str = ""
    city: str = ""
    channel: str = ""
    hours: tuple[int, int] = (0, 24)  # [from, to) on each day, for channel outages
    complaint_type: str = "quality"
    basket_loss: float = 0.15  # stock-outs: share of the store's other sales lost with the category

    @property
    def last(self) -> dt.date:
        return self.first + dt.timedelta(days=self.days - 1)


# Dates are for the default end (2026-11-20) and move with `end`.  The last five are the showcase.
_INCIDENTS = (
    Incident("channel_outage", dt.date(2025, 3, 18), channel="app", hours=(10, 15)),
    Incident("carrier_delay", dt.date(2025, 4, 15), 3, carrier="YTO", region="East"),
    Incident("complaint_surge", dt.date(2025, 5, 20), 2, city="Wuhan", complaint_type="service"),
    Incident("stockout", dt.date(2025, 7, 15), 4, store="BJ-001", category="Drinks", basket_loss=0.25),
    Incident("channel_outage", dt.date(2025, 8, 26), channel="delivery_platform", hours=(17, 22)),
    Incident("complaint_surge", dt.date(2025, 9, 9), 2, city="Guangzhou"),
    Incident("carrier_delay", dt.date(2026, 1, 13), 2, carrier="SF", region="North"),
    Incident("stockout", dt.date(2026, 3, 10), 3, store="GZ-001", category="Fresh"),
    Incident("complaint_surge", dt.date(2026, 10, 27), 2, city="Chengdu"),
    Incident("channel_outage", dt.date(2026, 10, 29), channel="miniapp", hours=(11, 17)),
    Incident("stockout", dt.date(2026, 11, 15), 4, store="SH-003", category="Fresh"),
    Incident("carrier_delay", dt.date(2026, 11, 17), 3, carrier="ZTO", region="South"),
)
# name, name_zh, (month, day) first, days, scope dimension, scope value, lift — repeated every year.
_YEARLY_PROMOTIONS = (
    ("Household Spring Clean", "春季家清节", (3, 20), 3, "category", "Household", 0.5),
    ("Summer Drinks Festival", "夏日饮品节", (7, 1), 7, "category", "Drinks", 0.4),
    ("App Member Days", "App会员日", (9, 19), 2, "channel", "app", 0.5),
)
# The showcase promotion: days before `end`, length, scope, lift.
_SHOWCASE_PROMOTION = ("Dairy Weekend", "乳品周末特惠", 28, 3, "category", "Dairy", 0.6)


@dataclass
class _Stores:
    frame: pd.DataFrame
    code: np.ndarray
    region_idx: np.ndarray
    weight: np.ndarray
    opened: np.ndarray  # datetime64[D]


def _stores() -> _Stores:
    rows = []
    for line in _STORES.strip().splitlines():
        code, name, region, province, city, size, opened, manager, email = line.split()
        rows.append({
            "store": code, "store_name": name, "region": region, "province": province, "city": city,
            "manager": manager, "manager_email": f"{email}@demo.metricloop.dev",
            "opened": dt.date.fromisoformat(opened), "_size": float(size),
        })
    frame = pd.DataFrame(rows)
    weight = frame.pop("_size").to_numpy()
    return _Stores(
        frame=frame,
        code=frame["store"].to_numpy(),
        region_idx=frame["region"].map({r: i for i, r in enumerate(REGIONS)}).to_numpy(),
        weight=weight / weight.sum(),
        opened=frame["opened"].to_numpy(dtype="datetime64[D]"),
    )


@dataclass
class _Calendar:
    start: dt.date
    end: dt.date
    days: np.ndarray  # datetime64[D]
    off: np.ndarray  # bool: not a workday
    weekday: np.ndarray
    holidays: pd.DataFrame
    spring: list[tuple[dt.date, dt.date]]  # Spring Festival statutory off days (first, last)


def _holiday_detail(day: dt.date) -> tuple[bool, str | None, bool] | None:
    try:
        off, name = chinese_calendar.get_holiday_detail(day)
        return bool(off), name, bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # year not covered by the package
        return None


def _calendar(start: dt.date, end: dt.date) -> _Calendar:
    days = np.arange(np.datetime64(start), np.datetime64(end) + DAY, DAY)
    weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday
    off = weekday >= 5
    rows = []
    for i, day in enumerate(days.tolist()):
        detail = _holiday_detail(day)
        if detail is None:
            continue
        is_off, name, workday = detail
        off[i] = not workday
        if name:
            rows.append({"date": day, "name": name, "is_off_day": is_off,
                         "is_makeup_workday": workday and day.weekday() >= 5})
    spring = []
    festival = chinese_calendar.Holiday.spring_festival.value
    for year in range(start.year, end.year + 2):
        span = [d for d in pd.date_range(f"{year}-01-10", f"{year}-03-01").date
                if (detail := _holiday_detail(d)) and detail[0] and detail[1] == festival]
        if span:
            spring.append((min(span), max(span)))
    holidays = pd.DataFrame(rows, columns=["date", "name", "is_off_day", "is_makeup_workday"])
    return _Calendar(start, end, days, off, weekday, holidays, spring)


def _day_index(cal: _Calendar, day: dt.date) -> int:
    return (day - cal.start).days


def _window(cal: _Calendar, first: dt.date, last: dt.date) -> slice:
    return slice(max(0, _day_index(cal, first)), max(0, min(len(cal.days), _day_index(cal, last) + 1)))


@dataclass
class _Effects:
    """Multiplicative day × channel effects, kept apart so promotion lifts can be measured."""

    festival: np.ndarray  # (D, C) 618, Double 11, Spring Festival shopping
    holiday: np.ndarray  # (D, C) the Spring Festival drop
    channel_promo: np.ndarray  # (D, C)
    category_promo: np.ndarray  # (D, K)
    discount: np.ndarray  # (D, C) price multiplier
    late_rate: np.ndarray  # (D,)
    peak_days: list[int]


def _scale_days(cal: _Calendar, target: np.ndarray, first: dt.date, factors: np.ndarray) -> None:
    """Multiply rows of `target` from `first` on by `factors` (one row per day), clipped to the range."""
    i = _day_index(cal, first)
    lo, hi = max(0, i), min(len(cal.days), i + len(factors))
    if lo < hi:
        target[lo:hi] *= factors[lo - i:hi - i]


def _effects(cal: _Calendar) -> tuple[_Effects, list[Promotion]]:
    n = len(cal.days)
    eff = _Effects(np.ones((n, 4)), np.ones((n, 4)), np.ones((n, 4)), np.ones((n, 6)), np.ones((n, 4)),
                   np.full(n, _LATE_RATE), [])
    promos: list[Promotion] = []

    def online_lift(first: dt.date, curve: list[float]) -> None:
        m = np.array(curve)[:, None]  # stores gain a little, parcels a lot, same-city delivery in between
        _scale_days(cal, eff.festival, first, np.hstack([np.full_like(m, 1.05), m, m, 1 + 0.3 * (m - 1)]))
        _scale_days(cal, eff.discount, first, np.tile([1.0, 0.92, 0.92, 0.92], (len(curve), 1)))

    for year in range(cal.start.year, cal.end.year + 1):
        d618, d11 = dt.date(year, 6, 1), dt.date(year, 11, 1)
        online_lift(d618, [1.7, 1.4, 1.4] + [1.25] * 12 + [1.5, 1.5, 2.6])
        online_lift(d11, [1.8] + [1.3] * 8 + [1.6, 3.0])
        for peak in (dt.date(year, 6, 18), dt.date(year, 11, 11)):
            if cal.start <= peak <= cal.end:
                eff.peak_days.append(_day_index(cal, peak))
        eff.late_rate[_window(cal, dt.date(year, 11, 10), dt.date(year, 11, 14))] = 0.015
        eff.late_rate[_window(cal, dt.date(year, 6, 17), dt.date(year, 6, 19))] = 0.012
        # couriers clear the last day's rush over the next days (late_rate above): the events say so
        promos.append(Promotion("618 Shopping Festival", "618年中购物节", d618, dt.date(year, 6, 18),
                                "", "", 0.0, "festival", after_days=3))
        promos.append(Promotion("Double 11", "双十一购物节", d11, dt.date(year, 11, 11), "", "", 0.0, "festival",
                                after_days=3))
        for name, name_zh, (month, day), length, dim, value, lift in _YEARLY_PROMOTIONS:
            first = dt.date(year, month, day)
            promos.append(Promotion(name, name_zh, first, first + dt.timedelta(days=length - 1), dim, value,
                                    lift, "promotion"))

    for hs, he in cal.spring:
        run_up = 1 + np.outer(np.linspace(0.3, 1.0, 7), [0.35, 0.15, 0.15, 0.25])
        _scale_days(cal, eff.festival, hs - dt.timedelta(days=7), run_up)
        pause = _window(cal, hs - dt.timedelta(days=2), hs + dt.timedelta(days=2))
        eff.holiday[pause, 1:3] *= 0.12
        eff.holiday[pause, 3] *= 0.6
        eff.late_rate[pause] = 0.015
        hol = _window(cal, hs, he)
        eff.holiday[hol, 0] *= 0.5
        eff.holiday[_window(cal, hs, hs + dt.timedelta(days=3)), 0] *= 0.6  # many stores close the first days
        eff.holiday[hol, 3] *= 0.7
        eff.holiday[_window(cal, hs + dt.timedelta(days=3), he), 1:3] *= 0.6
        recovery = np.ones((7, 4))
        recovery[:, 0] = np.linspace(0.7, 0.97, 7)
        _scale_days(cal, eff.holiday, he + dt.timedelta(days=1), recovery)
        promos.append(Promotion("Spring Festival shopping", "年货节", hs - dt.timedelta(days=7),
                                hs - dt.timedelta(days=1), "", "", 0.0, "festival"))

    blocked = _blocked_days(cal, promos)
    name, name_zh, before, length, dim, value, lift = _SHOWCASE_PROMOTION
    first = _clear_of(cal.end - dt.timedelta(days=before), length, blocked)
    promos.append(Promotion(name, name_zh, first, first + dt.timedelta(days=length - 1), dim, value, lift,
                            "promotion"))

    promos = [p for p in promos if p.end >= cal.start and p.start <= cal.end]
    for p in promos:
        if p.kind != "promotion":
            continue
        w = _window(cal, p.start, p.end)
        if p.scope_dimension == "category":
            eff.category_promo[w, CATEGORIES.index(p.scope_value)] *= 1 + p.expected_lift
        elif p.scope_dimension == "channel":
            eff.channel_promo[w, CHANNELS.index(p.scope_value)] *= 1 + p.expected_lift
    return eff, sorted(promos, key=lambda p: (p.start, p.name))


def _blocked_days(cal: _Calendar, promos: list[Promotion]) -> set[dt.date]:
    """Days an incident should not fall on, so its effect is not confounded with a known event."""
    blocked: set[dt.date] = set(cal.holidays["date"])
    spans = [(p.start, p.end) for p in promos]
    spans += [(hs - dt.timedelta(days=7), he + dt.timedelta(days=7)) for hs, he in cal.spring]
    spans += [(dt.date(y, 11, 12), dt.date(y, 11, 14)) for y in range(cal.start.year, cal.end.year + 1)]
    for a, b in spans:
        blocked.update(a + dt.timedelta(days=i) for i in range((b - a).days + 1))
    return blocked


def _clear_of(first: dt.date, days: int, blocked: set[dt.date]) -> dt.date:
    while any(first + dt.timedelta(days=i) in blocked for i in range(days)):
        first -= dt.timedelta(days=7)
    return first


def _plan_incidents(cal: _Calendar, promos: list[Promotion]) -> list[Incident]:
    shift = cal.end - DEFAULT_END
    blocked = _blocked_days(cal, promos)
    planned = []
    for inc in _INCIDENTS:
        first = _clear_of(inc.first + shift, inc.days, blocked)
        moved = replace(inc, first=first)
        if (first - cal.start).days >= _MIN_HISTORY_DAYS and moved.last <= cal.end:
            planned.append(moved)
    planned.append(Incident("late_feed", cal.end, region="North"))
    return planned


@dataclass
class _Catalog:
    sku: np.ndarray
    category: np.ndarray  # index into CATEGORIES
    price: np.ndarray
    popularity: np.ndarray  # within its category, sums to 1 per category
    offsets: np.ndarray  # first SKU index of each category (len K + 1)


def _catalog(rng: np.random.Generator, scale: float) -> _Catalog:
    total = int(max(30, min(200, round(60 + 140 * math.sqrt(min(scale, 1.0))))))
    counts = np.maximum(5, np.round(_CATALOGUE_SHARE * total)).astype(int)
    codes, cats, prices, pops = [], [], [], []
    for k, n in enumerate(counts):
        codes += [f"{_SKU_PREFIX[k]}-{i:04d}" for i in range(1, n + 1)]
        cats.append(np.full(n, k))
        prices.append(np.floor(rng.lognormal(math.log(_PRICE[k]), 0.35, n)) + 0.9)
        pop = rng.permutation(1.0 / np.arange(1, n + 1) ** 0.9)
        pops.append(pop / pop.sum())
    return _Catalog(np.array(codes), np.concatenate(cats), np.concatenate(prices), np.concatenate(pops),
                    np.concatenate([[0], np.cumsum(counts)]))


@dataclass
class _Model:
    cal: _Calendar
    stores: _Stores
    catalog: _Catalog
    effects: _Effects
    incidents: list[Incident]
    base: np.ndarray  # (D, S, C) expected orders per day before category effects and incidents
    cat_clean: np.ndarray  # (D, 1, C, K) category weights without incidents
    store_cat: np.ndarray  # (D, S, K) multiplier from stock-outs
    hours: np.ndarray  # (D, C, H) hour-of-day shape, sums to 1
    outage: np.ndarray  # (D, C, H) multiplier from channel outages
    carrier_mix: np.ndarray  # (S, C, 5)


def _hour_shapes(cal: _Calendar, eff: _Effects) -> np.ndarray:
    work = np.array([_STORE_HOURS, _APP_HOURS, _MINI_HOURS, _DELIVERY_HOURS], dtype=float)
    offd = work.copy()
    offd[0] = _STORE_HOURS_OFF
    offd[1:3] = np.roll(work[1:3], 1, axis=1)  # people get up later on days off
    hours = np.where(cal.off[:, None, None], offd[None], work[None])
    for i in eff.peak_days:  # the midnight rush when a festival's peak day opens
        hours[i, 1:3, 0] *= 5.0
        hours[i, 1:3, 1] *= 2.5
    return hours / hours.sum(axis=2, keepdims=True)


def _model(cal: _Calendar, stores: _Stores, catalog: _Catalog, eff: _Effects, incidents: list[Incident],
           scale: float, rng: np.random.Generator) -> _Model:
    n_days, n_stores = len(cal.days), len(stores.code)
    chan_mix = np.array([_CHANNEL_MIX[REGIONS[r]] for r in stores.region_idx])  # (S, C)
    weekly = np.where(cal.off[:, None], _OFFDAY.T[cal.weekday], _WORKDAY.T[cal.weekday])  # (D, C)
    years = (cal.days - cal.days[0]).astype(int) / 365.25
    trend = 1.12 ** years
    age = (cal.days[:, None] - stores.opened[None, :]).astype(int)  # (D, S)
    opening = np.where(age < 0, 0.0, np.clip(0.5 + age / 56, 0.5, 1.0))
    noise = rng.lognormal(0.0, 0.05, (n_days, n_stores, 4)) * rng.lognormal(0.0, 0.03, (n_days, 1, 1))
    day = weekly * eff.festival * eff.holiday * eff.channel_promo
    base = (stores.weight[None, :, None] * chan_mix[None] * day[:, None, :] * trend[:, None, None]
            * opening[:, :, None] * noise)

    doy = np.array([d.timetuple().tm_yday for d in cal.days.tolist()])
    season = np.ones((n_days, 6))
    for k, (amp, peak) in {0: (0.35, 196), 1: (0.06, 30), 2: (0.08, 15), 3: (0.05, 20)}.items():
        season[:, k] = 1 + amp * np.cos(2 * np.pi * (doy - peak) / 365.25)
    cat_clean = (_CATEGORY_MIX[None] * (season * eff.category_promo)[:, None, :])[:, None]  # (D, 1, C, K)
    base *= ORDERS_AT_SCALE_1 * scale * (n_days / 750) / (base * cat_clean.sum(-1)).sum()  # a daily rate

    store_cat = np.ones((n_days, n_stores, 6))
    outage = np.ones((n_days, 4, 24))
    for inc in incidents:
        w = _window(cal, inc.first, inc.last)
        if inc.kind == "stockout":
            s = int(np.flatnonzero(stores.code == inc.store)[0])
            store_cat[w, s, :] = 1 - inc.basket_loss  # some shoppers go elsewhere for everything
            store_cat[w, s, CATEGORIES.index(inc.category)] = 0.0
        elif inc.kind == "channel_outage":
            outage[w, CHANNELS.index(inc.channel), inc.hours[0]:inc.hours[1]] = 0.0

    carrier_mix = np.zeros((n_stores, 4, 5))
    carrier_mix[:, 1:3] = np.array([_CARRIER_MIX[REGIONS[r]] for r in stores.region_idx])[:, None]
    carrier_mix[:, 3] = _SAME_CITY_CARRIERS
    return _Model(cal, stores, catalog, eff, incidents, base, cat_clean, store_cat, _hour_shapes(cal, eff),
                  outage, carrier_mix)


@dataclass
class _Inventory:
    store: np.ndarray  # (P,) store index of each tracked pair
    sku: np.ndarray  # (P,) SKU index
    on_hand: np.ndarray  # (D, P) int32
    column: np.ndarray  # (S, n_sku) pair index or -1 when not tracked


def _inventory(model: _Model, scale: float, rng: np.random.Generator) -> _Inventory:
    cat, stores, cal = model.catalog, model.stores, model.cal
    n_sku, n_stores, n_days = len(cat.sku), len(stores.code), len(cal.days)
    tracked = min(n_sku, round(20 + 40 * math.sqrt(scale)))
    per_cat = np.maximum(2, np.round(_CATEGORY_MIX[0] * tracked)).astype(int)
    pair_store, pair_sku = [], []
    for s in range(n_stores):
        for k in range(6):
            lo, hi = cat.offsets[k], cat.offsets[k + 1]
            pick = rng.choice(np.arange(lo, hi), size=min(per_cat[k], hi - lo), replace=False,
                              p=cat.popularity[lo:hi])
            pair_sku.append(np.sort(pick))
            pair_store.append(np.full(len(pick), s))
    p_store, p_sku = np.concatenate(pair_store), np.concatenate(pair_sku)
    n_pairs = len(p_sku)
    column = np.full((n_stores, n_sku), -1)
    column[p_store, p_sku] = np.arange(n_pairs)

    p_cat = cat.category[p_sku]
    daily_orders = model.base.sum(axis=(0, 2)) / n_days  # (S,)
    units = daily_orders[p_store] * _CATEGORY_MIX[0, p_cat] * cat.popularity[p_sku] * (1 + _EXTRA_UNITS[p_cat])
    cover = rng.uniform(4, 10, n_pairs)
    level = 6 + cover * units
    cycle = np.where(p_cat == 2, 2, rng.choice([3, 4, 7], n_pairs))
    phase = rng.integers(0, 7, n_pairs)
    t = np.arange(n_days)[:, None]
    sawtooth = 1 - 0.75 * ((t + phase) % cycle) / cycle
    on_hand = np.maximum(1, np.round(level * sawtooth * rng.lognormal(0, 0.12, (n_days, n_pairs))))

    # Ordinary stock-outs: a pair empties with a small daily chance and stays empty 1–3 days.
    p_start = np.where(p_cat == 2, 0.013, 0.008) * np.ones((n_days, 1))
    for hs, he in cal.spring:
        p_start[_window(cal, hs - dt.timedelta(days=3), he)] *= 2
    starts = rng.random((n_days, n_pairs)) < p_start
    length = rng.integers(1, 4, (n_days, n_pairs))
    empty = starts.copy()
    for lag in (1, 2):
        empty[lag:] |= starts[:-lag] & (length[:-lag] > lag)
    for inc in model.incidents:
        if inc.kind == "stockout":
            s = int(np.flatnonzero(stores.code == inc.store)[0])
            hit = (p_store == s) & (p_cat == CATEGORIES.index(inc.category))
            empty[_window(cal, inc.first, inc.last), :] |= hit[None, :]
    on_hand[empty] = 0
    return _Inventory(p_store, p_sku, on_hand.astype(np.int32), column)


def _take(labels, codes: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(list(labels), pa.string()).take(pa.array(codes.astype(np.int32), mask=mask))


def _ts(seconds: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(seconds.astype("datetime64[s]").astype("datetime64[us]"), mask=mask)


def _pick(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of `probs` (rows sum to 1)."""
    cum = np.cumsum(probs, axis=1)
    return np.minimum((rng.random((len(probs), 1)) * cum[:, -1:] > cum).sum(axis=1), probs.shape[1] - 1)


def _geo(model: _Model, store_idx: np.ndarray) -> dict[str, pa.Array]:
    f = model.stores.frame
    return {col: _take(f[col].tolist(), store_idx) for col in ("region", "province", "city", "store")}


def _orders(model: _Model, inv: _Inventory, rng: np.random.Generator, d0: int, d1: int,
            first_id: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
    stores, cat, eff = model.stores, model.catalog, model.effects
    cat_w = model.cat_clean[d0:d1] * model.store_cat[d0:d1, :, None, :]  # (Dm, S, C, K)
    cat_sum = cat_w.sum(-1)
    lam = (model.base[d0:d1] * cat_sum)[..., None] * model.hours[d0:d1, None] * model.outage[d0:d1, None]
    counts = rng.poisson(lam).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    d, s, c, h = np.unravel_index(cell, lam.shape)
    k = _pick(rng, (cat_w / np.where(cat_sum > 0, cat_sum, 1)[..., None])[d, s, c])

    u = rng.random(len(k))
    sku = np.empty(len(k), dtype=np.int64)
    for kk in range(6):
        rows = k == kk
        lo, hi = cat.offsets[kk], cat.offsets[kk + 1]
        cum = np.cumsum(cat.popularity[lo:hi])
        sku[rows] = lo + np.minimum(np.searchsorted(cum, u[rows] * cum[-1]), hi - lo - 1)

    day = d + d0
    col = inv.column[s, sku]
    keep = ~((col >= 0) & (inv.on_hand[day, np.maximum(col, 0)] == 0))  # lost sales at empty shelves
    d, s, c, h, k, sku, day = (a[keep] for a in (d, s, c, h, k, sku, day))
    n = len(d)

    day_sec = model.cal.days[d0:d1].astype("datetime64[s]").astype(np.int64)
    order_time = day_sec[d] + h * 3600 + rng.integers(0, 3600, n)
    online = ONLINE[c]
    status = np.where(rng.random(n) < np.where(online, 0.04, 0.02), 1, 0)
    status = np.where((status == 0) & (rng.random(n) < np.where(online, 0.028, 0.013)), 2, status)
    cancelled = status == 1

    primary = rng.random(n) < 0.85
    warehouse = stores.region_idx[s] * 2 + np.where(primary, s % 2, 1 - s % 2)
    carrier = _pick(rng, model.carrier_mix[s, c])  # store rows have no carrier; masked below
    promise = np.where(c == 3, 1.0, _PROMISE_HOURS[carrier]) * 3600
    late_p = eff.late_rate[day].copy()
    for inc in model.incidents:
        if inc.kind == "carrier_delay":
            w = _window(model.cal, inc.first, inc.last)
            hit = ((day >= w.start) & (day < w.stop) & (carrier == CARRIERS.index(inc.carrier))
                   & (stores.region_idx[s] == REGIONS.index(inc.region)))
            late_p[hit] = _INCIDENT_LATE_RATE
    late = online & ~cancelled & (rng.random(n) < late_p)
    frac = np.where(late, 1 + rng.uniform(0.05, 0.5, n), rng.uniform(0.3, 0.98, n))
    promised_at = order_time + promise.astype(np.int64)
    delivered_at = order_time + np.maximum(60, (promise * frac)).astype(np.int64)
    delivered_at = np.where(late, np.maximum(delivered_at, promised_at + 600), delivered_at)

    quantity = (1 + rng.poisson(_EXTRA_UNITS[k] * _CHANNEL_BASKET[c])).astype(np.int32)
    amount = np.round(cat.price[sku] * quantity * rng.lognormal(0, 0.06, n) * eff.discount[day, c], 2)

    order = np.argsort(order_time, kind="stable")
    s, c, k, sku, day = (a[order] for a in (s, c, k, sku, day))
    order_time, status, warehouse, carrier = (a[order] for a in (order_time, status, warehouse, carrier))
    promised_at, delivered_at, late, quantity, amount = (
        a[order] for a in (promised_at, delivered_at, late, quantity, amount))
    online, cancelled = ONLINE[c], status == 1
    order_id = first_id + np.arange(n, dtype=np.int64)

    table = pa.table({
        "order_id": pa.array(order_id, pa.int64()),
        "order_time": _ts(order_time),
        **{key: arr for key, arr in _geo(model, s).items() if key != "store"},
        "store": _take(stores.code, s),
        "channel": _take(CHANNELS, c),
        "category": _take(CATEGORIES, k),
        "sku": _take(cat.sku, sku),
        "amount": pa.array(amount, pa.float64()),
        "quantity": pa.array(quantity, pa.int32()),
        "status": _take(STATUSES, status),
        "warehouse": _take(WAREHOUSES, warehouse, ~online),
        "carrier": _take(CARRIERS, carrier, ~online),
        "promised_at": _ts(promised_at, ~online),
        "delivered_at": _ts(delivered_at, ~online | cancelled),
    })
    facts = {"order_id": order_id, "time": order_time, "store": s, "channel": c, "status": status,
             "late": late, "promised_at": promised_at}
    return table, facts


def _complaints(model: _Model, rng: np.random.Generator, facts: dict[str, np.ndarray], d0: int,
                d1: int) -> pd.DataFrame:
    n = len(facts["order_id"])
    status, late, t = facts["status"], facts["late"], facts["time"]
    hour = 3600
    parts = []

    def add(mask: np.ndarray, created: np.ndarray, types: np.ndarray, with_order: bool = True) -> None:
        idx = np.flatnonzero(mask)
        parts.append(pd.DataFrame({
            "created_at": created[idx], "store": facts["store"][idx], "channel": facts["channel"][idx],
            "type": types[idx], "order_id": facts["order_id"][idx] if with_order else np.full(len(idx), -1),
        }))

    def types(choices: list[int], p: list[float]) -> np.ndarray:
        return rng.choice(choices, n, p=p)

    walk_in = (facts["channel"] == 0) & (rng.random(n) < 0.0003)
    add(walk_in, t + rng.integers(0, 2 * hour, n), types([2, 4], [0.6, 0.4]), with_order=False)
    add((status != 1) & (rng.random(n) < 0.0005), t + rng.integers(hour, 72 * hour, n),
        types([1, 2, 4], [0.5, 0.3, 0.2]))
    add(late & (rng.random(n) < 0.06), facts["promised_at"] + rng.integers(hour // 2, 24 * hour, n),
        np.zeros(n, dtype=int))
    add((status == 2) & (rng.random(n) < 0.025), t + rng.integers(12 * hour, 96 * hour, n),
        types([3, 1], [0.6, 0.4]))
    add((status == 1) & (rng.random(n) < 0.006), t + rng.integers(hour // 2, 24 * hour, n),
        np.full(n, 3))

    city = model.stores.frame["city"].to_numpy()
    day_sec = model.cal.days.astype("datetime64[s]").astype(np.int64)
    for inc in model.incidents:
        if inc.kind != "complaint_surge":
            continue
        in_city = np.flatnonzero(city[facts["store"]] == inc.city)
        city_stores = np.flatnonzero(city == inc.city)
        w = _window(model.cal, inc.first, inc.last)
        for di in range(max(w.start, d0), min(w.stop, d1)):  # a loop over the few surge days
            expected = 0.0015 * model.base[di, city_stores].sum()
            extra = rng.poisson(max(4 * expected, 6))
            created = day_sec[di] + rng.integers(9 * hour, 22 * hour, extra)
            # Tie each complaint to a random order of that city from the 72 hours before it, if any.
            lo = np.searchsorted(t[in_city], created - 72 * hour)
            hi = np.searchsorted(t[in_city], created)
            ok = hi > lo
            pick = in_city[np.minimum(lo + (rng.random(extra) * (hi - lo)).astype(int), len(in_city) - 1)] \
                if len(in_city) else np.zeros(extra, dtype=int)
            fallback = rng.choice(city_stores, extra)
            parts.append(pd.DataFrame({
                "created_at": created,
                "store": np.where(ok, facts["store"][pick], fallback) if len(in_city) else fallback,
                "channel": np.where(ok, facts["channel"][pick], 0) if len(in_city) else np.zeros(extra, int),
                "type": np.full(extra, COMPLAINT_TYPES.index(inc.complaint_type)),
                "order_id": np.where(ok, facts["order_id"][pick], -1) if len(in_city) else np.full(extra, -1),
            }))
    return pd.concat(parts, ignore_index=True)


def _visitors(model: _Model, rng: np.random.Generator, d0: int, d1: int) -> pa.Table:
    clean = model.base[d0:d1] * model.cat_clean[d0:d1].sum(-1)  # (Dm, S, C)
    lam = np.einsum("dsc,dch->dsh", clean / _CONVERSION, model.hours[d0:d1])
    visitors = rng.poisson(lam)
    n_days, n_stores = lam.shape[:2]
    d, s, h = (a.ravel() for a in np.meshgrid(np.arange(n_days), np.arange(n_stores), np.arange(24),
                                              indexing="ij"))
    days = model.cal.days[d0:d1]
    keep = days[d] >= model.stores.opened[s]
    for inc in model.incidents:
        if inc.kind == "late_feed":
            missing = (days[d] >= np.datetime64(inc.first)) & (days[d] <= np.datetime64(inc.last))
            keep &= ~(missing & (model.stores.region_idx[s] == REGIONS.index(inc.region)))
    d, s, h = d[keep], s[keep], h[keep]
    secs = days.astype("datetime64[s]").astype(np.int64)[d] + h * 3600
    geo = _geo(model, s)
    return pa.table({
        "visit_hour": _ts(secs), "store": geo["store"], "region": geo["region"], "province": geo["province"],
        "city": geo["city"], "visitors": pa.array(visitors[d, s, h].astype(np.int32), pa.int32()),
    })


def _inventory_table(model: _Model, inv: _Inventory, d0: int, d1: int) -> pa.Table:
    days = model.cal.days[d0:d1]
    d, p = (a.ravel() for a in np.meshgrid(np.arange(d1 - d0), np.arange(len(inv.sku)), indexing="ij"))
    s = inv.store[p]
    keep = days[d] >= model.stores.opened[s]
    d, p, s = d[keep], p[keep], s[keep]
    on_hand = inv.on_hand[d0:d1][d, p]
    geo = _geo(model, s)
    return pa.table({
        "date": pa.array(days[d], pa.date32()), "store": geo["store"], "region": geo["region"],
        "province": geo["province"], "city": geo["city"],
        "category": _take(CATEGORIES, model.catalog.category[inv.sku[p]]),
        "sku": _take(model.catalog.sku, inv.sku[p]),
        "on_hand": pa.array(on_hand, pa.int32()), "is_stockout": pa.array((on_hand == 0).astype(np.int8)),
    })


def _slice(**dims: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(dims.items()) if v)


def _labels(model: _Model, promos: list[Promotion]) -> pd.DataFrame:
    names = dict(zip(model.stores.code, model.stores.frame["store_name"], strict=True))
    zh_cat = dict(zip(CATEGORIES, ("饮料", "零食", "生鲜", "乳品", "日用百货", "个护"), strict=True))
    zh_chan = {"store": "门店", "app": "App", "miniapp": "小程序", "delivery_platform": "外卖平台"}
    zh_city = {"Chengdu": "成都", "Wuhan": "武汉", "Guangzhou": "广州"}
    zh_region = {"East": "华东", "North": "华北", "South": "华南", "Central": "华中", "Southwest": "西南"}
    events = []  # (start date, kind, anomaly, rows, description, description_zh)
    for inc in model.incidents:
        span = (inc.first, inc.last + dt.timedelta(days=1))
        if inc.kind == "stockout":
            sl = _slice(store=inc.store)
            rows = [("gmv", sl, "day", "down"), ("orders", sl, "day", "down"), ("stockout_rate", sl, "day", "up")]
            text = (f"{inc.store} ({names[inc.store]}) ran out of {inc.category} for {inc.days} days; "
                    "its orders and GMV fell by roughly 40-50%.",
                    f"{names[inc.store]}{zh_cat[inc.category]}断货{inc.days}天，门店订单和GMV下降约四到五成。")
        elif inc.kind == "carrier_delay":
            rows = [("fulfilment_rate", sl, "day", "down")
                    for sl in (_slice(carrier=inc.carrier, region=inc.region), _slice(region=inc.region), "")]
            text = (f"{inc.carrier} delivered late in {inc.region} for {inc.days} days (on-time about 60%), "
                    "pulling the region's and the total fulfilment rate below 98%.",
                    f"{inc.carrier}在{zh_region[inc.region]}连续{inc.days}天配送延误（准时率约60%），"
                    "区域和全国履约率跌破98%。")
        elif inc.kind == "complaint_surge":
            sl = _slice(city=inc.city)
            rows = [("complaints", sl, "day", "up"), ("complaint_rate", sl, "day", "up")]
            text = (f"{inc.complaint_type.capitalize()} complaints in {inc.city} jumped about fivefold "
                    f"for {inc.days} days.",
                    f"{zh_city.get(inc.city, inc.city)}{inc.days}天内"
                    f"{'质量' if inc.complaint_type == 'quality' else '服务'}投诉激增约五倍。")
        elif inc.kind == "channel_outage":
            sl = _slice(channel=inc.channel)
            d = _day_index(model.cal, inc.first)
            ch = CHANNELS.index(inc.channel)
            hs = (dt.datetime.combine(inc.first, dt.time(inc.hours[0])),
                  dt.datetime.combine(inc.first, dt.time(0)) + dt.timedelta(hours=inc.hours[1]))
            rows = [("orders", sl, "hour", "down", hs), ("gmv", sl, "hour", "down", hs)]
            if model.hours[d, ch, inc.hours[0]:inc.hours[1]].sum() > 0.2:
                rows += [("orders", sl, "day", "down"), ("gmv", sl, "day", "down")]
            text = (f"The {inc.channel} channel took almost no orders from {inc.hours[0]:02d}:00 to "
                    f"{inc.hours[1]:02d}:00 (outage).",
                    f"{zh_chan[inc.channel]}渠道在{inc.hours[0]:02d}:00-{inc.hours[1]:02d}:00故障，几乎没有订单。")
        else:  # late_feed
            sl = _slice(region=inc.region)
            rows = [("visitors", sl, "day", "down"), ("conversion_rate", sl, "day", "up")]
            text = (f"The visitors feed for region {inc.region} has not arrived for {inc.first} "
                    "(rows missing): a data-quality problem, not a business anomaly.",
                    f"{zh_region[inc.region]}区域{inc.first}的客流数据未到（数据缺失），属于数据质量问题而非业务异常。")
        events.append((inc.first, inc.kind, inc.kind != "late_feed", span, rows, *text))
    for p in promos:
        if p.kind != "promotion":
            continue
        sl = _slice(**{p.scope_dimension: p.scope_value}) if p.scope_dimension else ""
        rows = [("gmv", sl, "day", "up"), ("orders", sl, "day", "up")]
        text = (f"Planned promotion '{p.name}' lifts {sl or 'sales'} by about {p.expected_lift:.0%} (expected).",
                f"计划内促销“{p.name_zh}”带来约{p.expected_lift:.0%}的增长，属于预期内。")
        events.append((p.start, "promotion", False, (p.start, p.end + dt.timedelta(days=1)), rows, *text))

    out = []
    for n, (_, kind, anomaly, span, rows, text, text_zh) in enumerate(sorted(events, key=lambda e: e[:2]), 1):
        for row in rows:
            metric, sl, grain, direction = row[:4]
            start, stop = row[4] if len(row) > 4 else (dt.datetime.combine(span[0], dt.time()),
                                                       dt.datetime.combine(span[1], dt.time()))
            out.append({"incident_id": f"inc-{n:02d}", "kind": kind, "metric": metric, "slice": sl,
                        "start": start, "end": stop, "grain": grain, "is_anomaly": anomaly,
                        "direction": direction, "description": text, "description_zh": text_zh})
    return pd.DataFrame(out)


def _promotions_frame(model: _Model, promos: list[Promotion]) -> pd.DataFrame:
    rows = []
    eff = model.effects
    clean = model.base * model.cat_clean.sum(-1)  # (D, S, C) with all lifts
    for p in promos:
        lift = p.expected_lift
        if p.kind == "festival":  # measured: orders with the lift over orders without it
            w = _window(model.cal, p.start, p.end)
            with_lift = clean[w].sum()
            lift = round(float(with_lift / (clean[w] / eff.festival[w, None, :]).sum() - 1), 2)
        rows.append({**p.__dict__, "expected_lift": lift})
    frame = pd.DataFrame(rows)
    return frame[["name", "name_zh", "start", "end", "scope_dimension", "scope_value", "expected_lift", "kind",
                  "after_days"]]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == bool:
            frame[col] = frame[col].map({True: "true", False: "false"})
    frame.to_csv(path, index=False, lineterminator="\n", date_format="%Y-%m-%d %H:%M:%S")


def _months(cal: _Calendar) -> list[tuple[int, int, str]]:
    months = cal.days.astype("datetime64[M]")
    edges = np.flatnonzero(np.r_[True, months[1:] != months[:-1], True])
    return [(int(a), int(b), str(months[a]).replace("-", "_")) for a, b in zip(edges[:-1], edges[1:], strict=True)]


_PARTITIONED = ("orders", "inventory", "visitors", "complaints")


def generate(out_dir: Path, *, scale: float = 0.1, seed: int = 42, end: dt.date = DEFAULT_END, days: int = 750,
             progress: Callable[[str, float], None] | None = None) -> dict:
    """Write the demo data set under ``out_dir/data`` and return a summary.

    ``progress(stage, fraction)`` receives the overall fraction done (0..1) and the current stage.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    if days < 2 * _MIN_HISTORY_DAYS:
        raise ValueError(f"days must be at least {2 * _MIN_HISTORY_DAYS}")
    started = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    data = Path(out_dir) / "data"
    for sub in _PARTITIONED:
        (data / sub).mkdir(parents=True, exist_ok=True)
        for old in (data / sub).glob(f"{sub}_*.parquet"):  # a previous run may have covered other months
            old.unlink()

    report("calendar", 0.0)
    cal = _calendar(end - dt.timedelta(days=days - 1), end)
    stores = _stores()
    effects, promos = _effects(cal)
    incidents = _plan_incidents(cal, promos)
    catalog = _catalog(np.random.default_rng([seed, 0]), scale)
    model = _model(cal, stores, catalog, effects, incidents, scale, np.random.default_rng([seed, 1]))
    inv = _inventory(model, scale, np.random.default_rng([seed, 2]))
    report("calendar", 0.05)

    files: list[str] = []
    rows = dict.fromkeys(_PARTITIONED, 0)
    complaints = []
    next_id = 100_000_001
    months = _months(cal)
    for i, (d0, d1, tag) in enumerate(months):
        y, m = map(int, tag.split("_"))
        orders, facts = _orders(model, inv, np.random.default_rng([seed, 3, y, m]), d0, d1, next_id)
        next_id += orders.num_rows
        complaints.append(_complaints(model, np.random.default_rng([seed, 4, y, m]), facts, d0, d1))
        for name, table in (("orders", orders), ("inventory", _inventory_table(model, inv, d0, d1)),
                            ("visitors", _visitors(model, np.random.default_rng([seed, 5, y, m]), d0, d1))):
            path = data / name / f"{name}_{tag}.parquet"
            pq.write_table(table, path, compression="snappy")
            files.append(path.relative_to(out_dir).as_posix())
            rows[name] += table.num_rows
        report(f"orders {tag}", 0.05 + 0.85 * (i + 1) / len(months))

    rows["complaints"] = _write_complaints(model, pd.concat(complaints, ignore_index=True), data, months,
                                           files, out_dir)
    report("reference tables", 0.95)
    tables = {
        "stores": stores.frame, "promotions": _promotions_frame(model, promos), "holidays": cal.holidays,
        "labels": _labels(model, promos),
    }
    for name, frame in tables.items():
        path = data / f"{name}.csv"
        _write_csv(frame, path)
        files.append(path.relative_to(out_dir).as_posix())
        rows[name] = len(frame)
    report("done", 1.0)
    return {
        "start": cal.start.isoformat(), "end": cal.end.isoformat(), "days": days, "scale": scale, "seed": seed,
        "rows": rows, "files": sorted(files), "incidents": sum(1 for i in incidents if i.kind != "late_feed"),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _write_complaints(model: _Model, frame: pd.DataFrame, data: Path, months: list[tuple[int, int, str]],
                      files: list[str], out_dir: Path) -> int:
    end_sec = (model.cal.days[-1] + DAY).astype("datetime64[s]").astype(np.int64)
    frame = frame[frame["created_at"] < end_sec]  # not filed yet
    frame = frame.sort_values(["created_at", "order_id", "store", "type"], kind="stable").reset_index(drop=True)
    frame["complaint_id"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    month_of = frame["created_at"].to_numpy().astype("datetime64[s]").astype("datetime64[M]")
    for _, _, tag in months:
        part = frame[month_of == np.datetime64(tag.replace("_", "-"), "M")]
        s = part["store"].to_numpy()
        order_id = part["order_id"].to_numpy()
        geo = _geo(model, s)
        table = pa.table({
            "complaint_id": pa.array(part["complaint_id"].to_numpy(), pa.int64()),
            "created_at": _ts(part["created_at"].to_numpy()),
            "region": geo["region"], "province": geo["province"], "city": geo["city"], "store": geo["store"],
            "channel": _take(CHANNELS, part["channel"].to_numpy()),
            "type": _take(COMPLAINT_TYPES, part["type"].to_numpy()),
            "order_id": pa.array(order_id, pa.int64(), mask=order_id < 0),
        })
        path = data / "complaints" / f"complaints_{tag}.parquet"
        pq.write_table(table, path, compression="snappy")
        files.append(path.relative_to(out_dir).as_posix())
    return len(frame)
