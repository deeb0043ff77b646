"""Freeze windows: when a window is open, and when it next opens or closes.

A window is open at instant `t` when a cron fire `s` has `s <= t < s + duration` (the
duration is elapsed time, so a window that starts before a DST change lasts exactly as long
as on any other day), or when `t`'s local date is one of its calendar dates (whole local
days, midnight to midnight, in the window's time zone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from selfheal.policy.cron import Cron

_FULL = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_YEARLY = re.compile(r"^(\d{2})-(\d{2})$")
# How far state_at follows back-to-back openings (duration >= period) to find where the merged
# opening starts and ends; beyond it, start/end are reported as None (unknown).
HORIZON = timedelta(days=35)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class DateSpan:
    """A calendar entry: an inclusive range of dates, fixed (`year` set) or every year."""

    start: tuple[int, int, int] | tuple[int, int]
    end: tuple[int, int, int] | tuple[int, int]
    yearly: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "yearly", len(self.start) == 2)

    def contains(self, day: date) -> bool:
        if not self.yearly:
            return self.start <= (day.year, day.month, day.day) <= self.end
        md = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= md <= self.end
        return md >= self.start or md <= self.end  # wraps the year end: 12-31..01-01

    def next_start(self, after: date) -> date | None:
        """The first day of this entry strictly after `after` (None: never again)."""
        if not self.yearly:
            first = date(*self.start)  # type: ignore[arg-type]
            return first if first > after else None
        month, day = self.start
        for year in range(after.year, after.year + 9):  # 02-29 recurs within 8 years
            try:
                first = date(year, month, day)
            except ValueError:
                continue
            if first > after:
                return first
        return None


def parse_date_span(text: str) -> DateSpan:
    """`YYYY-MM-DD`, `YYYY-MM-DD..YYYY-MM-DD`, `MM-DD` or `MM-DD..MM-DD` (yearly)."""
    first, sep, second = text.strip().partition("..")
    if not sep:
        second = first
    a, b = _date_key(first.strip()), _date_key(second.strip())
    if len(a) != len(b):
        raise ValueError(f"{text!r}: both ends must be YYYY-MM-DD or both MM-DD")
    if len(a) == 3 and a > b:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return DateSpan(a, b)


def _date_key(text: str) -> tuple[int, int, int] | tuple[int, int]:
    if m := _FULL.match(text):
        key = (int(m[1]), int(m[2]), int(m[3]))
        date(*key)  # raises ValueError on 2026-02-30
        return key
    if m := _YEARLY.match(text):
        key2 = (int(m[1]), int(m[2]))
        date(2000, *key2)  # a leap year: 02-29 is allowed
        return key2
    raise ValueError(f"{text!r} is not YYYY-MM-DD or MM-DD")


@dataclass(frozen=True)
class WindowState:
    active: bool
    start: datetime | None = None  # when the current opening began (active only)
    end: datetime | None = None  # when it closes (active) -- None: not within the horizon
    next_open: datetime | None = None  # when it next opens (inactive only)


@dataclass(eq=False)
class Window:
    """A compiled freeze window (see `selfheal.policy.model` for the file format)."""

    name: str
    kind: str  # allow | deny
    tz: ZoneInfo
    cron: Cron | None = None
    duration: timedelta = timedelta(0)
    dates: tuple[DateSpan, ...] = ()
    services: frozenset[str] = frozenset()
    risks: frozenset[str] = frozenset()
    runbooks: frozenset[str] = frozenset()
    environments: frozenset[str] = frozenset()
    match_all: bool = False
    overrun: bool = False
    break_glass: bool = True
    description: str = ""
    _cache: tuple[datetime, datetime, WindowState] | None = field(default=None, repr=False)
    _fast: tuple[datetime, datetime, bool, datetime | None] | None = field(default=None, repr=False)

    # -- scope -----------------------------------------------------------------------------

    def applies(self, service: str | None, risk: str | None, runbook: str | None, env) -> bool:
        tests = []
        if self.services:
            tests.append(service in self.services)
        if self.risks:
            tests.append(risk in self.risks)
        if self.runbooks:
            tests.append(runbook in self.runbooks)
        if self.environments:
            tests.append(env in self.environments)
        if not tests:
            return True  # unscoped: everything
        return all(tests) if self.match_all else any(tests)

    # -- time ------------------------------------------------------------------------------

    def _day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=self.tz).astimezone(UTC)

    def _calendar_hit(self, day: date) -> bool:
        return any(span.contains(day) for span in self.dates)

    def _calendar_state(self, when: datetime) -> tuple[datetime | None, datetime | None] | None:
        """(start, end) of the run of calendar days covering `when`; None: beyond the horizon."""
        day = when.astimezone(self.tz).date()
        if not self._calendar_hit(day):
            return None
        one = timedelta(days=1)
        first: date | None = day
        for _ in range(HORIZON.days):
            if not self._calendar_hit(first - one):  # type: ignore[operator]
                break
            first -= one  # type: ignore[operator]
        else:
            first = None
        last: date | None = day
        for _ in range(HORIZON.days):
            if not self._calendar_hit(last + one):  # type: ignore[operator]
                break
            last += one  # type: ignore[operator]
        else:
            last = None
        return (
            self._day_start(first) if first else None,
            self._day_start(last + one) if last else None,
        )

    def _calendar_next_open(self, when: datetime) -> datetime | None:
        """Start of the next calendar day in any entry after `when`'s local date."""
        day = when.astimezone(self.tz).date()
        # Called when `day` is not a calendar day, so the next one starts some entry.
        starts = [d for d in (span.next_start(day) for span in self.dates) if d is not None]
        return self._day_start(min(starts)) if starts else None

    def _cron_hit(self, when: datetime) -> datetime | None:
        """The fire whose opening covers `when`, if any (no merging)."""
        if self.cron is None or not self.duration:
            return None
        fire = self.cron.prev_fire(when, self.duration)
        if fire is None or when >= fire + self.duration:
            return None
        return fire

    def _cron_state(
        self, when: datetime, with_start: bool = True
    ) -> tuple[datetime | None, datetime | None] | None:
        """(start, end) of the merged opening covering `when`; None: beyond the horizon."""
        fire = self._cron_hit(when)
        if fire is None:
            return None
        assert self.cron is not None
        horizon = when + HORIZON
        # Close: the first instant E with no fire in (E - duration, E]. Each step jumps ahead by
        # up to a duration, so back-to-back openings (duration >= period) cost few steps.
        end: datetime | None = fire + self.duration
        while end is not None:
            latest = self.cron.prev_fire(end, self.duration)
            if latest is None or latest + self.duration <= end:
                break
            end = latest + self.duration if latest + self.duration <= horizon else None
        if not with_start:
            return None, end
        # Open: walk back while an earlier fire's opening reaches this one.
        start: datetime | None = fire
        floor = when - HORIZON
        while start is not None:
            earlier = self.cron.next_fire(start - self.duration - _TICK, self.duration)
            if earlier is None or earlier >= start:
                break
            start = earlier if earlier > floor else None
        return start, end

    def is_open(self, when: datetime) -> bool:
        """Fast path for decisions: is the window open at `when`? (no merging of openings)"""
        fast = self._fast
        if fast is not None and fast[0] <= when < fast[1]:
            return fast[2]
        fire = self._cron_hit(when)
        if fire is not None:
            self._fast = (when, fire + self.duration, True, None)
            return True
        day = when.astimezone(self.tz).date()
        if self.dates and self._calendar_hit(day):
            self._fast = (when, self._day_start(day + timedelta(days=1)), True, None)
            return True
        next_open = self._next_open(when)
        self._fast = (when, next_open or when + timedelta(days=1), False, next_open)
        return False

    def _next_open(self, when: datetime) -> datetime | None:
        candidates = []
        if self.cron is not None and self.duration:
            fire = self.cron.next_fire(when)
            if fire is not None:
                candidates.append(fire)
        if self.dates:
            opening = self._calendar_next_open(when)
            if opening is not None:
                candidates.append(opening)
        return min(candidates) if candidates else None

    def state_at(self, when: datetime) -> WindowState:
        """Open or not at `when`, with when the opening began and ends, or next opens."""
        cache = self._cache
        if cache is not None and cache[0] <= when < cache[1]:
            return cache[2]
        state, valid_until = self._compute(when)
        self._cache = (when, valid_until, state)
        return state

    def _compute(self, when: datetime) -> tuple[WindowState, datetime]:
        if not self.is_open(when):
            fast = self._fast
            next_open = fast[3] if fast and fast[0] <= when < fast[1] else self._next_open(when)
            return WindowState(False, next_open=next_open), next_open or when + timedelta(days=1)
        cron = self._cron_state(when)
        calendar = self._calendar_state(when)
        spans = [x for x in (cron, calendar) if x]
        starts = [x[0] for x in spans]
        start = None if None in starts else min(starts)  # type: ignore[type-var]
        ends = [x[1] for x in spans]
        end = None if None in ends else max(ends)  # type: ignore[type-var]
        # A calendar day and a cron opening may touch: follow the chain to the real end.
        for _ in range(50):
            if end is None:
                break
            more = [
                x[1]
                for x in (self._cron_state(end, with_start=False), self._calendar_state(end))
                if x
            ]
            if not more:
                break
            end = None if None in more or max(more) > when + HORIZON else max(more)  # type: ignore[type-var]
        return WindowState(True, start, end), end or when + timedelta(days=1)
