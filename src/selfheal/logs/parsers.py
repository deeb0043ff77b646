"""Parser definitions (JSON, nginx/Apache access, RFC 3164 and RFC 5424 syslog) and parsing.

The definitions live in one data file, ``roles/fluent_bit/vars/parsers.yml``, which the
``fluent_bit`` role renders into Fluent Bit's ``parsers.conf``: what ships logs and what
detects on them read lines the same way. Regexes are written with Onigmo named groups
``(?<name>...)`` and converted here to Python's ``(?P<name>...)``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from selfheal.catalog import roles_dir
from selfheal.errors import ConfigError

DEFINITIONS_KEY = "fluent_bit_parser_definitions"
FORMATS = ("json", "regex")
# JSON records name their time and level in one of these fields, first found wins.
JSON_TIME_KEYS = ("time", "timestamp", "@timestamp", "ts")

# "(?<" opens a named group unless it is a lookbehind "(?<=" / "(?<!"; an escaped "\(" is
# a literal parenthesis.
_ONIG_GROUP = re.compile(r"(?<!\\)\(\?<(?=[A-Za-z_])")
_PY_GROUP = re.compile(r"(?<!\\)\(\?P<(?=[A-Za-z_])")


def to_python_regex(onigmo: str) -> str:
    return _ONIG_GROUP.sub("(?P<", onigmo)


def to_onigmo_regex(python: str) -> str:
    return _PY_GROUP.sub("(?<", python)


def definitions_path() -> Path:
    return roles_dir() / "fluent_bit" / "vars" / "parsers.yml"


@dataclass(frozen=True)
class ParserDef:
    name: str
    format: str
    regex: str | None  # Onigmo syntax, as Fluent Bit reads it
    time_key: str | None
    time_format: str | None
    pattern: re.Pattern | None  # the compiled Python equivalent

    def parse(self, line: str) -> dict[str, Any] | None:
        """The line's fields, or None when it does not match; ``_time`` holds epoch seconds
        when the time field could be read."""
        line = line.rstrip("\r\n")
        if self.format == "json":
            try:
                record = json.loads(line)
            except ValueError:
                return None
            if not isinstance(record, dict):
                return None
            keys = (self.time_key, *JSON_TIME_KEYS) if self.time_key else JSON_TIME_KEYS
            raw = next((record[k] for k in keys if k in record), None)
        else:
            match = self.pattern.match(line) if self.pattern else None
            if not match:
                return None
            record = {k: v for k, v in match.groupdict().items() if v is not None}
            raw = record.get(self.time_key or "time")
        stamp = parse_time(raw, self.time_format) if raw is not None else None
        if stamp is not None:
            record["_time"] = stamp
        return record


def _field(entry: dict, key: str, where: str, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty string", path=f"{where}.{key}")
    return value


def load_definitions(path: str | Path | None = None) -> dict[str, ParserDef]:
    """Parser definitions by name, validated; errors name the field."""
    path = Path(path) if path else definitions_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read parser definitions: {exc}", path=str(path)) from None
    entries = data.get(DEFINITIONS_KEY) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError("must be a list", path=f"{path.name}:{DEFINITIONS_KEY}")
    parsers: dict[str, ParserDef] = {}
    for i, entry in enumerate(entries):
        where = f"{path.name}:{DEFINITIONS_KEY}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError("must be a mapping", path=where)
        name = _field(entry, "name", where)
        fmt = _field(entry, "format", where)
        if fmt not in FORMATS:
            raise ConfigError(f"must be one of {', '.join(FORMATS)}", path=f"{where}.format")
        regex = _field(entry, "regex", where, required=fmt == "regex")
        pattern = None
        if regex:
            try:
                pattern = re.compile(to_python_regex(regex))
            except re.error as exc:
                raise ConfigError(f"invalid regex: {exc}", path=f"{where}.regex") from None
        parsers[name] = ParserDef(
            name=name,
            format=fmt,
            regex=regex,
            time_key=_field(entry, "time_key", where, required=False),
            time_format=_field(entry, "time_format", where, required=False),
            pattern=pattern,
        )
    return parsers


def parse_time(raw: Any, fmt: str | None = None, year: int | None = None) -> float | None:
    """Epoch seconds from a log timestamp: ISO 8601, epoch numbers, or a strptime format
    (``%L`` read as fractions of a second). A time without a year (RFC 3164) takes ``year``,
    by default the current one. Naive times are UTC."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = float(raw)
        return value / 1000.0 if value > 1e11 else value  # milliseconds
    if not isinstance(raw, str) or not raw:
        return None
    return _parse_text_time(raw.strip(), fmt, year or datetime.now(UTC).year)


# Lines of a busy log share their second: strptime is the slow part of parsing, so cache it.
@functools.lru_cache(maxsize=4096)
def _parse_text_time(text: str, fmt: str | None, year: int) -> float | None:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        stamp = None
    if stamp is None and fmt:
        fmt = fmt.replace("%L", "%f")
        if "%Y" not in fmt and "%y" not in fmt:
            # The year goes in before parsing, so that Feb 29 parses in a leap year.
            text, fmt = f"{year} {text}", f"%Y {fmt}"
        try:
            stamp = datetime.strptime(text, fmt)
        except ValueError:
            return None
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def detect_format(line: str, parsers: dict[str, ParserDef]) -> ParserDef | None:
    """The first definition that parses the line (JSON first: it is the cheapest test)."""
    for parser in sorted(parsers.values(), key=lambda p: p.format != "json"):
        if parser.parse(line) is not None:
            return parser
    return None
