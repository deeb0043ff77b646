"""The capacity_scale role on a real supervisord the test starts: a service group of http
servers `web-<i>` (instance i on base port + i), an upstream file listing the active ones,
scale out within min/max, warm-standby promotion when a cold start would exceed the RTO,
scale back in to the baseline, idempotence, check mode and refusals."""

from __future__ import annotations

import random
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from support import REPO, run_playbook

from selfheal.supervisor import Program, Supervisor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Supervisor.available(), reason="supervisord is not installed"),
]

PLAYBOOK = REPO / "playbooks/scale_service.yml"
SPAN = 8  # instance indexes 1..SPAN may be used


def _free_base() -> int:
    """A base port whose base+1..base+SPAN are all free on 127.0.0.1 (bounded search)."""
    for _ in range(50):
        # Below the ephemeral range (32768-60999), where outgoing connections take their ports.
        base = random.randrange(20000, 32000, 10)
        try:
            for i in range(1, SPAN + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


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


class Group:
    """A supervisord with web-1, web-2 (the baseline) and optionally web-5 as a warm standby."""

    def __init__(self, tmp_path: Path, standby: bool):
        self.base = _free_base()
        self.root = tmp_path
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("ok\n")
        self.command = [
            shutil.which("python3") or "python3", "-m", "http.server", "{port}",
            "--bind", "127.0.0.1", "--directory", str(www),
        ]  # fmt: skip
        self.conf_dir = tmp_path / "conf.d"
        self.conf_dir.mkdir()
        self.upstream = tmp_path / "upstream-web.conf"
        self.sup = Supervisor(tmp_path / "sv")
        indexes = [1, 2, 5] if standby else [1, 2]
        self.sup.write_config([Program(f"web-{i}", self._command(i)) for i in indexes])
        with self.sup.config.open("a") as config:
            config.write(f"\n[include]\nfiles = {self.conf_dir}/*.conf\n")
        self.upstream.write_text(
            "upstream web {\n"
            + "".join(f"    server 127.0.0.1:{self.base + i};\n" for i in (1, 2))
            + "}\n"
        )
        self.sup.start()
        assert _wait(lambda: all(self.sup.is_running(f"web-{i}") for i in indexes))
        assert _wait(lambda: all(_serving(self.base + i) for i in indexes))

    def _command(self, index: int) -> str:
        return " ".join(self.command).replace("{port}", str(self.base + index))

    def inventory(self, **group) -> Path:
        spec = {
            "supervisor_config": str(self.sup.config),
            "conf_dir": str(self.conf_dir),
            "command": self.command,
            "base_port": self.base,
            "min": 1,
            "baseline": 2,
            "max": 4,
            "rto_seconds": 60,
            "cold_start_seconds": 10,
            "upstream_file": str(self.upstream),
            **group,
        }
        path = self.root / "inventory.yml"
        path.write_text(
            yaml.safe_dump({"all": {"hosts": {"localhost": {"selfheal_capacity": {"web": spec}}}}})
        )
        return path

    def listed(self) -> list[int]:
        ports = [
            int(line.split(":")[1].rstrip(";"))
            for line in self.upstream.read_text().splitlines()
            if line.strip().startswith("server ")
        ]
        return sorted(p - self.base for p in ports)

    def running(self) -> list[int]:
        out = self.sup.ctl("status").stdout
        return sorted(
            int(line.split()[0].rsplit("-", 1)[1])
            for line in out.splitlines()
            if line.startswith("web-") and " RUNNING " in f" {line} "
        )

    def stop(self) -> None:
        self.sup.stop()


@pytest.fixture
def group(tmp_path: Path):
    g = Group(tmp_path, standby=False)
    yield g
    g.stop()


@pytest.fixture
def group_with_standby(tmp_path: Path):
    g = Group(tmp_path, standby=True)
    yield g
    g.stop()


def _scale(g: Group, *, check: bool = False, group: dict | None = None, **extra):
    inventory = g.inventory(**(group or {}))
    return run_playbook(
        PLAYBOOK,
        "-i",
        str(inventory),
        extra_vars={"target": "localhost", "service": "web", **extra},
        check=check,
    )


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def test_scale_out_within_bounds_then_nothing_more(group: Group) -> None:
    refused = _scale(group, direction="out", scale_by=3)  # 2 + 3 > max 4
    assert refused.returncode != 0
    assert "refusing to scale web to 5 instances: outside its bounds 1..4" in refused.stdout
    assert group.listed() == [1, 2]
    assert list(group.conf_dir.iterdir()) == []

    result = _scale(group, direction="out", scale_by=2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert group.listed() == [1, 2, 3, 4]
    assert group.running() == [1, 2, 3, 4]
    assert all(_serving(group.base + i) for i in (3, 4))
    assert sorted(p.name for p in group.conf_dir.iterdir()) == ["web-3.conf", "web-4.conf"]

    again = _scale(group, direction="out", scale_by=2)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in _recap(again.stdout)
    assert group.listed() == [1, 2, 3, 4]


def test_warm_standby_promoted_then_scale_in_returns_to_the_baseline(
    group_with_standby: Group,
) -> None:
    g = group_with_standby
    slow = {"rto_seconds": 5, "cold_start_seconds": 30}  # a cold start would miss the RTO
    standby_pid = g.sup.program_pid("web-5")
    upstream = g.upstream.read_text()

    preview = _scale(g, group=slow, direction="out", scale_by=2, check=True)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "promote standby [5], cold start [3]" in preview.stdout
    assert "changed=0" not in _recap(preview.stdout)  # it reports what it would do...
    assert g.upstream.read_text() == upstream  # ...and does nothing
    assert list(g.conf_dir.iterdir()) == []
    assert g.running() == [1, 2, 5]

    out = _scale(g, group=slow, direction="out", scale_by=2)
    assert out.returncode == 0, out.stdout + out.stderr
    assert g.listed() == [1, 2, 3, 5]  # the standby first, the rest cold-started
    assert [p.name for p in g.conf_dir.iterdir()] == ["web-3.conf"]
    assert g.sup.program_pid("web-5") == standby_pid  # promoted as it was, not restarted

    back = _scale(g, group=slow, direction="in")
    assert back.returncode == 0, back.stdout + back.stderr
    assert g.listed() == [1, 2]
    assert list(g.conf_dir.iterdir()) == []
    assert "web-3" not in g.sup.ctl("status").stdout  # removed from supervisord
    assert g.running() == [1, 2, 5]  # the promoted standby is a standby again
    assert _wait(lambda: not _serving(g.base + 3))

    again = _scale(g, group=slow, direction="in")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in _recap(again.stdout)


def test_cold_start_when_it_fits_the_rto(group_with_standby: Group) -> None:
    g = group_with_standby
    result = _scale(g, group={"rto_seconds": 60, "cold_start_seconds": 10}, direction="out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert g.listed() == [1, 2, 3]
    assert [p.name for p in g.conf_dir.iterdir()] == ["web-3.conf"]
    assert 5 in g.running()  # the standby stays a standby


def test_bounds_that_would_go_below_min_are_refused(group: Group) -> None:
    result = _scale(group, group={"min": 3, "baseline": 2}, direction="in")
    assert result.returncode != 0
    assert "need 1 <= min (3) <= baseline (2)" in result.stdout
    assert group.listed() == [1, 2]


def test_refuses_a_host_without_the_compliance_tags(group: Group) -> None:
    result = _scale(
        group, direction="out", scale_by=2, capacity_scale_required_tags={"env": "production"}
    )
    assert result.returncode != 0
    assert "localhost is not cleared for automated remediation" in result.stdout
    assert "changed=0" in _recap(result.stdout)
    assert group.listed() == [1, 2]


def test_refuses_an_undeclared_group(group: Group) -> None:
    result = run_playbook(
        PLAYBOOK, "-i", str(group.inventory()),
        extra_vars={"target": "localhost", "service": "db"},
    )  # fmt: skip
    assert result.returncode != 0
    assert 'the service group "" needs a name' in result.stdout
    assert group.listed() == [1, 2]
