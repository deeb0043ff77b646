"""Running a journey: each step's request, its assertions and extractions, in order.

The first failing step ends the run (later steps depend on it); the result names that step
and the assertion that failed. Responses are data: extracted values are strings that later
steps substitute as text, never evaluated.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from selfheal.errors import ConfigError

from .journey import Journey, Step
from .jsonpath import MISSING, lookup
from .template import substitute, substitute_data

BODY_LIMIT = 1024 * 1024  # bytes of a response read for assertions and extraction
USER_AGENT = "selfheal-synthetic"


@dataclass
class StepResult:
    name: str
    ok: bool
    status: int | None = None
    latency_s: float = 0.0
    failure: str = ""  # the assertion (or error) that failed
    attempts: int = 0


@dataclass
class JourneyResult:
    journey: str
    ok: bool
    duration_s: float
    steps: list[StepResult] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    def as_dict(self) -> dict:
        failed = self.failed_step
        return {
            "journey": self.journey,
            "ok": self.ok,
            "duration_seconds": round(self.duration_s, 6),
            "started_at": self.started_at,
            "failed_step": failed.name if failed else None,
            "failure": failed.failure if failed else None,
            "steps": [
                {
                    "name": s.name,
                    "ok": s.ok,
                    "status": s.status,
                    "latency_seconds": round(s.latency_s, 6),
                    "failure": s.failure,
                    "attempts": s.attempts,
                }
                for s in self.steps
            ],
        }


@dataclass
class _Response:
    status: int
    body: bytes
    latency_s: float

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return MISSING


class StepFailed(Exception):
    def __init__(self, failure: str, response: _Response | None = None):
        super().__init__(failure)
        self.failure = failure
        self.response = response


def _send(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> _Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StepFailed(f"URL {url!r} is not an http(s) URL")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(BODY_LIMIT)
        latency = time.monotonic() - started
        return _Response(response.status, data, latency)
    except TimeoutError:
        raise StepFailed(f"timeout after {timeout:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise StepFailed(f"request failed: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def _request(step: Step, journey: Journey, variables: dict[str, str], extracted: set[str]):
    where = f"steps.{step.name}"
    url = substitute(step.url, variables, f"{where}.url", url_safe=extracted)
    if journey.base_url:
        base = substitute(journey.base_url, variables, "base_url", url_safe=extracted)
        url = urljoin(base.rstrip("/") + "/", url.lstrip("/")) if not urlsplit(url).scheme else url
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    headers.update(
        {k: substitute(v, variables, f"{where}.headers.{k}") for k, v in step.headers.items()}
    )
    for name, value in headers.items():
        if "\r" in value or "\n" in value:  # an extracted value must not add headers
            raise StepFailed(f"header {name} would contain a line break")
    body: bytes | None = None
    if step.json is not None:
        body = json.dumps(substitute_data(step.json, variables, f"{where}.json")).encode()
        headers.setdefault("Content-Type", "application/json")
    elif step.body is not None:
        body = substitute(step.body, variables, f"{where}.body").encode()
    return step.method, url, headers, body


def _check(step: Step, response: _Response) -> None:
    expect = step.expect
    if expect.status and response.status not in expect.status:
        wanted = ", ".join(str(s) for s in sorted(expect.status))
        raise StepFailed(f"status {response.status}, expected {wanted}", response)
    if not expect.status and response.status >= 400:
        raise StepFailed(f"status {response.status}, expected below 400", response)
    if expect.max_latency_ms is not None and response.latency_s * 1000 > expect.max_latency_ms:
        raise StepFailed(
            f"latency {response.latency_s * 1000:.0f} ms over max_latency_ms "
            f"{expect.max_latency_ms:g}",
            response,
        )
    if expect.body_regex is not None and not expect.body_regex.search(response.text()):
        raise StepFailed(f"body does not match body_regex {expect.body_regex.pattern!r}", response)
    if expect.json:
        document = response.json()
        if document is MISSING:
            raise StepFailed("body is not JSON", response)
        for text, path, expected in expect.json:
            actual = lookup(document, path)
            if actual is MISSING:
                raise StepFailed(f"JSON path {text} not found", response)
            if actual != expected:
                raise StepFailed(f"JSON path {text} is {actual!r}, expected {expected!r}", response)


def _extract(step: Step, response: _Response) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in step.extract:
        if item.kind == "json":
            document = response.json()
            value = MISSING if document is MISSING else lookup(document, item.json_path)
            if value is MISSING or isinstance(value, dict | list):
                raise StepFailed(
                    f"extract {item.name}: JSON path {item.source} has no value", response
                )
            values[item.name] = value if isinstance(value, str) else json.dumps(value)
        else:
            match = item.regex.search(response.text())
            if not match:
                raise StepFailed(
                    f"extract {item.name}: regex {item.source!r} does not match", response
                )
            values[item.name] = match.group(1) if match.re.groups else match.group(0)
    return values


def run_step(
    step: Step, journey: Journey, variables: dict[str, str], extracted: set[str]
) -> tuple[StepResult, dict[str, str]]:
    result = StepResult(step.name, ok=False)
    for attempt in range(1, step.retries + 2):
        result.attempts = attempt
        response = None
        try:
            method, url, headers, body = _request(step, journey, variables, extracted)
            response = _send(method, url, headers, body, step.timeout)
            _check(step, response)
            values = _extract(step, response)
        except StepFailed as exc:
            response = exc.response or response
            result.failure = exc.failure
        except ConfigError as exc:
            result.failure = str(exc)
            break  # a journey error, not a flaky response: retrying cannot help
        else:
            result.ok, result.failure = True, ""
            result.status, result.latency_s = response.status, response.latency_s
            return result, values
        if response is not None:
            result.status, result.latency_s = response.status, response.latency_s
    return result, {}


def run_journey(journey: Journey) -> JourneyResult:
    variables = dict(journey.variables)
    extracted: set[str] = set()
    started_wall = time.time()
    started = time.monotonic()
    steps: list[StepResult] = []
    for step in journey.steps:
        result, values = run_step(step, journey, variables, extracted)
        steps.append(result)
        if not result.ok:
            break
        variables.update(values)
        extracted.update(values)
    ok = len(steps) == len(journey.steps) and all(s.ok for s in steps)
    return JourneyResult(journey.name, ok, time.monotonic() - started, steps, started_wall)
