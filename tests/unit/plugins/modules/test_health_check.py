"""The health_check module end to end: main() with real probes against local servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import support
from ansible_collections.selfheal.core.plugins.module_utils import health_probes
from ansible_collections.selfheal.core.plugins.modules import health_check


@pytest.fixture
def run(module_runner):
    """run(args, check_mode=False) -> (failed, result) of one health_check main()."""
    return lambda args, check_mode=False: module_runner(health_check.main, args, check_mode)


def flapping():
    """A route failing exactly one probe in five (the third), by a request counter."""
    counter = {"n": 0}

    def route(handler):
        counter["n"] += 1
        if counter["n"] % 5 == 3:
            return 503, {"status": "fail", "checks": {}}, {}
        return 200, {"status": "ok", "checks": {}}, {}

    return route, counter


def test_flapping_endpoint_healthy_under_3_of_5_then_unhealthy_when_down(
    run, http_server, tmp_path
):
    route, counter = flapping()
    server = http_server({"/health": route})
    state = tmp_path / "state.json"
    args = {
        "state_path": str(state),
        "checks": [
            {
                "name": "api",
                "kind": "http",
                "url": server.url("/health"),
                "json_path": "status",
                "json_expect": "ok",
                "threshold": {"failures": 3, "window": 5},
            }
        ],
    }
    raw = []
    for _ in range(5):
        failed, result = run(args)
        assert not failed
        assert result["healthy"] is True, result
        assert result["changed"] is False
        raw.append(result["checks"][0]["reason"].split(";")[0])
    assert counter["n"] == 5
    assert sum(r.startswith("HTTP status 503") for r in raw) == 1
    window = result["checks"][0]["window"]
    assert window["history"] == ["ok", "ok", "fail", "ok", "ok"]
    assert (window["failures"], window["probes"]) == (1, 5)
    healthy_fingerprint = result["fingerprint"]

    server.stop()  # fully down: every probe fails
    verdicts = []
    for _ in range(3):
        failed, result = run(args)
        assert not failed
        verdicts.append(result["healthy"])
    # window after runs 6, 7, 8: 2, 3 and 3 failures of the last 5
    assert verdicts == [True, False, False]
    entry = result["checks"][0]
    assert entry["status"] == "fail"
    assert entry["reason"] == "connection refused; 3 of last 5 probes failed (threshold 3 of 5)"
    assert result["unhealthy"] == ["api"]
    assert result["fingerprint"] != healthy_fingerprint
    _, again = run(args)
    assert again["fingerprint"] == result["fingerprint"]  # same failure, same fingerprint


def test_slow_endpoint_breaches_the_budget(run, http_server):
    import time

    def slow(handler):
        time.sleep(0.3)
        return 200, {"status": "ok"}, {}

    server = http_server({"/slow": slow})
    _, result = run(
        {
            "checks": [
                {"name": "slow", "kind": "http", "url": server.url("/slow"), "max_latency_ms": 100}
            ]
        }
    )
    assert result["healthy"] is False
    entry = result["checks"][0]
    assert "max_latency_ms budget of 100 ms" in entry["reason"]
    assert entry["latency_ms"] >= 300


def test_expiring_certificate_is_flagged(run, http_server, certs):
    server = http_server({"/": lambda h: (200, {"status": "ok"}, {})}, tls=certs["expiring"])
    check = {
        "name": "tls",
        "kind": "http",
        "url": server.url("/"),
        "ca_path": str(certs["expiring"][0]),
        "cert_min_days": 14,
    }
    _, result = run({"checks": [check]})
    assert result["unhealthy"] == ["tls"]
    assert "expires in 3.0 days" in result["checks"][0]["reason"]


def test_check_mode_writes_no_state_and_runs_no_command(run, http_server, tmp_path):
    server = http_server({"/": lambda h: (200, "ok", {})})
    state = tmp_path / "sub" / "state.json"
    marker = tmp_path / "ran"
    args = {
        "state_path": str(state),
        "checks": [
            {
                "name": "web",
                "kind": "http",
                "url": server.url("/"),
                "threshold": {"failures": 1, "window": 3},
            },
            {"name": "touch", "kind": "command", "argv": ["touch", str(marker)]},
            {
                "name": "ro",
                "kind": "command",
                "argv": [sys.executable, "-c", "pass"],
                "read_only": True,
            },
            {"name": "all", "kind": "composite", "depends_on": ["web", "touch"]},
        ],
    }
    failed, result = run(args, check_mode=True)
    assert not failed
    assert not state.exists() and not state.parent.exists()
    assert not marker.exists()
    by_name = {c["name"]: c for c in result["checks"]}
    assert by_name["touch"]["status"] == "skipped"
    assert (
        by_name["touch"]["reason"]
        == "command not run in check mode (set read_only: true to run it)"
    )
    assert by_name["ro"]["status"] == "ok"
    assert by_name["web"]["status"] == "ok"
    assert by_name["all"]["status"] == "skipped"
    assert result["healthy"] is True

    run(args)  # and for real
    assert marker.exists()
    assert json.loads(state.read_text())["checks"]["web"]["history"] == [True]


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        (
            [{"name": "a", "kind": "htp"}],
            "checks[0].kind: must be one of http, tcp, process, command, disk, postgres, composite; got 'htp'",
        ),
        (
            [
                {"name": "a", "kind": "tcp", "host": "h", "port": 1},
                {"name": "b", "kind": "http", "url": "gopher://x"},
            ],
            "checks[1].url: not a valid http(s) URL: 'gopher://x'",
        ),
        (
            [{"name": "a", "kind": "tcp", "host": "h", "port": 1, "retries": -2}],
            "checks[0].retries: must be >= 0",
        ),
        (
            [{"name": "a", "kind": "tcp", "host": "h", "port": 1, "hots": "x"}],
            "checks[0]: unknown key(s) for kind tcp: hots",
        ),
        (
            [
                {"name": "a", "kind": "tcp", "host": "h", "port": 1},
                {"name": "a", "kind": "tcp", "host": "h", "port": 2},
            ],
            "checks[1].name: duplicate name 'a' (also checks[0].name)",
        ),
        (
            [
                {"name": "x", "kind": "composite", "depends_on": ["y"]},
                {"name": "y", "kind": "composite", "depends_on": ["x"]},
            ],
            "checks[0].depends_on: dependency cycle x -> y -> x",
        ),
    ],
)
def test_bad_input_fails_naming_the_field(run, tmp_path, checks, expected):
    failed, result = run({"checks": checks, "state_path": str(tmp_path / "s.json")})
    assert failed
    assert result["msg"] == "invalid checks: " + expected
    assert not (tmp_path / "s.json").exists()


def test_bad_default_timeout(run):
    failed, result = run({"checks": [], "timeout": 0})
    assert failed and result["msg"] == "timeout: must be > 0; got 0.0"


def test_fail_on_unhealthy(run, free_port, tmp_path):
    checks = [
        {"name": "down", "kind": "tcp", "host": "127.0.0.1", "port": free_port},
        {"name": "disk", "kind": "disk", "path": str(tmp_path), "min_free_percent": 0},
    ]
    failed, result = run({"checks": checks})
    assert not failed and result["healthy"] is False
    failed, result = run({"checks": checks, "fail_on_unhealthy": True})
    assert failed
    assert result["msg"] == "unhealthy: down (tcp: connection refused)"
    assert result["unhealthy"] == ["down"] and result["healthy"] is False
    healthy = run({"checks": checks[1:], "fail_on_unhealthy": True})
    assert healthy[0] is False and healthy[1]["healthy"] is True


def test_postgres_without_driver_is_skipped(run, monkeypatch):
    monkeypatch.setattr(health_probes, "load_postgres_driver", lambda: None)
    _, result = run(
        {"checks": [{"name": "db", "kind": "postgres", "host": "127.0.0.1", "password": "pw"}]}
    )
    assert result["healthy"] is True
    assert result["checks"][0]["status"] == "skipped"
    assert result["checks"][0]["reason"] == "postgres driver not installed (psycopg or psycopg2)"


def test_module_file_runs_and_hides_passwords(tmp_path, free_port):
    """As ansible runs it: the module file with a JSON args file, in a fresh interpreter."""
    args = tmp_path / "args.json"
    secret = "Sup3rSecretPw"
    args.write_text(
        json.dumps(
            {
                "ANSIBLE_MODULE_ARGS": {
                    "checks": [
                        {
                            "name": "db",
                            "kind": "postgres",
                            "dsn": f"postgresql://mon:{secret}@127.0.0.1:{free_port}/app",
                        },
                        {"name": "port", "kind": "tcp", "host": "127.0.0.1", "port": free_port},
                    ],
                    "state_path": str(tmp_path / "state.json"),
                }
            }
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(support.COLLECTIONS), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(support.REPO / "plugins/modules/health_check.py"), str(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout
    result = json.loads(proc.stdout)
    # The db check fails (nothing listens) or is skipped (no driver installed).
    assert result["checks"][0]["status"] in ("skipped", "fail")
    assert result["checks"][1]["status"] == "fail"
    assert "port" in result["unhealthy"]
