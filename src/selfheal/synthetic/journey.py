"""Journey definitions (YAML), validated; every error names the field.

```yaml
name: shop
base_url: http://127.0.0.1:8080    # relative step URLs are joined to it
timeout: 5s                        # default per-step timeout
variables: {user: alice}           # usable as ${user}
steps:
  - name: login
    method: POST
    url: /login
    json: {user: "${user}", password: secret}
    extract:
      token: {json: $.token}       # or {regex: 'id=(\\w+)'} (group 1, else the match)
    expect:
      status: [200]                # one code or a list
      body_regex: '"ok": *true'
      json: {$.ok: true}           # path -> expected value
      max_latency_ms: 500
    timeout: 2s
    retries: 0                     # extra attempts when the step fails (default none)
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfheal.errors import ConfigError

from .jsonpath import compile_path
from .template import names_in

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
STEP_KEYS = {
    "name",
    "method",
    "url",
    "headers",
    "body",
    "json",
    "extract",
    "expect",
    "timeout",
    "retries",
}
EXPECT_KEYS = {"status", "body_regex", "json", "max_latency_ms"}
JOURNEY_KEYS = {"name", "base_url", "timeout", "variables", "steps"}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from ``30s``, ``500ms``, ``2m``, ``1h`` or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
        if not match:
            raise ConfigError("must be a duration such as 500ms, 30s, 2m", path=where)
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError("must be positive", path=where)
    return seconds


@dataclass(frozen=True)
class Extraction:
    name: str
    kind: str  # "json" or "regex"
    source: str
    json_path: tuple = ()
    regex: re.Pattern | None = None


@dataclass(frozen=True)
class Expectation:
    status: frozenset[int] = frozenset()
    body_regex: re.Pattern | None = None
    json: tuple[tuple[str, tuple, Any], ...] = ()  # (path text, compiled path, expected)
    max_latency_ms: float | None = None


@dataclass(frozen=True)
class Step:
    name: str
    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    json: Any
    extract: tuple[Extraction, ...]
    expect: Expectation
    timeout: float
    retries: int


@dataclass(frozen=True)
class Journey:
    name: str
    steps: tuple[Step, ...]
    base_url: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    source: str = ""


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("must be a mapping", path=where)
    return value


def _unknown(data: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(map(str, data)) - allowed)
    if extra:
        raise ConfigError(f"unknown key(s) {', '.join(extra)}", path=where)


def _string(data: dict, key: str, where: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty string", path=f"{where}.{key}")
    return value


def _regex(text: Any, where: str) -> re.Pattern:
    if not isinstance(text, str) or not text:
        raise ConfigError("must be a non-empty regex string", path=where)
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigError(f"invalid regex: {exc}", path=where) from None


def _extraction(name: Any, spec: Any, where: str) -> Extraction:
    if not isinstance(name, str) or not _VAR.match(name):
        raise ConfigError("variable names are letters, digits and _", path=where)
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("json", "regex"):
        raise ConfigError("must be {json: PATH} or {regex: PATTERN}", path=where)
    kind, source = next(iter(spec.items()))
    if kind == "json":
        if not isinstance(source, str) or not source:
            raise ConfigError("must be a JSON path string", path=f"{where}.json")
        return Extraction(name, kind, source, json_path=compile_path(source, f"{where}.json"))
    return Extraction(name, kind, str(source), regex=_regex(source, f"{where}.regex"))


def _expectation(data: Any, where: str) -> Expectation:
    data = _mapping(data, where)
    _unknown(data, EXPECT_KEYS, where)
    status = data.get("status", [])
    codes = status if isinstance(status, list) else [status]
    if not all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
        raise ConfigError("must be an HTTP status or a list of them", path=f"{where}.status")
    body = data.get("body_regex")
    json_checks = tuple(
        (str(path), compile_path(str(path), f"{where}.json.{path}"), expected)
        for path, expected in _mapping(data.get("json"), f"{where}.json").items()
    )
    latency = data.get("max_latency_ms")
    if latency is not None and (
        not isinstance(latency, int | float) or isinstance(latency, bool) or latency <= 0
    ):
        raise ConfigError("must be a positive number", path=f"{where}.max_latency_ms")
    return Expectation(
        status=frozenset(codes),
        body_regex=_regex(body, f"{where}.body_regex") if body is not None else None,
        json=json_checks,
        max_latency_ms=float(latency) if latency is not None else None,
    )


def _step(data: Any, index: int, default_timeout: float, known: set[str]) -> Step:
    where = f"steps[{index}]"
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping", path=where)
    _unknown(data, STEP_KEYS, where)
    name = _string(data, "name", where)
    if not _NAME.match(name):
        raise ConfigError("letters, digits, '.', '_' and '-' only", path=f"{where}.name")
    method = (_string(data, "method", where, required=False) or "GET").upper()
    if method not in METHODS:
        raise ConfigError(f"must be one of {', '.join(METHODS)}", path=f"{where}.method")
    url = _string(data, "url", where)
    headers = _mapping(data.get("headers"), f"{where}.headers")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ConfigError("must map header names to strings", path=f"{where}.headers")
    if "body" in data and "json" in data:
        raise ConfigError("give body or json, not both", path=where)
    body = data.get("body")
    if body is not None and not isinstance(body, str):
        raise ConfigError(
            "must be a string (use json: for structured bodies)", path=f"{where}.body"
        )
    # Every ${name} must be defined by the journey or by an earlier step's extract.
    texts = [url, *headers.values(), body or "", yaml.safe_dump(data.get("json"))]
    for text in texts:
        undefined = sorted(names_in(text) - known)
        if undefined:
            raise ConfigError(
                f"uses ${{{undefined[0]}}}, defined neither in variables nor by an earlier step",
                path=where,
            )
    extract = tuple(
        _extraction(k, v, f"{where}.extract.{k}")
        for k, v in _mapping(data.get("extract"), f"{where}.extract").items()
    )
    known.update(e.name for e in extract)
    retries = data.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        raise ConfigError("must be an integer from 0 to 10", path=f"{where}.retries")
    timeout = data.get("timeout")
    return Step(
        name=name,
        method=method,
        url=url,
        headers=dict(headers),
        body=body,
        json=data.get("json"),
        extract=extract,
        expect=_expectation(data.get("expect"), f"{where}.expect"),
        timeout=parse_duration(timeout, f"{where}.timeout")
        if timeout is not None
        else default_timeout,
        retries=retries,
    )


def journey_from_data(data: Any, source: str = "") -> Journey:
    if not isinstance(data, dict):
        raise ConfigError("a journey must be a mapping with name and steps", path=source or None)
    _unknown(data, JOURNEY_KEYS, "journey")
    name = _string(data, "name", "journey")
    if not _NAME.match(name):
        raise ConfigError("letters, digits, '.', '_' and '-' only", path="journey.name")
    base_url = _string(data, "base_url", "journey", required=False) or ""
    variables = _mapping(data.get("variables"), "variables")
    for key, value in variables.items():
        if not isinstance(key, str) or not _VAR.match(key):
            raise ConfigError("variable names are letters, digits and _", path=f"variables.{key}")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError("must be a string or a number", path=f"variables.{key}")
    timeout = parse_duration(data.get("timeout", 10), "timeout")
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError("must be a non-empty list", path="steps")
    known = set(variables)
    undefined = sorted(names_in(base_url) - known)
    if undefined:
        # Only the journey's own variables: a response must not pick the host.
        raise ConfigError(f"uses ${{{undefined[0]}}}, not in variables", path="base_url")
    built = tuple(_step(s, i, timeout, known) for i, s in enumerate(steps))
    names = [s.name for s in built]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"step name {duplicate!r} is used twice", path="steps")
    return Journey(
        name=name,
        steps=built,
        base_url=base_url,
        variables={k: str(v) for k, v in variables.items()},
        source=source,
    )


def load_journey(path: str | Path) -> Journey:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not YAML: {exc}", path=str(path)) from None
    try:
        return journey_from_data(data, str(path))
    except ConfigError as exc:
        raise ConfigError(str(exc), path=str(path)) from None
