"""The health registry: liveness and readiness checks, run concurrently, bounded, cached.

- Liveness checks look at the process's own state only (event loop responsive, worker
  thread alive). `/livez` runs them and nothing else. An orchestrator restarts a process
  whose liveness fails, so a liveness check that looked at a shared dependency would
  restart every replica at once when that dependency has an outage (a restart cascade).
  `add_liveness()` therefore takes plain callables only and refuses dependency probes.
- Readiness checks look at dependencies (`tcp`, `http`, `postgres`, any callable).
  `/readyz` runs them plus the liveness checks (a process that is not alive cannot serve).

Every check runs in a worker thread with its own timeout; a request never waits longer
than the largest timeout. A check already running is joined, never started twice, so a
stuck dependency holds at most one thread. Readiness results are cached for a TTL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from .probes import CheckFailed, DependencyProbe
from .redact import clean_reason, describe_exception

OK = "ok"
FAIL = "fail"
LIVENESS = "liveness"
READINESS = "readiness"
DEFAULT_TIMEOUT = 1.0
DEFAULT_TTL = 2.0
TIMEOUT_REASON = "timeout"

# No dots: health_check's json_path (checks.<name>.status) is a dotted path.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,79}$")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Outcome of one check, as published under `checks.<name>`."""

    status: str
    latency_ms: float
    reason: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "latency_ms": self.latency_ms,
            "reason": self.reason,
            "cached": self.cached,
        }


@dataclasses.dataclass(frozen=True)
class HealthReport:
    """All results of one `/livez` or `/readyz` evaluation."""

    checks: Mapping[str, CheckResult]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks.values())

    @property
    def status(self) -> str:
        return OK if self.ok else FAIL

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    def to_dict(self, verbose: bool = True) -> dict[str, Any]:
        if not verbose:
            return {"status": self.status}
        return {
            "status": self.status,
            "checks": {name: result.to_dict() for name, result in self.checks.items()},
        }

    def to_json(self, verbose: bool = True) -> bytes:
        return json.dumps(self.to_dict(verbose), separators=(",", ":")).encode("utf-8")


class _DaemonPool:
    """A small pool of daemon worker threads.

    Daemon threads, unlike concurrent.futures' workers, never hold up interpreter exit
    when a user check hangs forever.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0  # workers waiting for a task that nobody has claimed
        self._backlog = 0  # queued tasks that no worker has claimed

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            self._tasks.put(task)
            if self._idle:
                self._idle -= 1
            elif self._workers < self._max:
                self._workers += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._workers}", daemon=True
                ).start()
            else:
                self._backlog += 1

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            with contextlib.suppress(BaseException):  # tasks report their own errors
                task()
            with self._lock:
                if self._backlog:
                    self._backlog -= 1
                else:
                    self._idle += 1


class _Check:
    def __init__(
        self,
        name: str,
        kind: str,
        run: Callable[[], Any],
        timeout: float,
        ttl: float,
        secrets: tuple[str, ...],
    ) -> None:
        self.name = name
        self.kind = kind
        self.run = run
        self.timeout = timeout
        self.ttl = ttl
        self.secrets = secrets
        self.lock = threading.Lock()
        self.result: CheckResult | None = None
        self.result_at = 0.0
        self.inflight: Future[CheckResult] | None = None
        self.started = 0.0


def _validate(name: str, timeout: float, ttl: float) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid check name {name!r}: letters, digits, '_' and '-', at most 80")
    if not timeout > 0:
        raise ValueError(f"timeout of {name!r} must be > 0 seconds")
    if ttl < 0:
        raise ValueError(f"ttl of {name!r} must be >= 0 seconds")


class HealthRegistry:
    """Registered liveness and readiness checks of one process.

    `readiness_includes_liveness` (default True): `/readyz` also runs the liveness checks.
    `/livez` never runs readiness checks.
    """

    def __init__(
        self,
        *,
        readiness_includes_liveness: bool = True,
        max_workers: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.readiness_includes_liveness = readiness_includes_liveness
        self._clock = clock
        self._lock = threading.Lock()
        self._checks: dict[str, _Check] = {}
        self._pool = _DaemonPool(max_workers, "selfheal-health")

    # --- registration -----------------------------------------------------------------

    def add_liveness(
        self, name: str, check: Callable[[], object], *, timeout: float = DEFAULT_TIMEOUT
    ) -> Callable[[], object]:
        """Register a liveness check: a callable on the process's own state.

        The callable returns True (or None) when healthy, and returns False or raises when
        not. Dependency probes (`tcp`, `http`, `postgres`) are refused with TypeError:
        a dependency outage must never make the orchestrator restart every replica.
        Liveness results are never cached.
        """
        if isinstance(check, DependencyProbe):
            raise TypeError(
                f"liveness check {name!r} is a dependency probe ({check!r}); register it with "
                "add_readiness(). Liveness must only reflect the process's own state: a "
                "dependency outage would otherwise restart every replica at once."
            )
        if not callable(check):
            raise TypeError(f"liveness check {name!r} must be a callable, not {check!r}")
        _validate(name, timeout, 0)
        self._add(_Check(name, LIVENESS, check, float(timeout), 0.0, ()))
        return check

    def add_readiness(
        self,
        name: str,
        check: DependencyProbe | Callable[[], object],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ttl: float = DEFAULT_TTL,
        secrets: Iterable[str] = (),
    ) -> DependencyProbe | Callable[[], object]:
        """Register a readiness check: a built-in probe (`tcp`, `http`, `postgres`) or a
        callable (True/None healthy; False or an exception unhealthy).

        `timeout` bounds how long a request waits for it; its result is reused for `ttl`
        seconds (0 disables caching). `secrets` are literal strings masked in reasons.
        """
        if not callable(check):
            raise TypeError(f"readiness check {name!r} must be a probe or a callable")
        _validate(name, timeout, ttl)
        all_secrets = tuple(secrets)
        if isinstance(check, DependencyProbe):
            probe = check
            all_secrets += probe.secrets

            def run() -> object:
                probe.check(float(timeout))
                return True

        else:
            run = check
        self._add(_Check(name, READINESS, run, float(timeout), float(ttl), all_secrets))
        return check

    def liveness(
        self, name: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> Callable[[Callable[[], object]], Callable[[], object]]:
        """Decorator form of `add_liveness()`; the name defaults to the function's."""

        def decorate(fn: Callable[[], object]) -> Callable[[], object]:
            return self.add_liveness(name or fn.__name__, fn, timeout=timeout)

        return decorate

    def readiness(
        self,
        name: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ttl: float = DEFAULT_TTL,
    ) -> Callable[[Callable[[], object]], Callable[[], object]]:
        """Decorator form of `add_readiness()`; the name defaults to the function's."""

        def decorate(fn: Callable[[], object]) -> Callable[[], object]:
            self.add_readiness(name or fn.__name__, fn, timeout=timeout, ttl=ttl)
            return fn

        return decorate

    def _add(self, check: _Check) -> None:
        with self._lock:
            if check.name in self._checks:
                raise ValueError(f"a check named {check.name!r} is already registered")
            self._checks[check.name] = check

    def names(self, kind: str) -> list[str]:
        """Names of the checks `/livez` (LIVENESS) or `/readyz` (READINESS) runs."""
        return [c.name for c in self._select(kind)]

    def _select(self, kind: str) -> list[_Check]:
        if kind not in (LIVENESS, READINESS):
            raise ValueError(f"kind must be {LIVENESS!r} or {READINESS!r}")
        with self._lock:
            checks = list(self._checks.values())
        if kind == LIVENESS:
            return [c for c in checks if c.kind == LIVENESS]
        if self.readiness_includes_liveness:
            return checks
        return [c for c in checks if c.kind == READINESS]

    # --- evaluation -------------------------------------------------------------------

    def check_liveness(self) -> HealthReport:
        return self.run(LIVENESS)

    def check_readiness(self) -> HealthReport:
        return self.run(READINESS)

    def run(self, kind: str) -> HealthReport:
        """Evaluate every check of `kind` concurrently; returns within the largest timeout."""
        pending = [(check, self._start(check)) for check in self._select(kind)]
        results: dict[str, CheckResult] = {}
        for check, (future, started, cached) in pending:
            if cached is not None:
                results[check.name] = cached
                continue
            assert future is not None
            remaining = started + check.timeout - self._clock()
            try:
                results[check.name] = future.result(timeout=max(0.0, remaining))
            except FutureTimeout:
                elapsed = _ms(self._clock() - started)
                results[check.name] = CheckResult(FAIL, elapsed, TIMEOUT_REASON)
        return HealthReport(results)

    def _start(self, check: _Check) -> tuple[Future[CheckResult] | None, float, CheckResult | None]:
        now = self._clock()
        with check.lock:
            fresh = check.result is not None and now - check.result_at < check.ttl
            if fresh and check.result is not None:
                return None, now, dataclasses.replace(check.result, cached=True)
            if check.inflight is None:
                future: Future[CheckResult] = Future()
                check.inflight = future
                check.started = now
                self._pool.submit(lambda: self._execute(check, future, now))
            return check.inflight, check.started, None

    def _execute(self, check: _Check, future: Future[CheckResult], submitted: float) -> None:
        start = self._clock()
        result: CheckResult | None = None
        try:
            try:
                outcome = check.run()
            except CheckFailed as exc:
                reason: str | None = clean_reason(exc.reason, check.secrets) or "check failed"
            except Exception as exc:
                reason = describe_exception(exc, check.secrets)
            else:
                reason = None if outcome is not False else "check returned False"
            end = self._clock()
            if end - submitted > check.timeout:
                reason = TIMEOUT_REASON
            status = OK if reason is None else FAIL
            result = CheckResult(status, _ms(end - start), reason)
        finally:
            if result is None:  # BaseException (e.g. SystemExit) from the check
                result = CheckResult(FAIL, _ms(self._clock() - start), "check aborted")
            with check.lock:
                check.result = result
                check.result_at = self._clock()
                check.inflight = None
            future.set_result(result)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
