"""The selfheal dispatcher for the lab: `selfheal serve` on the lab's policy and inventory.

Alertmanager (started by `selfheal lab up --monitoring`) posts to it with the lab's bearer
token; it runs the heal playbooks on the lab hosts over SSH. Its store, audit trail, keys and
runs live under `<state-dir>/dispatcher`; `lab down` stops it by its recorded PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from selfheal.lab.lab import Lab, LabError, _wait, http_ok, pid_alive, terminate
from selfheal.lab.monitoring import dispatcher_token

DEFAULT_PORT = 9095  # where the lab's Alertmanager config posts


def state_dir(lab: Lab) -> Path:
    return lab.spec.state_dir / "dispatcher"


def audit_paths(lab: Lab) -> tuple[Path, Path]:
    """(trail directory, key file) of the lab dispatcher's audit trail."""
    base = state_dir(lab)
    return base / "audit", base / "audit-keys.json"


def url(lab: Lab) -> str | None:
    entry = lab.record.get("dispatcher") or {}
    return entry.get("url")


def start(lab: Lab, port: int = DEFAULT_PORT, timeout: float = 30.0) -> list[str]:
    entry = lab.record.get("dispatcher") or {}
    if pid_alive(entry.get("pid"), "serve"):
        return []
    if not lab.spec.policy.exists() or not lab.spec.inventory.exists():
        raise LabError("the lab is not up: no inventory/policy to serve; run `selfheal lab up`")
    base = state_dir(lab)
    base.mkdir(parents=True, exist_ok=True)
    lab._note("files", str(base))  # `lab down` removes it with the rest
    trail, keys = audit_paths(lab)
    cmd = [
        sys.executable,
        "-m",
        "selfheal.cli",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--store",
        str(base / "store.db"),
        "--policy",
        str(lab.spec.policy),
        "--inventory",
        str(lab.spec.inventory),
        "--audit",
        str(trail),
        "--audit-key-file",
        str(keys),
        "--token-file",
        str(dispatcher_token(lab.spec)),
        "--token-name",
        "alertmanager",
    ]
    with (base / "dispatcher.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab.record["dispatcher"] = {"pid": proc.pid, "url": f"http://127.0.0.1:{port}"}
    lab._save()
    if not _wait(lambda: http_ok(f"http://127.0.0.1:{port}/readyz", 1.0), timeout, 0.3):
        terminate(proc.pid, "serve")
        raise LabError(
            f"the dispatcher is not ready on 127.0.0.1:{port}; see {base / 'dispatcher.log'}"
        )
    return [f"dispatcher started (pid {proc.pid}) on 127.0.0.1:{port}"]


def stop(lab: Lab) -> list[str]:
    entry = lab.record.get("dispatcher") or {}
    pid = entry.get("pid")
    if pid and terminate(pid, "serve", timeout=15):
        return [f"dispatcher stopped (pid {pid})"]
    return []


def api(lab: Lab, path: str, timeout: float = 5.0) -> dict:
    """GET a dispatcher API path with the lab's token."""
    base = url(lab)
    if base is None:
        raise LabError("the lab dispatcher is not running")
    token = dispatcher_token(lab.spec).read_text().strip()
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
