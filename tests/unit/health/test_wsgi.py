"""The WSGI adapter, served for real by wsgiref on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest

from selfheal.health import HealthRegistry, http, make_wsgi_app, tcp


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from " + environ["PATH_INFO"].encode()]


def _failing_upstream(environ, start_response):
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"down"]


def test_all_ok(serve_wsgi, listening_port, http_get) -> None:
    registry = HealthRegistry()
    registry.add_liveness("loop", lambda: True)
    registry.add_readiness("port", tcp("127.0.0.1", listening_port))
    base = serve_wsgi(make_wsgi_app(registry))
    for path, names in (("/livez", {"loop"}), ("/readyz", {"loop", "port"})):
        response = http_get(base + path)
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        doc = response.json()
        assert doc["status"] == "ok"
        assert set(doc["checks"]) == names
        for result in doc["checks"].values():
            assert result["status"] == "ok" and result["reason"] is None
            assert isinstance(result["latency_ms"], float) and isinstance(result["cached"], bool)


def test_closed_port_fails_readyz_but_not_livez(serve_wsgi, closed_port, http_get) -> None:
    registry = HealthRegistry()
    registry.add_liveness("loop", lambda: True)
    registry.add_readiness("db", tcp("127.0.0.1", closed_port))
    base = serve_wsgi(make_wsgi_app(registry))
    ready = http_get(base + "/readyz")
    assert ready.status == 503
    doc = ready.json()
    assert doc["status"] == "fail"
    assert doc["checks"]["db"]["status"] == "fail"
    assert doc["checks"]["db"]["reason"] == f"connection refused by 127.0.0.1:{closed_port}"
    assert doc["checks"]["loop"]["status"] == "ok"
    live = http_get(base + "/livez")
    assert live.status == 200
    assert live.json() == {"status": "ok", "checks": {"loop": live.json()["checks"]["loop"]}}


def test_slow_dependency_times_out(serve_wsgi, http_get) -> None:
    registry = HealthRegistry()
    registry.add_readiness("slow", lambda: time.sleep(10) or True, timeout=0.2)
    base = serve_wsgi(make_wsgi_app(registry))
    start = time.monotonic()
    response = http_get(base + "/readyz")
    assert time.monotonic() - start < 5.0  # the check itself would take 10 s
    assert response.status == 503
    assert response.json()["checks"]["slow"]["reason"] == "timeout"


def test_cached_result_over_http(serve_wsgi, http_get) -> None:
    calls = []
    registry = HealthRegistry()
    registry.add_readiness("dep", lambda: calls.append(1) or True, ttl=1.0)
    base = serve_wsgi(make_wsgi_app(registry))
    assert http_get(base + "/readyz").json()["checks"]["dep"]["cached"] is False
    assert http_get(base + "/readyz").json()["checks"]["dep"]["cached"] is True
    assert len(calls) == 1
    time.sleep(1.05)
    assert http_get(base + "/readyz").json()["checks"]["dep"]["cached"] is False
    assert len(calls) == 2


def test_concurrent_checks_over_http(serve_wsgi, http_get) -> None:
    registry = HealthRegistry()
    # Each check waits at a barrier for the other: run one after the other, both fail.
    barrier = threading.Barrier(2, timeout=3)
    registry.add_readiness("a", lambda: barrier.wait() is not None, timeout=5)
    registry.add_readiness("b", lambda: barrier.wait() is not None, timeout=5)
    base = serve_wsgi(make_wsgi_app(registry))
    assert http_get(base + "/readyz").status == 200


def test_http_probe_against_real_upstreams(serve_wsgi, http_get) -> None:
    good = serve_wsgi(_hello)
    bad = serve_wsgi(_failing_upstream)
    registry = HealthRegistry()
    registry.add_readiness("good", http(good + "/"))
    registry.add_readiness("bad", http(bad + "/health"))
    registry.add_readiness("bad-but-accepted", http(bad + "/", expect_status=(200, 500)))
    base = serve_wsgi(make_wsgi_app(registry))
    checks = http_get(base + "/readyz").json()["checks"]
    assert checks["good"]["status"] == "ok"
    assert checks["bad"]["reason"] == f"HTTP 500 from {bad.removeprefix('http://')}, expected 200"
    assert checks["bad-but-accepted"]["status"] == "ok"


def test_delegates_other_paths_to_the_wrapped_app(serve_wsgi, http_get) -> None:
    registry = HealthRegistry()
    base = serve_wsgi(make_wsgi_app(registry, _hello))
    response = http_get(base + "/orders/1")
    assert (response.status, response.body) == (200, b"hello from /orders/1")
    assert http_get(base + "/livez").json() == {"status": "ok", "checks": {}}


def test_without_wrapped_app_other_paths_are_404(serve_wsgi, http_get) -> None:
    base = serve_wsgi(make_wsgi_app(HealthRegistry()))
    assert http_get(base + "/").status == 404


def test_verbose_0_head_and_methods(serve_wsgi, closed_port, http_get) -> None:
    registry = HealthRegistry()
    registry.add_readiness("db", tcp("127.0.0.1", closed_port))
    base = serve_wsgi(make_wsgi_app(registry, livez_path="/healthz/live"))
    terse = http_get(base + "/readyz?verbose=0")
    assert (terse.status, terse.json()) == (503, {"status": "fail"})
    head = http_get(base + "/readyz", method="HEAD")
    assert (head.status, head.body) == (503, b"")
    assert http_get(base + "/readyz", method="POST").status == 405
    assert http_get(base + "/healthz/live").status == 200
    assert http_get(base + "/livez").status == 404


def _health_probes(repo):
    """The health_check module's probe code (standard library only), loaded from the tree."""
    import importlib.util

    path = repo / "plugins" / "module_utils" / "health_probes.py"
    if not path.is_file():
        pytest.skip("plugins/module_utils/health_probes.py is not in the tree")
    spec = importlib.util.spec_from_file_location("_selfheal_health_probes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_health_check_module_reads_the_body(serve_wsgi, closed_port, repo) -> None:
    probes = _health_probes(repo)
    registry = HealthRegistry()
    registry.add_liveness("loop", lambda: True)
    registry.add_readiness("db", tcp("127.0.0.1", closed_port))
    base = serve_wsgi(make_wsgi_app(registry))

    def probe(url: str, **check: object):
        check = {"url": url, "method": "GET", "expect_status": [200], **check}
        return probes.probe_http(check, 5)

    assert probe(base + "/livez", json_path="status", json_expect="ok").status == "ok"
    whole = probe(base + "/readyz", expect_status=[200, 503], json_path="status", json_expect="ok")
    assert whole.status == "fail" and 'status is "fail", expected "ok"' in whole.reason
    one = probe(
        base + "/readyz", expect_status=[200, 503], json_path="checks.db.status", json_expect="ok"
    )
    assert one.status == "fail" and "checks.db.status" in one.reason
    loop = probe(
        base + "/readyz", expect_status=[200, 503], json_path="checks.loop.status", json_expect="ok"
    )
    assert loop.status == "ok"
