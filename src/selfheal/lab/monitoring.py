"""Optional real Prometheus + Alertmanager for the lab (`selfheal lab up --monitoring`).

Both run in the root namespace on 127.0.0.1, with their configs and data under
`<state-dir>/monitoring`; Prometheus scrapes every lab host's /metrics and loads the alert
rules of the checkout's `monitoring/prometheus/rules`. `lab down` stops them by recorded PID.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import yaml

import selfheal
from selfheal.lab import render
from selfheal.lab.lab import Lab, LabError, _wait, http_ok, pid_alive, terminate


def repo_monitoring_dir() -> Path | None:
    """`monitoring/` of the checkout this package runs from (src layout), else the copy the
    wheel ships inside the package."""
    package = Path(selfheal.__file__).resolve().parent
    for candidate in (package.parents[1] / "monitoring", package / "monitoring"):
        if (candidate / "prometheus" / "rules").is_dir():
            return candidate
    return None


def dispatcher_token(spec) -> Path:
    """The bearer token Alertmanager presents to the dispatcher (made once, mode 0600)."""
    path = spec.monitoring_dir / "dispatcher-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path


def alertmanager_config(source: Path, token_file: Path, dispatcher_port: int | None = None) -> str:
    """The repository's Alertmanager config, with every webhook authenticating by token (and
    pointed at the dispatcher's port when the lab runs it on another one)."""
    config = yaml.safe_load((source / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in config.get("receivers") or []:
        for webhook in receiver.get("webhook_configs") or []:
            if dispatcher_port is not None:
                webhook["url"] = re.sub(r":\d+/", f":{dispatcher_port}/", webhook["url"], count=1)
            webhook.setdefault("http_config", {})["authorization"] = {
                "type": "Bearer",
                "credentials_file": str(token_file),
            }
    return yaml.safe_dump(config, sort_keys=False)


def _binary(*names: str) -> str:
    for name in names:
        if found := shutil.which(name):
            return found
    raise LabError(
        f"{names[0]} is not installed (Debian packages: prometheus, prometheus-alertmanager)"
    )


def start(
    lab: Lab, source: Path | None = None, timeout: float = 30.0, dispatcher_port: int | None = None
) -> list[str]:
    source = source or repo_monitoring_dir()
    if source is None:
        raise LabError("no monitoring/ directory found beside the package; pass --monitoring-dir")
    spec = lab.spec
    mdir = spec.monitoring_dir
    record = lab.record.setdefault("monitoring", {})
    done: list[str] = []
    rules = mdir / "rules"
    if rules.exists():
        shutil.rmtree(rules)
    shutil.copytree(source / "prometheus" / "rules", rules)
    (mdir / "prometheus.yml").write_text(render.prometheus_config_text(spec, rules))
    (mdir / "alertmanager.yml").write_text(
        alertmanager_config(source, dispatcher_token(spec), dispatcher_port)
    )
    lab._save()
    daemons = {
        "alertmanager": (
            [
                _binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={mdir / 'alertmanager.yml'}",
                f"--storage.path={mdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{spec.alertmanager_port}",
                "--cluster.listen-address=",
            ],
            spec.alertmanager_port,
        ),
        "prometheus": (
            [
                _binary("prometheus"),
                f"--config.file={mdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={mdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{spec.prometheus_port}",
                "--storage.tsdb.retention.time=1d",
            ],
            spec.prometheus_port,
        ),
    }
    for name, (cmd, port) in daemons.items():
        entry = record.get(name) or {}
        if pid_alive(entry.get("pid"), Path(cmd[0]).name):
            continue
        with (mdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        record[name] = {"pid": proc.pid, "url": f"http://127.0.0.1:{port}"}
        lab._save()
        if not _wait(lambda p=port: http_ok(f"http://127.0.0.1:{p}/-/ready", 1.0), timeout, 0.3):
            raise LabError(f"{name} is not ready on 127.0.0.1:{port}; see {mdir / (name + '.log')}")
        done.append(f"{name} started (pid {proc.pid}) on 127.0.0.1:{port}")
    return done


def stop(lab: Lab) -> list[str]:
    done = []
    for name, entry in (lab.record.get("monitoring") or {}).items():
        pid = entry.get("pid") if isinstance(entry, dict) else None
        if pid and terminate(pid, name, timeout=15):
            done.append(f"{name} stopped (pid {pid})")
    return done
