"""The auto_recovery_defaults role under a root prefix the test makes: systemd drop-ins
(read back as INI; systemd is not init here, so the daemon-reload is skipped), supervisord
programs with restart defaults in an include file a real supervisord reads (a killed
program comes back by itself), and Kubernetes probe patches applied by the project's
kustomize subset to a sample Deployment and validated offline with kubernetes-validate.
Idempotence and check mode too."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from support import REPO, run_playbook

from selfheal.gitops.kustomize import build
from selfheal.supervisor import Supervisor

pytestmark = pytest.mark.integration

KUBERNETES_VERSION = "1.30.0"
PLAYBOOK = """\
- name: Apply the auto-recovery defaults
  hosts: localhost
  gather_facts: false
  roles:
    - role: selfheal.core.auto_recovery_defaults
      vars:
        auto_recovery_defaults_root_prefix: "{{ root }}"
        auto_recovery_defaults_systemd_units:
          - web.service
          - {name: worker.service, restart_sec: 2, watchdog_sec: 30}
        auto_recovery_defaults_supervisor_programs: "{{ programs }}"
        auto_recovery_defaults_supervisor_include: /etc/supervisor/conf.d/selfheal-recovery.conf
        auto_recovery_defaults_supervisor_config: "{{ supervisor_config }}"
        auto_recovery_defaults_k8s_patch_dir: /gitops/patches
        auto_recovery_defaults_k8s_deployments:
          - {name: web, container: web, port: 8080}
          - {name: api, container: api, port: 9000, namespace: shop, readiness_path: /ready}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def _ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


@pytest.fixture
def setup(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    port = _free_port()
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("ok\n")
    include = root / "etc/supervisor/conf.d/selfheal-recovery.conf"
    sup = Supervisor(tmp_path / "sv")
    sup.write_config([])
    with sup.config.open("a") as config:
        config.write(f"\n[include]\nfiles = {include}\n")
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    programs = [
        {
            "name": "cache",
            "command": f"{shutil.which('python3')} -m http.server {port} --bind 127.0.0.1 --directory {www}",
            "startsecs": 1,
        }
    ]
    extra = {"root": str(root), "programs": programs, "supervisor_config": str(sup.config)}
    sup.start()
    yield {"root": root, "sup": sup, "port": port, "playbook": playbook, "extra": extra}
    sup.stop()


def test_applies_defaults_that_heal_and_a_second_run_changes_nothing(setup) -> None:
    root, sup = setup["root"], setup["sup"]
    first = run_playbook(setup["playbook"], extra_vars=setup["extra"])
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=0" not in _recap(first.stdout)

    web = _ini(root / "etc/systemd/system/web.service.d/selfheal-recovery.conf")
    assert dict(web["Service"]) == {"Restart": "on-failure", "RestartSec": "5"}
    assert dict(web["Unit"]) == {"StartLimitIntervalSec": "300", "StartLimitBurst": "5"}
    worker = _ini(root / "etc/systemd/system/worker.service.d/selfheal-recovery.conf")
    assert worker["Service"]["RestartSec"] == "2"
    assert worker["Service"]["WatchdogSec"] == "30"
    # The drop-ins changed, so the handler was notified, and guarded: a root prefix (and no
    # systemd as init here) means no daemon-reload.
    handler = first.stdout.split(
        "RUNNING HANDLER [selfheal.core.auto_recovery_defaults : Reload systemd]"
    )
    assert len(handler) == 2, first.stdout
    assert handler[1].lstrip("* \n").startswith("skipping: [localhost]")

    # supervisord read the include (the handler ran `supervisorctl update`) and runs `cache`
    # with autorestart=unexpected: killed, it comes back without anyone healing it.
    assert _wait(lambda: _serving(setup["port"]) and sup.is_running("cache"))
    program = _ini(root / "etc/supervisor/conf.d/selfheal-recovery.conf")["program:cache"]
    assert program["autorestart"] == "unexpected" and program["startretries"] == "3"
    assert program["startsecs"] == "1"  # the program's own value wins over the default
    pid = sup.program_pid("cache")
    os.kill(pid, signal.SIGKILL)
    assert _wait(lambda: (sup.program_pid("cache") or pid) != pid and sup.is_running("cache"))
    assert _wait(lambda: _serving(setup["port"]))

    second = run_playbook(setup["playbook"], extra_vars=setup["extra"])
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in _recap(second.stdout)


def test_probe_patches_build_a_valid_deployment(setup, tmp_path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    result = run_playbook(setup["playbook"], extra_vars=setup["extra"])
    assert result.returncode == 0, result.stdout + result.stderr
    patches = setup["root"] / "gitops/patches"
    assert sorted(p.name for p in patches.iterdir()) == ["api-probes.yaml", "web-probes.yaml"]

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1"}]},
            },
        },
    }
    (overlay / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    shutil.copy(patches / "web-probes.yaml", overlay / "web-probes.yaml")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["deployment.yaml"],
                "patches": [{"path": "web-probes.yaml"}],
            }
        )
    )
    (built,) = build(overlay)
    kubernetes_validate.validate(built, KUBERNETES_VERSION, strict=True)
    pod = built["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    (container,) = pod["containers"]
    assert container["image"] == "example/web:1"  # merged by name, not replaced
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 8080}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["failureThreshold"] == 30

    api = yaml.safe_load((patches / "api-probes.yaml").read_text())
    assert api["metadata"] == {"name": "api", "namespace": "shop"}
    api_probe = api["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert api_probe["httpGet"] == {"path": "/ready", "port": 9000}


def test_check_mode_writes_nothing(setup) -> None:
    result = run_playbook(setup["playbook"], extra_vars=setup["extra"], check=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" not in _recap(result.stdout)  # it reports what it would write
    assert list(setup["root"].iterdir()) == []
    assert "cache" not in setup["sup"].ctl("status").stdout


def test_refuses_a_unit_name_that_is_a_path(setup) -> None:
    play = setup["playbook"]
    play.write_text(play.read_text().replace("- web.service", "- ../../evil.service"))
    result = run_playbook(play, extra_vars=setup["extra"])
    assert result.returncode != 0
    assert "unit and Deployment names must be plain names" in result.stdout
    assert list(setup["root"].iterdir()) == []


def test_the_role_is_a_setup_role_not_a_runbook() -> None:
    role = REPO / "roles/auto_recovery_defaults"
    assert (role / "meta/argument_specs.yml").is_file()
    assert not (role / "meta/selfheal.yml").exists()
