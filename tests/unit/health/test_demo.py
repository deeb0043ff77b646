"""The demo service, run as a real process on a free port."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.compile(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", re.M)
    match = pattern.search(text)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def demo(tmp_path: Path, listening_port: int):
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfheal.health.demo",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--name",
            "shop",
            "--ready-tcp",
            f"db=127.0.0.1:{listening_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"no address announced: {line!r}"
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        log.close()


def test_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "selfheal.health.demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--ready-tcp" in done.stdout and "--port" in done.stdout


def test_bad_arguments_are_usage_errors() -> None:
    for args in (["--ready-tcp", "nope"], ["--ready-http", "ftp://x"]):
        done = subprocess.run(
            [sys.executable, "-m", "selfheal.health.demo", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and "expected [NAME=]" in done.stderr


def test_demo_serves_health_and_metrics_and_stops_on_sigterm(demo, http_get) -> None:
    proc, base = demo
    hello = http_get(base + "/")
    assert hello.status == 200 and hello.json()["service"] == "shop"
    live = http_get(base + "/livez")
    assert live.status == 200 and set(live.json()["checks"]) == {"heartbeat"}
    ready = http_get(base + "/readyz")
    assert ready.status == 200
    assert ready.json()["status"] == "ok" and set(ready.json()["checks"]) == {"heartbeat", "db"}

    before = http_get(base + "/metrics")
    assert before.status == 200
    assert before.headers["content-type"].startswith("text/plain")
    text = before.body.decode()
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE http_request_duration_seconds histogram" in text
    assert _metric(text, "http_requests_total", path="/", code="200") == 1
    assert _metric(text, "http_requests_total", path="/readyz", code="200") == 1

    for _ in range(3):
        http_get(base + "/")
    assert http_get(base + "/missing").status == 404
    after = http_get(base + "/metrics").body.decode()
    assert _metric(after, "http_requests_total", path="/", code="200") == 4
    assert _metric(after, "http_requests_total", path="other", code="404") == 1
    assert _metric(after, "http_requests_total", path="/metrics", code="200") == 1
    count = _metric(after, "http_request_duration_seconds_count", path="/")
    inf = _metric(after, "http_request_duration_seconds_bucket", path="/", le="+Inf")
    assert count == inf == 4
    assert _metric(after, "http_request_duration_seconds_sum", path="/") > 0

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_demo_readyz_fails_on_a_closed_dependency(
    tmp_path: Path, closed_port: int, http_get
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfheal.health.demo",
            "--port",
            "0",
            "--quiet",
            "--ready-tcp",
            f"127.0.0.1:{closed_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        base = re.search(r"http://\S+", proc.stdout.readline().decode()).group(0)
        assert http_get(base + "/livez").status == 200
        ready = http_get(base + "/readyz")
        assert ready.status == 503
        result = ready.json()["checks"][f"tcp-127-0-0-1-{closed_port}"]
        assert result["reason"] == f"connection refused by 127.0.0.1:{closed_port}"
        metrics = http_get(base + "/metrics").body.decode()
        assert _metric(metrics, "http_request_errors_total", path="/readyz") == 1
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
