"""HealthRegistry: the liveness rule, timeouts, caching, concurrency, redaction."""

from __future__ import annotations

import threading
import time

import pytest

from selfheal.health import (
    POSTGRES_DRIVER_MISSING,
    CheckFailed,
    HealthRegistry,
    event_loop_responsive,
    http,
    postgres,
    redact,
    tcp,
    thread_alive,
)
from selfheal.health import probes as probes_module


def test_liveness_refuses_dependency_probes() -> None:
    registry = HealthRegistry()
    for probe in (tcp("db", 5432), http("http://api/readyz"), postgres("dbname=app")):
        with pytest.raises(TypeError, match="add_readiness"):
            registry.add_liveness("dep", probe)
    with pytest.raises(TypeError, match="callable"):
        registry.add_liveness("not-callable", True)  # type: ignore[arg-type]
    assert registry.names("liveness") == []


def test_names_are_unique_and_valid() -> None:
    registry = HealthRegistry()
    registry.add_liveness("loop", lambda: True)
    with pytest.raises(ValueError, match="already registered"):
        registry.add_readiness("loop", lambda: True)
    for bad in ("has space", "dotted.name", "", "-lead"):  # json_path is dotted
        with pytest.raises(ValueError, match="invalid check name"):
            registry.add_readiness(bad, lambda: True)
    with pytest.raises(ValueError, match="timeout"):
        registry.add_readiness("zero", lambda: True, timeout=0)


def test_readiness_includes_liveness_but_not_the_reverse() -> None:
    registry = HealthRegistry()
    registry.add_liveness("loop", lambda: True)
    registry.add_readiness("db", lambda: True)
    assert registry.names("liveness") == ["loop"]
    assert registry.names("readiness") == ["loop", "db"]
    assert list(registry.check_liveness().checks) == ["loop"]
    only = HealthRegistry(readiness_includes_liveness=False)
    only.add_liveness("loop", lambda: True)
    only.add_readiness("db", lambda: True)
    assert only.names("readiness") == ["db"]


def test_report_shape_and_outcomes() -> None:
    registry = HealthRegistry()
    registry.add_readiness("yes", lambda: True)
    registry.add_readiness("none", lambda: None)
    registry.add_readiness("no", lambda: False)
    registry.add_readiness("raises", lambda: 1 / 0)

    @registry.readiness()
    def explicit() -> bool:
        raise CheckFailed("queue is full")

    report = registry.check_readiness()
    doc = report.to_dict()
    assert doc["status"] == "fail" and report.http_status == 503
    assert set(doc["checks"]) == {"yes", "none", "no", "raises", "explicit"}
    for result in doc["checks"].values():
        assert set(result) == {"status", "latency_ms", "reason", "cached"}
        assert isinstance(result["latency_ms"], float)
        assert result["cached"] is False
    assert doc["checks"]["yes"] == {**doc["checks"]["yes"], "status": "ok", "reason": None}
    assert doc["checks"]["none"]["status"] == "ok"
    assert doc["checks"]["no"]["reason"] == "check returned False"
    assert doc["checks"]["raises"]["reason"] == "ZeroDivisionError: division by zero"
    assert doc["checks"]["explicit"]["reason"] == "queue is full"
    assert report.to_dict(verbose=False) == {"status": "fail"}


def test_empty_registry_is_ok() -> None:
    report = HealthRegistry().check_readiness()
    assert report.to_dict() == {"status": "ok", "checks": {}}
    assert report.http_status == 200


def test_slow_check_times_out_without_holding_the_response() -> None:
    registry = HealthRegistry()
    registry.add_readiness("slow", lambda: time.sleep(10) or True, timeout=0.2)
    registry.add_readiness("fast", lambda: True)
    start = time.monotonic()
    report = registry.check_readiness()
    elapsed = time.monotonic() - start
    assert elapsed < 5.0  # the check itself would take 10 s
    slow = report.checks["slow"]
    assert (slow.status, slow.reason) == ("fail", "timeout")
    assert report.checks["fast"].ok


def test_stuck_check_is_joined_not_started_again() -> None:
    calls = []
    release = threading.Event()

    def stuck() -> bool:
        calls.append(1)
        release.wait(5)
        return True

    registry = HealthRegistry()
    registry.add_readiness("stuck", stuck, timeout=0.1, ttl=0)
    try:
        for _ in range(3):
            assert registry.check_readiness().checks["stuck"].reason == "timeout"
        assert len(calls) == 1
    finally:
        release.set()


def test_ttl_cache_serves_cached_result_then_reruns() -> None:
    calls = []
    registry = HealthRegistry()
    registry.add_readiness("dep", lambda: calls.append(1) or True, ttl=0.3)
    first = registry.check_readiness().checks["dep"]
    second = registry.check_readiness().checks["dep"]
    assert (first.cached, second.cached) == (False, True)
    assert second.status == "ok" and len(calls) == 1
    time.sleep(0.35)
    third = registry.check_readiness().checks["dep"]
    assert third.cached is False and len(calls) == 2


def test_liveness_is_never_cached() -> None:
    calls = []
    registry = HealthRegistry()
    registry.add_liveness("loop", lambda: calls.append(1) or True)
    registry.check_liveness()
    assert registry.check_liveness().checks["loop"].cached is False
    assert len(calls) == 2


def test_checks_run_concurrently() -> None:
    registry = HealthRegistry()
    # Each check waits at a barrier for the other: run one after the other, both fail.
    barrier = threading.Barrier(2, timeout=3)
    registry.add_readiness("a", lambda: barrier.wait() is not None, timeout=5)
    registry.add_readiness("b", lambda: barrier.wait() is not None, timeout=5)
    report = registry.check_readiness()
    assert report.ok, report.to_dict()


def test_concurrent_requests_share_one_run() -> None:
    calls = []
    registry = HealthRegistry()
    registry.add_readiness("dep", lambda: calls.append(1) or time.sleep(0.2) or True)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(registry.check_readiness()))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(results) == 4 and all(r.ok for r in results)
    assert len(calls) == 1


def test_redact() -> None:
    assert redact("postgresql://app:s3cret@db:5432/app") == "postgresql://app:***@db:5432/app"
    assert redact("host=db password=s3cret user=app") == "host=db password=*** user=app"
    assert redact("password='s3 cret' user=app") == "password=*** user=app"
    assert redact("GET /?token=abc&x=1") == "GET /?token=***&x=1"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert redact("failed for hunter2", ["hunter2"]) == "failed for ***"


def test_exception_reasons_are_redacted_and_have_no_traceback() -> None:
    def leaky() -> bool:
        raise RuntimeError(
            "could not connect to postgresql://app:s3cret@db/app\n"
            'Traceback (most recent call last):\n  File "x.py", line 1'
        )

    registry = HealthRegistry()
    registry.add_readiness("leaky", leaky)
    registry.add_readiness("kv", lambda: (_ for _ in ()).throw(OSError("password=s3cret bad")))
    registry.add_readiness(
        "literal", lambda: (_ for _ in ()).throw(ValueError("token hunter2")), secrets=["hunter2"]
    )
    body = registry.check_readiness().to_json().decode()
    assert "s3cret" not in body and "hunter2" not in body and "Traceback" not in body
    checks = registry.check_readiness().to_dict()["checks"]
    assert (
        checks["leaky"]["reason"]
        == "RuntimeError: could not connect to postgresql://app:***@db/app"
    )
    assert checks["kv"]["reason"] == "OSError: password=*** bad"


def test_postgres_without_driver_fails_with_a_clear_reason(monkeypatch) -> None:
    monkeypatch.setattr(probes_module, "load_postgres_driver", lambda: None)
    registry = HealthRegistry()
    registry.add_readiness("db", postgres("postgresql://app:s3cret@127.0.0.1:1/app"))
    result = registry.check_readiness().checks["db"]
    assert (result.status, result.reason) == ("fail", POSTGRES_DRIVER_MISSING)
    assert "s3cret" not in repr(postgres("postgresql://app:s3cret@127.0.0.1:1/app"))


class _EchoingDriver:
    """A DB-API module whose connect() fails with the DSN in its message, as drivers do."""

    class OperationalError(Exception):
        pass

    @classmethod
    def connect(cls, dsn: str, **kwargs: object) -> None:
        raise cls.OperationalError(f'connection to server failed: "{dsn}"\nDETAIL: more')


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:s3cret@127.0.0.1:1/app",
        "postgresql://app:s3cr%40t@127.0.0.1:1/app",
        "host=127.0.0.1 port=1 user=app password=s3cret dbname=app",
    ],
)
def test_postgres_reason_redacts_the_dsn_password(monkeypatch, dsn: str) -> None:
    monkeypatch.setattr(probes_module, "load_postgres_driver", lambda: _EchoingDriver)
    registry = HealthRegistry()
    registry.add_readiness("db", postgres(dsn))
    reason = registry.check_readiness().checks["db"].reason
    assert reason is not None and reason.startswith("postgres: connection to server failed")
    assert "s3cret" not in reason and "s3cr%40t" not in reason and "s3cr@t" not in reason
    assert "DETAIL" not in reason


def test_postgres_real_driver_against_closed_port(closed_port: int) -> None:
    if probes_module.load_postgres_driver() is None:
        pytest.skip("no postgres driver (psycopg/psycopg2) installed")
    registry = HealthRegistry()
    dsn = f"postgresql://app:s3cret@127.0.0.1:{closed_port}/app"
    registry.add_readiness("db", postgres(dsn), timeout=3)
    result = registry.check_readiness().checks["db"]
    assert result.status == "fail" and "s3cret" not in (result.reason or "")


def test_tcp_probe(closed_port: int, listening_port: int) -> None:
    registry = HealthRegistry()
    registry.add_readiness("up", tcp("127.0.0.1", listening_port))
    registry.add_readiness("down", tcp("127.0.0.1", closed_port))
    checks = registry.check_readiness().checks
    assert checks["up"].ok
    assert checks["down"].reason == f"connection refused by 127.0.0.1:{closed_port}"


def test_liveness_helpers() -> None:
    import asyncio

    done = threading.Event()
    worker = threading.Thread(target=done.wait, args=(5,), daemon=True)
    worker.start()
    registry = HealthRegistry()
    registry.add_liveness("worker", thread_alive(worker))
    assert registry.check_liveness().ok
    done.set()
    worker.join(5)
    assert registry.check_liveness().checks["worker"].reason == f"thread {worker.name} is not alive"

    loop = asyncio.new_event_loop()
    try:
        check = event_loop_responsive(loop, max_delay=0.1)
        with pytest.raises(CheckFailed, match="did not respond"):
            check()  # nobody runs the loop: it cannot answer
        runner = threading.Thread(target=loop.run_forever, daemon=True)
        runner.start()
        assert check() is True
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
    finally:
        loop.close()
    with pytest.raises(CheckFailed, match="closed"):
        check()
