"""Cron schedules and freeze windows: DST changes, year ends, calendars (with hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfheal.policy.cron import Cron, CronError
from selfheal.policy.windows import HORIZON, Window, parse_date_span

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(tz, *args) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def window(schedule=None, duration=None, tz=NY, dates=()) -> Window:
    return Window(
        name="w",
        kind="deny",
        tz=tz,
        cron=Cron.parse(schedule, tz) if schedule else None,
        duration=duration or timedelta(0),
        dates=tuple(parse_date_span(d) for d in dates),
    )


# -- cron --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
        "1,,2 * * * *",
    ],
)
def test_bad_cron(bad) -> None:
    with pytest.raises(CronError):
        Cron.parse(bad)


def test_cron_fields() -> None:
    cron = Cron.parse("*/15 9-17 * * mon-fri")
    assert cron.minutes == (0, 15, 30, 45)
    assert cron.hours == tuple(range(9, 18))
    assert cron.weekdays == frozenset(range(5))
    assert Cron.parse("0 0 * * 7").weekdays == Cron.parse("0 0 * * 0").weekdays == {6}
    assert Cron.parse("@daily").hours == (0,)


def test_day_of_month_or_day_of_week() -> None:
    cron = Cron.parse("0 0 13 * fri")  # Vixie: the 13th OR any Friday
    assert cron.day_matches(date(2026, 11, 13))  # a Friday the 13th
    assert cron.day_matches(date(2026, 11, 20))  # a Friday
    assert cron.day_matches(date(2026, 10, 13))  # a Tuesday the 13th
    assert not cron.day_matches(date(2026, 11, 19))


def test_prev_and_next_fire_in_a_zone() -> None:
    cron = Cron.parse("0 18 * * fri", NY)
    t = utc(2026, 11, 25, 12)  # Wednesday
    assert cron.prev_fire(t) == local(NY, 2026, 11, 20, 18)
    assert cron.next_fire(t) == local(NY, 2026, 11, 27, 18)


def test_leap_day_schedule() -> None:
    cron = Cron.parse("0 0 29 2 *")
    assert cron.next_fire(utc(2026, 3, 1)) == utc(2028, 2, 29)
    assert cron.prev_fire(utc(2026, 3, 1)) == utc(2024, 2, 29)


# -- DST ----------------------------------------------------------------------------------------


def test_deny_window_across_the_march_dst_change_in_new_york() -> None:
    """01:00-05:00 local every night; on 2026-03-08 clocks jump 02:00 EST -> 03:00 EDT."""
    w = window("0 1 * * *", timedelta(hours=4))
    # the night before: EST (UTC-5): 06:00Z-10:00Z
    assert w.is_open(utc(2026, 3, 7, 6, 0))
    assert not w.is_open(utc(2026, 3, 7, 10, 0))
    # the change night: opens 01:00 EST = 06:00Z, 4 elapsed hours later = 10:00Z = 06:00 EDT
    assert not w.is_open(utc(2026, 3, 8, 5, 59))
    assert w.is_open(utc(2026, 3, 8, 6, 0))
    assert w.is_open(local(NY, 2026, 3, 8, 3, 30))  # a wall time after the jump
    assert w.is_open(utc(2026, 3, 8, 9, 59))
    assert not w.is_open(utc(2026, 3, 8, 10, 0))
    state = w.state_at(utc(2026, 3, 8, 7))
    assert state.start == utc(2026, 3, 8, 6) and state.end == utc(2026, 3, 8, 10)
    # the night after: EDT (UTC-4): 05:00Z-09:00Z
    assert w.is_open(utc(2026, 3, 9, 5, 0))
    assert not w.is_open(utc(2026, 3, 9, 9, 0))


def test_schedule_inside_the_skipped_hour_still_fires_once() -> None:
    w = window("30 2 * * *", timedelta(minutes=30))  # 02:30 does not exist on 2026-03-08
    assert w.is_open(local(NY, 2026, 3, 8, 3, 40))  # fired at 07:30Z (= 03:30 EDT)
    assert not w.is_open(local(NY, 2026, 3, 8, 3, 20))
    fires = [f for f in _fires(w.cron, utc(2026, 3, 7), utc(2026, 3, 10))]
    assert len(fires) == 3


def test_repeated_hour_in_november_fires_once() -> None:
    cron = Cron.parse("30 1 * * *", NY)  # 01:30 happens twice on 2026-11-01
    fires = list(_fires(cron, utc(2026, 10, 31), utc(2026, 11, 3)))
    assert len(fires) == 3
    assert fires[1] == utc(2026, 11, 1, 5, 30)  # the first 01:30 (EDT)


def _fires(cron: Cron, start: datetime, end: datetime):
    t = start
    while (t := cron.next_fire(t)) is not None and t < end:
        yield t


# -- calendars and year ends ------------------------------------------------------------------


def test_calendar_freeze_24_to_26_december() -> None:
    w = window(dates=["2026-12-24..2026-12-26"])
    assert not w.is_open(local(NY, 2026, 12, 23, 23, 59))
    assert w.is_open(local(NY, 2026, 12, 24, 0, 0))
    assert w.is_open(local(NY, 2026, 12, 26, 23, 59))
    assert not w.is_open(local(NY, 2026, 12, 27, 0, 0))
    # in UTC terms the freeze follows New York midnight
    assert not w.is_open(utc(2026, 12, 24, 4, 59))
    assert w.is_open(utc(2026, 12, 24, 5, 0))
    state = w.state_at(utc(2026, 12, 25))
    assert state.start == local(NY, 2026, 12, 24) and state.end == local(NY, 2026, 12, 27)
    assert not w.is_open(local(NY, 2027, 12, 25, 12))  # a dated range does not recur


def test_yearly_calendar_across_the_year_end() -> None:
    w = window(dates=["12-31..01-01"])
    for year in (2026, 2027, 2030):
        assert not w.is_open(local(NY, year, 12, 30, 23, 59))
        assert w.is_open(local(NY, year, 12, 31, 0, 0))
        assert w.is_open(local(NY, year + 1, 1, 1, 23, 59))
        assert not w.is_open(local(NY, year + 1, 1, 2, 0, 0))
    state = w.state_at(local(NY, 2026, 12, 31, 12))
    assert state.end == local(NY, 2027, 1, 2)


def test_cron_window_across_the_year_end() -> None:
    w = window("0 22 31 12 *", timedelta(hours=6), tz=BERLIN)
    assert w.is_open(local(BERLIN, 2026, 12, 31, 22, 0))
    assert w.is_open(local(BERLIN, 2027, 1, 1, 3, 59))
    assert not w.is_open(local(BERLIN, 2027, 1, 1, 4, 0))
    assert w.state_at(local(BERLIN, 2027, 1, 1, 5)).next_open == local(BERLIN, 2027, 12, 31, 22)


def test_next_open_for_a_calendar() -> None:
    w = window(dates=["12-24..12-26"])
    assert w.state_at(utc(2026, 6, 1)).next_open == local(NY, 2026, 12, 24)


def test_bad_date_spans() -> None:
    for bad in ["2026-12-26..2026-12-24", "12-24..2026-12-26", "2026-13-01", "Dec 24"]:
        with pytest.raises(ValueError):
            parse_date_span(bad)
    assert parse_date_span("02-29").contains(date(2028, 2, 29))


# -- property tests ---------------------------------------------------------------------------

ZONES = st.sampled_from(
    [
        "America/New_York",
        "Europe/Berlin",
        "Australia/Sydney",
        "Asia/Kolkata",
        "UTC",
        "America/Sao_Paulo",
        "Pacific/Chatham",
    ]
)
SCHEDULES = st.sampled_from(
    [
        "0 1 * * *",
        "30 2 * * *",
        "0 18 * * fri",
        "*/20 0-3 * * *",
        "0 0 1 * *",
        "15 1 * * 0",
        "0 22 31 12 *",
        "0 0 1 1 *",
        "0,30 1-3 8-14 3,10,11 *",
        "45 23 * * sat",
    ]
)
# Instants around the DST changes of 2026/2027 and the year ends.
INSTANTS = st.one_of(
    st.datetimes(min_value=datetime(2026, 3, 5), max_value=datetime(2026, 4, 10)),
    st.datetimes(min_value=datetime(2026, 10, 20), max_value=datetime(2026, 11, 10)),
    st.datetimes(min_value=datetime(2026, 12, 27), max_value=datetime(2027, 1, 5)),
    st.datetimes(min_value=datetime(2027, 3, 1), max_value=datetime(2027, 4, 10)),
).map(lambda d: d.replace(tzinfo=UTC, second=0, microsecond=0))


def _oracle_fires(cron: Cron, around: datetime, span: timedelta) -> list[datetime]:
    """Every fire near `around`, the slow way: each local day, each hour, each minute."""
    tz = cron.tz
    first = (around - span).astimezone(tz).date() - timedelta(days=2)
    last = (around + span).astimezone(tz).date() + timedelta(days=2)
    fires = set()
    day = first
    while day <= last:
        if cron.day_matches(day):
            for hour in cron.hours:
                for minute in cron.minutes:
                    wall = datetime.combine(day, time(hour, minute), tzinfo=tz)
                    fires.add(wall.astimezone(UTC))
        day += timedelta(days=1)
    return sorted(fires)


@settings(max_examples=300, deadline=None)
@given(zone=ZONES, schedule=SCHEDULES, t=INSTANTS, hours=st.integers(1, 72))
def test_window_open_iff_a_fire_is_within_duration(zone, schedule, t, hours) -> None:
    duration = timedelta(hours=hours)
    w = window(schedule, duration, tz=ZoneInfo(zone))
    fires = _oracle_fires(w.cron, t, duration + timedelta(days=6))
    expected = any(f <= t < f + duration for f in fires)
    assert w.state_at(t).active == expected
    past = [f for f in fires if t - timedelta(days=6) <= f <= t]
    assert w.cron.prev_fire(t, timedelta(days=6)) == (past[-1] if past else None)
    future = [f for f in fires if f > t]
    if future and future[0] < t + timedelta(days=6):
        assert w.cron.next_fire(t) == future[0]


@settings(max_examples=300, deadline=None)
@given(
    zone=ZONES, schedule=SCHEDULES, t=INSTANTS, hours=st.integers(1, 30), step=st.integers(1, 600)
)
def test_state_is_stable_until_its_boundary(zone, schedule, t, hours, step) -> None:
    """The cached state and its boundary agree with a fresh computation later on."""
    w = window(schedule, timedelta(hours=hours), tz=ZoneInfo(zone))
    state = w.state_at(t)
    boundary = state.end if state.active else state.next_open
    later = t + timedelta(minutes=step)
    fresh = window(schedule, timedelta(hours=hours), tz=ZoneInfo(zone))
    if boundary is None or later < boundary:
        assert fresh.state_at(later).active == state.active
    if boundary is not None:
        assert fresh.state_at(boundary).active != state.active
        assert fresh.state_at(boundary - timedelta(seconds=1)).active == state.active
    if state.active and state.start is None:  # back-to-back openings beyond the horizon
        assert fresh.is_open(t - HORIZON)
    elif state.active:
        assert state.start <= t
        probe = window(schedule, timedelta(hours=hours), tz=ZoneInfo(zone))
        assert probe.is_open(state.start)
        assert not probe.is_open(state.start - timedelta(seconds=1))


@settings(max_examples=300, deadline=None)
@given(zone=ZONES, year=st.integers(2000, 2100), minute=st.integers(0, 72 * 60))
def test_yearly_dates_hold_in_every_year_and_zone(zone, year, minute) -> None:
    """`12-24..12-26` and `12-31..01-01` hold exactly on those local days, every year."""
    tz = ZoneInfo(zone)
    w = window(dates=["12-24..12-26", "12-31..01-01"], tz=tz)
    t = datetime(year, 12, 23, tzinfo=tz).astimezone(UTC) + timedelta(minutes=minute * 2)
    day = t.astimezone(tz).date()
    expected = (day.month, day.day) in {(12, 24), (12, 25), (12, 26), (12, 31), (1, 1)}
    assert w.is_open(t) == expected
