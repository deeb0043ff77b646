"""selfheal.core.health_check in a real ansible-playbook run on localhost."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support import COLLECTIONS, REPO, run_playbook

if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.selfheal.core.plugins.module_utils.health_runner import (
    fingerprint,
    validate_checks,
)

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "tests/integration/playbooks/health_check_http.yml"


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        healthy = self.server.healthy
        body = json.dumps({"status": "ok" if healthy else "fail", "checks": {}}).encode()
        self.send_response(200 if healthy else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def endpoint():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    httpd.healthy = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _vars(endpoint, tmp_path, healthy: bool, **extra) -> dict:
    url = f"http://127.0.0.1:{endpoint.server_address[1]}/health"
    failing = [] if healthy else validate_checks([{"name": "api", "kind": "http", "url": url}])
    return {
        "health_url": url,
        "health_state_path": str(tmp_path / "state" / "health.json"),
        "health_marker": str(tmp_path / "marker"),
        "health_expect_healthy": healthy,
        "health_expect_fingerprint": fingerprint(failing),
        **extra,
    }


def _output(proc) -> str:
    return f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_healthy_then_unhealthy(endpoint, tmp_path):
    proc = run_playbook(PLAYBOOK, extra_vars=_vars(endpoint, tmp_path, healthy=True))
    assert proc.returncode == 0, _output(proc)
    assert (tmp_path / "marker").exists()
    state = json.loads((tmp_path / "state" / "health.json").read_text())
    assert state["checks"]["api"]["history"] == [True]

    endpoint.healthy = False
    proc = run_playbook(PLAYBOOK, extra_vars=_vars(endpoint, tmp_path, healthy=False))
    assert proc.returncode == 0, _output(proc)
    assert "changed=0" in proc.stdout


def test_check_mode_runs_no_command_and_writes_no_state(endpoint, tmp_path):
    proc = run_playbook(PLAYBOOK, extra_vars=_vars(endpoint, tmp_path, healthy=True), check=True)
    assert proc.returncode == 0, _output(proc)
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "state").exists()


def test_fail_on_unhealthy_fails_the_play(endpoint, tmp_path):
    endpoint.healthy = False
    extra = _vars(endpoint, tmp_path, healthy=False, health_fail_on_unhealthy=True)
    proc = run_playbook(PLAYBOOK, extra_vars=extra)
    assert proc.returncode == 2, _output(proc)
    assert "unhealthy: api (http: HTTP status 503, expected 200" in proc.stdout
    assert "failed=1" in proc.stdout
