"""An evaluator of Argo CD sync windows, written apart from the policy engine on purpose: the
tests render windows from a policy, evaluate them here and compare with the engine's own
decision, so the two share no code that could be wrong the same way.

Semantics (Argo CD's, with the start included): a window is active at `t` when a fire time
`s` of its cron schedule, read as local wall-clock time in `timeZone`, has
`s <= t < s + duration` (elapsed time). For an application, syncs are denied when an active
deny window names it, or when allow windows name it and none of them is active.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

_NAMES = {
    **{
        m: i
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
        )
    },
    **{d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_GO_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _num(text: str) -> int:
    return _NAMES[text.lower()] if text.lower() in _NAMES else int(text)


def _cron_field(text: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            x, y = rng.split("-")
            a, b = _num(x), _num(y)
        else:
            a = _num(rng)
            b = hi if step else a
        values.update(range(a, b + 1, int(step or 1)))
    return values


def parse_go_duration(text: str) -> timedelta:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return timedelta(seconds=sum(float(n) * _GO_UNIT[u] for n, u in parts))


@dataclass(frozen=True)
class SyncWindow:
    kind: str
    schedule: str
    duration: timedelta
    tz: ZoneInfo
    applications: tuple[str, ...]

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SyncWindow:
        return cls(
            kind=spec["kind"],
            schedule=spec["schedule"],
            duration=parse_go_duration(spec["duration"]),
            tz=ZoneInfo(spec.get("timeZone") or "UTC"),
            applications=tuple(spec.get("applications", ())),
        )

    def _fields(self) -> list[set[int]]:
        parts = self.schedule.split()
        return [_cron_field(p, lo, hi) for p, (lo, hi) in zip(parts, _BOUNDS, strict=True)]

    def _day_ok(self, day: date, fields: list[set[int]]) -> bool:
        _, _, dom, months, dows = fields
        parts = self.schedule.split()
        if day.month not in months:
            return False
        dom_hit = day.day in dom
        dow_hit = (day.isoweekday() % 7) in {d % 7 for d in dows}
        if parts[2] == "*" or parts[4] == "*":
            return dom_hit and dow_hit
        return dom_hit or dow_hit

    def fires_covering(self, when: datetime) -> list[datetime]:
        """The fire times whose opening covers `when`."""
        fields = self._fields()
        minutes, hours = sorted(fields[0]), sorted(fields[1])
        first = (when - self.duration).astimezone(self.tz).date() - timedelta(days=1)
        last = when.astimezone(self.tz).date()
        found = []
        day = first
        while day <= last:
            if self._day_ok(day, fields):
                for hour in hours:
                    for minute in minutes:
                        local = datetime.combine(day, time(hour, minute), tzinfo=self.tz)
                        start = local.astimezone(UTC)
                        if start <= when < start + self.duration:
                            found.append(start)
            day += timedelta(days=1)
        return found

    def active(self, when: datetime) -> bool:
        return bool(self.fires_covering(when))


def denied(windows: Iterable[SyncWindow], application: str, when: datetime) -> bool:
    """Whether Argo CD denies syncing `application` at `when`."""
    mine = [w for w in windows if application in w.applications]
    if any(w.kind == "deny" and w.active(when) for w in mine):
        return True
    allows = [w for w in mine if w.kind == "allow"]
    return bool(allows) and not any(w.active(when) for w in allows)
