"""Log-rate anomaly: error lines per minute, scored by the KPI detector against its baseline.

What counts as an error line, by format:

- syslog: severity emerg, alert, crit or err (``PRI % 8 <= 3``); a line without PRI (files
  written by rsyslog's default template) counts when its message names one of those words;
- access logs (nginx, Apache): status 500 or above;
- JSON: a ``level`` (or ``severity``, ``log.level``) of error, critical, alert, emergency or
  fatal (case-insensitive).

Minutes without error lines count 0: silence is part of the baseline.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from selfheal.baseline.detector import Detection, DetectorConfig, KpiDetector

ERROR_LEVELS = frozenset(
    {"error", "err", "critical", "crit", "alert", "emergency", "emerg", "fatal", "panic"}
)
_SYSLOG_ERROR_WORDS = re.compile(
    r"\b(?:error|err|crit(?:ical)?|alert|emerg(?:ency)?|fatal|panic)\b", re.I
)
JSON_LEVEL_KEYS = ("level", "severity", "log.level", "lvl")
MINUTE = 60
# Per-minute series reach a usable baseline sooner than the detector's 5-minute default.
DEFAULT_WARMUP = 60


def is_error(record: dict, fmt: str) -> bool:
    if fmt == "json":
        level = next((record[k] for k in JSON_LEVEL_KEYS if k in record), None)
        if isinstance(level, dict):  # {"log": {"level": ...}} is flattened by some shippers
            level = None
        return isinstance(level, str) and level.strip().lower() in ERROR_LEVELS
    if fmt.startswith("syslog"):
        pri = record.get("pri")
        if pri is not None:
            return int(pri) % 8 <= 3
        return bool(_SYSLOG_ERROR_WORDS.search(record.get("message", "")))
    status = record.get("status")
    try:
        return int(status) >= 500
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class RateSummary:
    lines: int
    parsed: int
    errors: int
    untimed: int  # parsed lines whose time could not be read (not counted in the series)


def error_rate_series(
    records: Iterable[tuple[dict, str]],
) -> tuple[list[tuple[float, float]], RateSummary]:
    """``(minute start, error lines)`` for every minute from the first to the last timed
    line, zero-filled; ``records`` are ``(record or None, format)`` pairs."""
    per_minute: Counter[int] = Counter()
    first = last = None
    lines = parsed = errors = untimed = 0
    for record, fmt in records:
        lines += 1
        if record is None:
            continue
        parsed += 1
        stamp = record.get("_time")
        if stamp is None or not math.isfinite(stamp):
            untimed += 1
            continue
        minute = int(stamp // MINUTE) * MINUTE
        first = minute if first is None else min(first, minute)
        last = minute if last is None else max(last, minute)
        if is_error(record, fmt):
            errors += 1
            per_minute[minute] += 1
    series: list[tuple[float, float]] = []
    if first is not None:
        series = [(float(m), float(per_minute[m])) for m in range(first, last + MINUTE, MINUTE)]
    return series, RateSummary(lines, parsed, errors, untimed)


def score_series(
    series: list[tuple[float, float]],
    name: str = "error lines per minute",
    warmup: int = DEFAULT_WARMUP,
    threshold: float | None = None,
) -> list[Detection]:
    """Every minute scored against the baseline of the minutes before it (direction up: only
    more errors than usual is a degradation)."""
    overrides: dict = {"direction": "up", "warmup": warmup}
    if threshold is not None:
        overrides["alarm"] = threshold
    detector = KpiDetector(DetectorConfig(**overrides), name=name, kind="error_rate")
    return [detector.step(t, value) for t, value in series]
