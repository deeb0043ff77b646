"""Reading KPI series: CSV files of ``timestamp,value`` and Prometheus range queries."""

from __future__ import annotations

import csv
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from selfheal.errors import SelfhealError


class SeriesError(SelfhealError):
    """A series could not be read (bad file, bad row, bad answer from Prometheus)."""


def parse_time(text: str) -> float:
    """Epoch seconds from epoch seconds or an ISO 8601 time (naive means UTC)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SeriesError(f"not a time: {text!r}") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def parse_value(text: str) -> float | None:
    """A float; empty, ``NaN`` or ``null`` mean a missing point (None)."""
    text = text.strip()
    if text.lower() in ("", "nan", "null", "none", "na"):
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise SeriesError(f"not a number: {text!r}") from exc
    return None if math.isnan(value) else value


def iter_csv(lines: Iterable[str], source: str = "<csv>") -> Iterator[tuple[float, float | None]]:
    """Rows ``timestamp,value`` (a header line is skipped when its value is not a number)."""
    reader = csv.reader(lines)
    for number, row in enumerate(reader, start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < 2:
            raise SeriesError(f"{source}:{number}: expected timestamp,value")
        if number == 1:
            try:
                parse_value(row[1])
                parse_time(row[0])
            except SeriesError:
                continue  # header
        try:
            yield parse_time(row[0]), parse_value(row[1])
        except SeriesError as exc:
            raise SeriesError(f"{source}:{number}: {exc}") from None


def read_csv(path: str | Path) -> list[tuple[float, float | None]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(iter_csv(handle, str(path)))
    except OSError as exc:
        raise SeriesError(f"cannot read {path}: {exc.strerror or exc}") from exc


def prometheus_range(
    url: str,
    query: str,
    start: float,
    end: float,
    step: str,
    timeout: float = 30.0,
) -> dict[str, tuple[dict[str, str], list[tuple[float, float | None]]]]:
    """Series of a Prometheus range query (``/api/v1/query_range``): key -> (labels, points).

    The key is the series' name and label set, as Prometheus prints it.

    Raises OSError when Prometheus cannot be reached, SeriesError on a bad answer.
    """
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
    full = url.rstrip("/") + "/api/v1/query_range?" + params
    request = urllib.request.Request(full, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        # Prometheus answers a bad query with 400/422 and a JSON error: an input error.
        try:
            answer = json.loads(exc.read())
        except ValueError:
            raise exc from None
        if isinstance(answer, dict) and answer.get("error"):
            raise SeriesError(f"Prometheus query failed: {answer['error']}") from None
        raise
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise SeriesError("Prometheus answered with something that is not JSON") from exc
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else None
        raise SeriesError(f"Prometheus query failed: {error or 'unexpected answer'}")
    data = answer.get("data") or {}
    if data.get("resultType") != "matrix":
        raise SeriesError(f"expected a matrix result, got {data.get('resultType')!r}")
    series: dict[str, tuple[dict[str, str], list[tuple[float, float | None]]]] = {}
    for item in data.get("result") or []:
        labels = item.get("metric") or {}
        name = labels.get("__name__", "")
        rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        key = f"{name}{{{rest}}}" if rest or not name else name
        points = []
        for stamp, text in item.get("values") or []:
            points.append((float(stamp), parse_value(str(text))))
        series[key or query] = ({str(k): str(v) for k, v in labels.items()}, points)
    return series
