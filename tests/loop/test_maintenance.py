"""Which buckets a maintenance window mutes: those it covers for at least half their length. Pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from metricloop.alerting.mutes import Mutes, covers
from metricloop.routing.schemas import MaintenanceSpec

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
NIGHTLY = MaintenanceSpec(name="nightly", daily=[("02:00", "04:00")])


def at(hour: int, minute: int = 0, day: int = 16) -> datetime:
    return datetime(2026, 11, day, hour, minute)


@pytest.mark.parametrize(("hour", "muted"), [(1, False), (2, True), (3, True), (4, False), (23, False)])
def test_hourly_buckets_inside_a_nightly_window_are_muted(hour, muted):
    assert covers(NIGHTLY, at(hour), at(hour) + HOUR) is muted


def test_a_daily_bucket_is_not_muted_by_a_two_hour_daily_window():
    assert not covers(NIGHTLY, at(0), at(0) + DAY)
    # nor by a window past midnight: 22:00-06:00 covers 2 + 6 hours of the day
    assert not covers(MaintenanceSpec(name="night", daily=[("22:00", "06:00")]), at(0), at(0) + DAY)
    assert covers(MaintenanceSpec(name="night", daily=[("22:00", "06:00")]), at(1), at(2))  # the hour after 1 a.m.


def test_a_maintenance_covering_the_whole_day_mutes_the_daily_bucket():
    days = MaintenanceSpec(name="refit", windows=[{"start": "2026-11-15T20:00:00", "end": "2026-11-18T08:00:00"}])
    assert covers(days, at(0), at(0) + DAY)
    assert covers(days, at(0, day=17), at(0, day=17) + DAY)
    assert not covers(days, at(0, day=18), at(0, day=18) + DAY)  # 8 hours of the 18th
    assert not covers(days, at(0, day=14), at(0, day=14) + DAY)


@pytest.mark.parametrize(
    ("windows", "muted"),
    [
        ([("00:00", "12:00")], True),  # exactly half
        ([("00:00", "11:59")], False),
        ([("00:00", "08:00"), ("08:00", "16:00")], True),  # together, 16 hours
        ([("00:00", "10:00"), ("02:00", "11:00")], False),  # 11 hours: the overlap counts once
    ],
)
def test_half_of_the_bucket_is_the_line(windows, muted):
    assert covers(MaintenanceSpec(name="m", daily=windows), at(0), at(0) + DAY) is muted


def test_half_an_hour_mutes_an_hourly_bucket():
    half = MaintenanceSpec(name="m", windows=[{"start": "2026-11-16T02:30:00", "end": "2026-11-16T05:00:00"}])
    assert covers(half, at(2), at(3))
    assert not covers(MaintenanceSpec(name="m", daily=[("02:31", "05:00")]), at(2), at(3))


def test_a_moment_is_muted_inside_a_window():
    assert covers(NIGHTLY, at(2, 30), at(2, 30))
    assert not covers(NIGHTLY, at(4), at(4))  # windows end before their end


def test_a_window_with_an_offset_is_read_in_the_metric_timezone():
    utc = MaintenanceSpec(name="m", windows=[{"start": "2026-11-15T18:00:00+00:00", "end": "2026-11-15T20:00:00Z"}])
    assert covers(utc, at(2), at(3), timezone="Asia/Shanghai")  # 02:00-04:00 in Beijing
    assert not covers(utc, at(18, day=15), at(19, day=15), timezone="Asia/Shanghai")  # not its wall-clock time


def test_mutes_says_which_maintenance_and_why():
    m = MaintenanceSpec(name="bj_refit", matchers=["region=North"], daily=[("02:00", "04:00")], reason="tills")
    mutes = Mutes(maintenance=[m])
    north, east = {"region": "North"}, {"region": "East"}
    assert mutes.mutes(north, at_local=at(2), until_local=at(3)) == "maintenance bj_refit: tills"
    assert mutes.mutes(east, at_local=at(2), until_local=at(3)) == ""
    assert mutes.mutes(north, at_local=at(0), until_local=at(0) + DAY) == ""
