"""playbooks/health.yml over a small inventory: one table for the fleet, and an exit code
that cron or CI can act on. The targets are real: local HTTP servers and a closed port."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import pytest
import yaml
from support import REPO, ansible_bin

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "checks": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/readyz"
    server.shutdown()
    server.server_close()


def _inventory(tmp_path: Path, hosts: dict) -> Path:
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    }
    inventory = {"all": {"hosts": {name: {**local, **hvars} for name, hvars in hosts.items()}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def _run(inventory: Path, *args: str):
    import os
    import subprocess

    return subprocess.run(
        [
            ansible_bin("ansible-playbook"),
            "-i",
            str(inventory),
            *args,
            str(REPO / "playbooks/health.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=dict(os.environ),
        check=False,
    )


def _http(url: str) -> list[dict]:
    return [{"name": "web", "kind": "http", "url": url, "json_path": "status", "json_expect": "ok"}]


def test_all_healthy_exits_zero_and_prints_the_table(tmp_path: Path, web: str) -> None:
    inventory = _inventory(
        tmp_path,
        {"web1": {"health_checks": _http(web)}, "web2": {"health_checks": _http(web)}, "bare": {}},
    )
    run = _run(inventory)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "HOST" in run.stdout and "STATUS" in run.stdout
    for host, verdict in (("web1", "healthy"), ("web2", "healthy"), ("bare", "no checks")):
        assert any(host in line and verdict in line for line in run.stdout.splitlines()), host


def test_one_unhealthy_and_one_unreachable_fail_the_run(tmp_path: Path, web: str) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/readyz"
    inventory = _inventory(
        tmp_path,
        {
            "web1": {"health_checks": _http(web)},
            "web2": {"health_checks": _http(closed)},
            "gone": {
                "health_checks": _http(web),
                "ansible_connection": "ssh",
                "ansible_host": "127.0.0.1",
                "ansible_port": _free_port(),
            },
        },
    )
    run = _run(inventory)
    assert run.returncode != 0
    lines = run.stdout.splitlines()
    assert any("web1" in line and "healthy" in line and "UNHEALTHY" not in line for line in lines)
    assert any("web2" in line and "UNHEALTHY" in line for line in lines)
    assert any("gone" in line and "UNREACHABLE" in line for line in lines)
    assert "2 of 3" in run.stdout and "gone, web2" in run.stdout


def test_health_targets_limits_the_run(tmp_path: Path, web: str) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/readyz"
    inventory = _inventory(
        tmp_path, {"web1": {"health_checks": _http(web)}, "web2": {"health_checks": _http(closed)}}
    )
    run = _run(inventory, "-e", "health_targets=web1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "web2" not in run.stdout
