"""Defensive JSON reading for intake: limits, field paths in every error, plain strings out.

Nothing here evaluates alert content: values are only type-checked and kept as strings.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from selfheal.alerts.model import PayloadError

TOP = "(payload)"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one intake payload may contain."""

    max_bytes: int = 1024 * 1024
    max_depth: int = 32
    max_alerts: int = 1000
    max_pairs: int = 256  # labels or annotations per alert
    max_key: int = 256
    max_value: int = 32 * 1024
    max_name: int = 1024


DEFAULT_LIMITS = Limits()
# Timestamps an alert may carry: from the Unix epoch up to (not including) 2200-01-01 UTC.
# Anything outside is refused by name (``alerts[0].startsAt: timestamp out of range``) rather
# than stored: a year-2 start would sort before every real alert and no clock reaches 2200.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_RANGE = "1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z"
_FINGERPRINT = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]" if path and path != TOP else f"[{key}]"
    return f"{path}.{key}" if path and path != TOP else key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


class _Duplicate(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load(payload: Any, limits: Limits, path: str = TOP) -> Any:
    """Bytes/str are size-checked and parsed strictly (no NaN, no duplicate keys); an already
    parsed value is taken as is. Both are depth-checked."""
    if isinstance(payload, bytes | bytearray | memoryview | str):
        size = len(payload.encode("utf-8")) if isinstance(payload, str) else len(payload)
        if size > limits.max_bytes:
            raise PayloadError(f"too large ({size} bytes, limit {limits.max_bytes})", path)
        if not isinstance(payload, str):
            try:
                payload = bytes(payload).decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise PayloadError(f"not UTF-8 (byte {exc.start})", path) from None
        try:
            value = json.loads(
                payload,
                object_pairs_hook=_no_duplicates,
                parse_constant=_reject_constant,
                parse_float=_finite_float,
                parse_int=_bounded_int,
            )
        except _Duplicate as exc:
            raise PayloadError(f"not JSON: duplicate key {str(exc)!r}", path) from None
        except RecursionError:
            raise PayloadError(f"nested deeper than {limits.max_depth} levels", path) from None
        except ValueError as exc:
            raise PayloadError(f"not JSON: {_short(str(exc))}", path) from None
        if not _walk_needed(payload, limits):
            return value
    else:
        value = payload
    check_depth(value, limits, path)
    return value


# A lone surrogate or a NUL can only reach parsed JSON text through an escape (\uD800-\uDFFF,
# \u0000): the parser refuses raw control characters in strings.
_SURROGATE_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


def _walk_needed(text: str, limits: Limits) -> bool:
    """Whether parsed JSON text needs `check_depth`'s walk. The parser already gave JSON
    types with string keys, finite floats and bounded ints; what is left is depth (bounded
    above by the number of brackets), lone surrogates and NULs (only from escapes). Most intake
    payloads pass both cheap tests, and the walk is skipped."""
    brackets = text.count("{") + text.count("[")
    return brackets > limits.max_depth or _SURROGATE_ESCAPE.search(text) is not None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise ValueError("number out of range")
    return value


def _bounded_int(text: str) -> int:
    value = int(text) if len(text) < 100 else None  # int() of 4,300+ digits is refused anyway
    if value is None or value.bit_length() > 256:  # the bound check_depth applies
        raise ValueError("number too large")
    return value


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_json(body: bytes | str, *, max_bytes: int, path: str = TOP) -> Any:
    """The one strict JSON reader for every request body (intake, votes, cancels, root
    causes, SNS envelopes): size-limited, nested at most `Limits.max_depth` deep, no
    duplicate keys, no NaN/Infinity, UTF-8 only. Raises `PayloadError` naming `path`."""
    return load(body, Limits(max_bytes=max_bytes), path)


def check_depth(value: Any, limits: Limits, path: str) -> None:
    """Walk the whole value: nesting depth, JSON types only (an already parsed payload may
    hold anything), string keys, no lone surrogates (they cannot be stored as UTF-8) and no
    NUL characters (PostgreSQL text and jsonb cannot hold them: one would fail the store's
    whole group commit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _text(item, path)
        elif isinstance(item, dict | list):
            if depth > limits.max_depth:
                raise PayloadError(f"nested deeper than {limits.max_depth} levels", path)
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        raise PayloadError("object keys must be strings", path)
                    _text(key, path)
                children = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise PayloadError("NaN and Infinity are not JSON", path)
        elif isinstance(item, int):
            if item.bit_length() > 256:
                raise PayloadError("number too large", path)
        elif item is not None:
            raise PayloadError(f"{type(item).__name__} is not a JSON value", path)


def _text(text: str, path: str) -> None:
    if "\x00" in text:
        raise PayloadError("NUL characters (\\u0000) are not allowed", path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError("not valid Unicode (lone surrogate)", path) from None


def obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"must be an object, not {kind(value)}", path)
    return value


def array(value: Any, path: str, limit: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(f"must be an array, not {kind(value)}", path)
    if limit is not None and len(value) > limit:
        raise PayloadError(f"too many items ({len(value)}, limit {limit})", path)
    return value


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def scalar(value: Any, path: str, limits: Limits) -> str:
    """A string, or a number/boolean coerced to its JSON text; anything else is an error."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and math.isfinite(value):
        text = repr(value)
    else:
        raise PayloadError(f"must be a string, number or boolean, not {kind(value)}", path)
    if len(text) > limits.max_value:
        raise PayloadError(f"too long ({len(text)} characters, limit {limits.max_value})", path)
    return text


def string(
    parent: dict[str, Any],
    key: str,
    path: str,
    limits: Limits,
    *,
    required: bool = False,
    max_len: int | None = None,
) -> str:
    """A string field; missing/null gives "" unless required (then non-empty)."""
    where = join(path, key)
    value = parent.get(key)
    if value is None:
        if required:
            raise PayloadError("missing", where)
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"must be a string, not {kind(value)}", where)
    if required and not value.strip():
        raise PayloadError("must not be empty", where)
    limit = max_len or limits.max_value
    if len(value) > limit:
        raise PayloadError(f"too long ({len(value)} characters, limit {limit})", where)
    return value


def str_map(value: Any, path: str, limits: Limits, *, required: bool = False) -> dict[str, str]:
    """An object of strings (numbers and booleans coerced to str, others rejected)."""
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PayloadError("must be an object of strings", path)
    if len(value) > limits.max_pairs:
        raise PayloadError(f"too many entries ({len(value)}, limit {limits.max_pairs})", path)
    out: dict[str, str] = {}
    for key, item in value.items():
        if not key or len(key) > limits.max_key:
            raise PayloadError(f"keys must be 1 to {limits.max_key} characters", path)
        out[key] = scalar(item, join(path, key), limits)
    return out


def timestamp(value: Any, path: str, *, epoch: bool = False) -> datetime | None:
    """RFC 3339 text (any offset, converted to UTC); null, "" and Go's zero time
    (``0001-01-01T00:00:00Z``) are None. Numbers (seconds since the epoch) only where
    ``epoch`` is set. Either must lie in [`EARLIEST`, `LATEST`), else a `PayloadError`."""
    if value is None or value == "":
        return None
    if epoch and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            if not math.isfinite(value):
                raise ValueError
            parsed = datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            raise PayloadError(f"timestamp out of range ({_RANGE})", path) from None
        return _in_range(parsed, path, repr(value))
    if not isinstance(value, str):
        raise PayloadError(f"must be an RFC 3339 timestamp string, not {kind(value)}", path)
    if len(value) > 64:
        raise PayloadError("not an RFC 3339 timestamp", path)
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError, TypeError):
        raise PayloadError(f"not an RFC 3339 timestamp: {value!r}", path) from None
    offset = parsed.utcoffset()
    if offset is None:
        raise PayloadError(f"timestamp without a time zone: {value!r}", path)
    if not offset and parsed.replace(tzinfo=None) == datetime.min:  # Go's zero: "not set"
        return None
    try:
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise PayloadError(f"timestamp out of range ({_RANGE}): {value!r}", path) from None
    return _in_range(parsed, path, repr(value))


def _in_range(parsed: datetime, path: str, shown: str) -> datetime:
    if not EARLIEST <= parsed < LATEST:
        raise PayloadError(f"timestamp out of range ({_RANGE}): {shown}", path)
    return parsed


def fingerprint(value: Any, path: str) -> str | None:
    """A sender's own fingerprint, if given; None when absent or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _FINGERPRINT.fullmatch(value):
        raise PayloadError("must be 1 to 128 letters, digits or _.:-", path)
    return value
