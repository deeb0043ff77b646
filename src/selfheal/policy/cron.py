"""A small 5-field cron matcher, compiled once, evaluated in an IANA time zone.

Fields: minute hour day-of-month month day-of-week, each `*`, `N`, `A-B`, `*/S`, `A-B/S` or a
comma list of those; months and weekdays also take names (jan, mon). Day-of-week 0 and 7 are
Sunday. As in Vixie cron, when both day fields are restricted a day matches if either does.

Schedules fire on local wall-clock times. A wall time skipped by a DST change (02:30 on the
spring-forward day) fires at the same instant as the wall time an hour later would on a
normal day (zoneinfo's fold=0 reading); a wall time that occurs twice fires once, on its
first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_MONTHS = {
    name: i
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A schedule that is not a valid 5-field cron expression."""


def _value(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number")
    number = int(text)
    if not lo <= number <= hi:
        raise CronError(f"{field}: {number} is outside {lo}-{hi}")
    return number


def _field(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _value(a, lo, hi, names, field)
            end = _value(b, lo, hi, names, field)
            if start > end:
                raise CronError(f"{field}: range {base!r} runs backwards")
        else:
            start = _value(base, lo, hi, names, field)
            end = hi if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A compiled schedule. `prev_fire`/`next_fire` work on aware datetimes."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday (date.weekday()), unlike cron's 0 = Sunday
    dom_any: bool
    dow_any: bool
    tz: ZoneInfo

    @classmethod
    def parse(cls, expression: str, tz: ZoneInfo | str = "UTC") -> Cron:
        if isinstance(tz, str):
            tz = ZoneInfo(tz)
        text = _MACROS.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
        parsed = [_field(p, lo, hi, n, f) for p, (f, lo, hi, n) in zip(parts, _FIELDS, strict=True)]
        minutes, hours, days, months, dows = parsed
        # cron: 0 and 7 are Sunday; date.weekday(): Monday 0 .. Sunday 6
        weekdays = frozenset((d - 1) % 7 for d in dows)
        return cls(
            expression=expression,
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=days,
            months=months,
            weekdays=weekdays,
            dom_any=parts[2].startswith("*"),
            dow_any=parts[4].startswith("*"),
            tz=tz,
        )

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.weekday() in self.weekdays
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def _at(self, day: date, hour: int, minute: int) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=self.tz).astimezone(UTC)

    def prev_fire(self, when: datetime, horizon: timedelta | None = None) -> datetime | None:
        """The latest fire time <= `when` (UTC), or None if none within `horizon` before it."""
        local = when.astimezone(self.tz)
        earliest = when - (horizon if horizon is not None else timedelta(days=366 * 5))
        day = local.date()
        # Wall time may differ from the UTC instant by the DST offset change: look one hour on.
        first_day = True
        while True:
            if self.day_matches(day):
                limit_hour = local.hour + 1 if first_day else 23
                for hour in reversed(self.hours):
                    if hour > limit_hour:
                        continue
                    for minute in reversed(self.minutes):
                        fire = self._at(day, hour, minute)
                        if fire <= when:
                            return fire if fire >= earliest else None
            first_day = False
            day -= timedelta(days=1)
            # The last fire on `day` is before that day's local midnight + 1 day.
            if datetime.combine(day + timedelta(days=2), time(), tzinfo=self.tz) < earliest:
                return None

    def next_fire(self, when: datetime, horizon: timedelta | None = None) -> datetime | None:
        """The earliest fire time > `when` (UTC), or None if none within `horizon` after it."""
        local = when.astimezone(self.tz)
        latest = when + (horizon if horizon is not None else timedelta(days=366 * 5))
        day = local.date()
        first_day = True
        while True:
            if self.day_matches(day):
                floor_hour = local.hour - 1 if first_day else 0
                for hour in self.hours:
                    if hour < floor_hour:
                        continue
                    for minute in self.minutes:
                        fire = self._at(day, hour, minute)
                        if fire > when:
                            return fire if fire <= latest else None
            first_day = False
            day += timedelta(days=1)
            if datetime.combine(day - timedelta(days=1), time(), tzinfo=self.tz) > latest:
                return None
