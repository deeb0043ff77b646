"""The lab for real: `selfheal lab up` → healthy → Ansible over SSH → idempotent → `down`.

Each test runs its own lab (own state dir, namespace prefix, bridge, subnet and ports), so
it never meets a demo lab running on the same machine, and tears down all it made.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO, ansible_bin, run_playbook

pytestmark = pytest.mark.integration

TAG = os.getpid() % 1000
HTTP_FALLBACK = "{python} -m http.server --bind {address} --directory %s {port}"


def _missing() -> str | None:
    for tool in ("supervisord", "supervisorctl", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        return "sshd is not installed (openssh-server)"
    return None


def _web_command(tmp_path: Path) -> list[str]:
    """The demo service when it is there; otherwise a static server answering /livez."""
    if importlib.util.find_spec("selfheal.health.demo") is not None:
        return []
    www = tmp_path / "www"
    www.mkdir()
    for name in ("livez", "readyz", "metrics"):
        (www / name).write_text("ok\n")
    return ["--web-command", HTTP_FALLBACK % www]


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfheal.cli", "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def _netns_names() -> set[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> set[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _lab_options(mode: str, state: Path) -> list[str]:
    opts = ["--mode", mode, "--state-dir", str(state), "--hosts", "3"]
    if mode == "netns":
        opts += ["--netns-prefix", f"shlt{TAG}-", "--bridge", f"shlt{TAG}"]
        opts += ["--subnet", f"10.78.{TAG % 250}.0/24"]
    else:
        opts += ["--subnet", f"127.78.{TAG % 250}.0/24", "--ssh-port-base", str(20000 + TAG * 10)]
    return opts


def _ansible_ping(inventory: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        # No lingering SSH master connections once the test is over.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        "ANSIBLE_TIMEOUT": "20",
    }
    return subprocess.run(
        [ansible_bin("ansible"), "-i", inventory, "all", "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def _lifecycle(mode: str, tmp_path: Path) -> None:
    state = tmp_path / "s"
    opts = _lab_options(mode, state) + _web_command(tmp_path)
    try:
        started = time.monotonic()
        up = _cli("up", "--json", *opts)
        assert up.returncode == 0, up.stderr
        up_seconds = time.monotonic() - started
        first = json.loads(up.stdout)
        assert [h["host"] for h in first["hosts"]] == ["lab1", "lab2", "lab3"]
        assert all(h["actions"] for h in first["hosts"])
        inventory = first["inventory"]
        assert Path(inventory).is_file()

        status = _cli("status", "--json", "--state-dir", str(state))
        assert status.returncode == 0, status.stdout + status.stderr
        info = json.loads(status.stdout)
        assert info["healthy"] and info["mode"] == mode
        table = _cli("status", "--state-dir", str(state))
        assert table.returncode == 0 and table.stdout.startswith("HOST")

        ping = _ansible_ping(inventory)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert ping.stdout.count("SUCCESS") == 3, ping.stdout

        record = json.loads((state / "lab.json").read_text())
        before = Path(inventory).read_text()
        again = _cli("up", *opts)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already up") == 3, again.stdout
        assert json.loads((state / "lab.json").read_text())["pids"] == record["pids"]
        assert Path(inventory).read_text() == before
    finally:
        started = time.monotonic()
        down = _cli("down", "--state-dir", str(state))
        down_seconds = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    print(f"{mode}: lab up {up_seconds:.1f}s, lab down {down_seconds:.1f}s")

    pids = [pid for host in record["pids"].values() for pid in host.values() if pid]
    assert len(pids) == 6
    assert not [pid for pid in pids if _alive(pid)]
    if mode == "netns":
        assert not {n for n in _netns_names() if n.startswith(f"shlt{TAG}-")}
        assert not {link for link in _links() if link.startswith(f"shlt{TAG}")}
    # Everything the lab wrote is gone, and so is the state directory it made.
    assert not state.exists(), sorted(str(p) for p in state.rglob("*"))
    again = _cli("down", "--state-dir", str(state), *_lab_options(mode, state))
    assert again.returncode == 0 and "nothing to remove" in again.stdout


@pytest.fixture
def cleanup_network():
    """A safety net should a test fail half-way: remove this test's namespaces and links."""
    yield
    for ns in {n for n in _netns_names() if n.startswith(f"shlt{TAG}-")}:
        subprocess.run(["ip", "netns", "del", ns], timeout=30, check=False)
    for link in {x for x in _links() if x.startswith(f"shlt{TAG}")}:
        subprocess.run(["ip", "link", "del", link], timeout=30, check=False)


@pytest.mark.timeout(600)
def test_lab_netns_lifecycle(tmp_path: Path, cleanup_network) -> None:
    if os.geteuid() != 0:
        pytest.skip("netns mode needs root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")
    if reason := _missing():
        pytest.skip(reason)
    _lifecycle("netns", tmp_path)


@pytest.mark.timeout(600)
def test_lab_loopback_lifecycle(tmp_path: Path) -> None:
    if reason := _missing():
        pytest.skip(reason)
    _lifecycle("loopback", tmp_path)


def test_netns_mode_without_root_points_to_loopback(tmp_path: Path, monkeypatch) -> None:
    from selfheal.lab import Lab, LabError, LabSpec

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    lab = Lab(LabSpec(state_dir=tmp_path / "state", bridge=f"shlt{TAG}"))
    with pytest.raises(LabError, match="--mode loopback"):
        lab.up()
    assert not (tmp_path / "state").exists()


@pytest.mark.timeout(600)
def test_lab_playbook_up_is_idempotent_and_down_cleans(tmp_path: Path) -> None:
    if reason := _missing():
        pytest.skip(reason)
    state = tmp_path / "s"
    options = _lab_options("loopback", state)
    lab_vars = {
        "lab_mode": "loopback",
        "lab_state_dir": str(state),
        "lab_options": options[options.index("--subnet") :] + _web_command(tmp_path),
    }
    try:
        first = run_playbook(
            REPO / "playbooks/lab.yml", extra_vars={**lab_vars, "lab_action": "up"}
        )
        assert first.returncode == 0, first.stdout + first.stderr
        assert "changed=1" in first.stdout
        second = run_playbook(
            REPO / "playbooks/lab.yml", extra_vars={**lab_vars, "lab_action": "up"}
        )
        assert second.returncode == 0, second.stdout + second.stderr
        assert "changed=0" in second.stdout
        status = run_playbook(
            REPO / "playbooks/lab.yml", extra_vars={**lab_vars, "lab_action": "status"}
        )
        assert status.returncode == 0 and '"healthy": true' in status.stdout, status.stdout
    finally:
        down = run_playbook(
            REPO / "playbooks/lab.yml", extra_vars={**lab_vars, "lab_action": "down"}
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert "changed=1" in down.stdout
    assert not state.exists()


@pytest.mark.timeout(600)
def test_lab_postgres_primary_streams_to_the_replica(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL in the lab needs root (it runs as the postgres user)")
    if reason := _missing():
        pytest.skip(reason)
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    psql = str(bins[-1].with_name("psql"))
    state = tmp_path / "s"
    port = str(25432 + TAG % 1000)
    options = [*_lab_options("loopback", state), "--hosts", "2", "--postgres"]
    options += ["--postgres-port", port, *_web_command(tmp_path)]
    try:
        up = _cli("up", "--json", *options)
        assert up.returncode == 0, up.stderr
        status = json.loads(_cli("status", "--json", "--state-dir", str(state)).stdout)
        assert status["healthy"], status
        assert [h.get("postgres") for h in status["hosts"]] == ["primary", "replica"]
        primary, replica = (h["address"] for h in status["hosts"])
        pg_root = Path(json.loads((state / "lab.json").read_text())["postgres"]["root"])
        env = {**os.environ, "PGPASSWORD": (state / "postgres.pass").read_text().strip()}

        def sql(host: str, query: str) -> str:
            cmd = [psql, "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-tAc"]
            out = subprocess.run(
                [*cmd, query], capture_output=True, text=True, timeout=30, env=env, check=False
            )
            assert out.returncode == 0, out.stderr
            return out.stdout.strip()

        sql(primary, "CREATE TABLE lab_probe (x int); INSERT INTO lab_probe VALUES (42)")
        deadline = time.monotonic() + 30
        while sql(replica, "SELECT count(*) FROM pg_class WHERE relname = 'lab_probe'") != "1":
            assert time.monotonic() < deadline, "the replica never saw the table"
            time.sleep(0.5)
        assert sql(replica, "SELECT x FROM lab_probe") == "42"
        again = _cli("up", *options)
        assert again.returncode == 0 and again.stdout.count("already up") == 2, again.stdout
    finally:
        down = _cli("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert not pg_root.exists() and not state.exists()


@pytest.mark.timeout(300)
def test_lab_refuses_a_namespace_it_did_not_make(tmp_path: Path, cleanup_network) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("netns mode needs root and iproute2")
    if reason := _missing():
        pytest.skip(reason)
    first = _lab_options("netns", tmp_path / "a")
    subprocess.run(["ip", "netns", "add", f"shlt{TAG}-1"], timeout=30, check=True)
    up = _cli("up", *first)
    assert up.returncode == 2 and "did not create it" in up.stderr, up.stderr
    down = _cli("down", "--state-dir", str(tmp_path / "a"))
    assert down.returncode == 0, down.stderr
    assert f"shlt{TAG}-1" in _netns_names()  # not the lab's: left alone
