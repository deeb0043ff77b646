"""Shared by the dispatcher tests: a small policy, inventory and playbook, alert bodies, and an
ASGI client that calls the app in-process (no sockets) on one long-lived event loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from support import REPO

TOKEN = "intake-token-0123456789"
READ_TOKEN = "reader-token-0123456789"
ALICE = "alice-token-0123456789ab"
BOB = "bob-token-0123456789abcd"
HMAC_SECRET = "grafana-hmac-secret"


def hmac_headers(body: bytes, secret: str = HMAC_SECRET, at: int | None = None) -> dict:
    """The headers a Grafana webhook with HMAC signing sends: HMAC-SHA256 (hex) over
    "<timestamp>:<body>", and the timestamp (Unix seconds) in its own header."""
    stamp = str(int(time.time()) if at is None else at)
    mac = hmac.new(secret.encode(), stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Selfheal-Signature": "sha256=" + mac, "X-Grafana-Alerting-Timestamp": stamp}


def pause_playbook(path: Path, seconds: int) -> Path:
    """A playbook that only waits `seconds` on its target: a run that stays running."""
    play = {
        "hosts": "{{ target }}",
        "gather_facts": False,
        "tasks": [{"name": "Take long", "ansible.builtin.pause": {"seconds": seconds}}],
    }
    path.write_text(yaml.safe_dump([play]))
    return path


@contextlib.contextmanager
def serving(dispatcher) -> Iterator[str]:
    """The dispatcher's app under uvicorn on an ephemeral 127.0.0.1 port; yields its URL."""
    import uvicorn

    from selfheal.dispatcher import build_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(dispatcher, manage_lifecycle=False),
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def write_playbook(path: Path, marker: Path) -> Path:
    """A trivial one-task playbook that records each run in `marker` (one line a run)."""
    path.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Trivial heal",
                    "hosts": "{{ target }}",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Record the run",
                            "ansible.builtin.lineinfile": {
                                "path": str(marker),
                                "line": "{{ target }} {{ service }} {{ incident_id }}",
                                "create": True,
                                "insertafter": "EOF",
                            },
                            "delegate_to": "localhost",
                        }
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    return path


def policy_data(playbook: str, **limits) -> dict:
    return {
        "version": 1,
        "limits": {
            "runs_per_target": {"count": 3, "per": "1h"},
            "runs_per_runbook": {"count": 5, "per": "1h"},
            "max_concurrent": 2,
            "max_concurrent_per_target": 1,
            "max_unhealthy": "100%",
            **limits,
        },
        "services": {
            "app": {"dependencies": ["db"], "hosts": ["localhost", "web-01", "web-02"]},
            "db": {"hosts": ["db-01", "localhost"]},
            "ops": {"hosts": ["localhost", "web-01"]},
        },
        "runbooks": {
            "heal": {"playbook": playbook, "risk": "low", "timeout": "2m"},
            "risky": {"playbook": playbook, "risk": "high", "timeout": "2m"},
            "never": {"playbook": playbook, "risk": "critical"},
        },
        "risk_tiers": {
            "high": {
                "mode": "approval",
                "approval": {
                    "users": ["alice"],
                    "groups": ["sre-leads"],
                    "quorum": 1,
                    "timeout": "30m",
                    "on_timeout": "deny",
                },
            }
        },
        "routes": [
            {
                "name": "app-down",
                "match": {"alertname": "ServiceDown", "service": "app"},
                "runbook": "heal",
                "target_label": "host",
            },
            {
                "name": "db-down",
                "match": {"alertname": "ServiceDown", "service": "db"},
                "runbook": "heal",
                "target_label": "host",
            },
            {
                "name": "ops",
                "match": {"alertname": "OpsRisky"},
                "runbook": "risky",
                "service": "ops",
                "target_label": "host",
            },
            {
                "name": "never",
                "match": {"alertname": "Critical"},
                "runbook": "never",
                "service": "ops",
                "target_label": "host",
            },
        ],
    }


INVENTORY = {
    "all": {
        "hosts": {
            "localhost": {"ansible_connection": "local"},
            "web-01": {"ansible_connection": "local"},
            "web-02": {"ansible_connection": "local"},
            "db-01": {"ansible_connection": "local"},
        }
    }
}


class Response:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class Client:
    """Drives the ASGI app on a private event loop."""

    def __init__(self, app):
        self.app = app
        self.loop = asyncio.new_event_loop()

    async def _call(self, method, path, body, headers):
        path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        out: dict = {}

        async def send(message):
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
            else:
                out["body"] = out.get("body", b"") + message.get("body", b"")

        await self.app(scope, receive, send)
        return Response(out["status"], out["headers"], out.get("body", b""))

    def request(self, method, path, body=b"", headers=None, token=None):
        """`headers` may map a name to None to leave it out (by default a body goes as
        application/json, like every real sender's)."""
        headers = dict(headers or {})
        if not any(k.lower() == "content-type" for k in headers) and method == "POST":
            headers["content-type"] = "application/json"
        headers = {k: v for k, v in headers.items() if v is not None}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
        return self.loop.run_until_complete(
            asyncio.wait_for(self._call(method, path, body, headers), 30)
        )

    def post(self, path, body=b"", **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def close(self):
        self.loop.close()


def wait_for(predicate, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def am_alert(labels: dict, status: str = "firing", starts="2026-11-26T01:00:00Z", **extra):
    alert = {"status": status, "labels": labels, "annotations": {}, "startsAt": starts, **extra}
    if status == "resolved":
        alert["endsAt"] = "2026-11-26T01:10:00Z"
    return alert


def am_body(*alerts) -> dict:
    return {
        "version": "4",
        "status": alerts[0]["status"],
        "receiver": "selfheal",
        "groupLabels": {},
        "commonLabels": {},
        "alerts": list(alerts),
    }


# -- a real `selfheal serve` child process (integration tests, benchmarks) -----------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, token=None, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw
    finally:
        conn.close()


def _ignore_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class Server:
    """`python -m selfheal.cli serve --config FILE` as a child process (its own group)."""

    def __init__(self, config: Path, port: int, log: Path, *, ignore_sighup: bool = False):
        self.config = config
        self.port = port
        self.log = log
        self.ignore_sighup = ignore_sighup  # started as `nohup` and many supervisors do
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "selfheal.cli", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.config.parent,
                start_new_session=True,
                preexec_fn=_ignore_sighup if self.ignore_sighup else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"selfheal serve exited: {self.log.read_text()[-3000:]}")
            try:
                if request(self.port, "GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"selfheal serve did not get ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the dispatcher and its children (ansible runs): a crash, no cleanup."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill_dispatcher(self) -> None:
        """SIGKILL the dispatcher process alone, as a supervisor or the OOM killer would: its
        children (the runs) are left to themselves."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
