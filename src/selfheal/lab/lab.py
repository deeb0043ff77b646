"""Bring the lab fleet up, report on it, and tear it down.

`up` is idempotent: every step first looks whether its result is already there. Whatever
it creates is recorded in `<state-dir>/lab.json` as it goes, so `down` removes exactly that
(namespaces, links, the bridge, processes by their recorded PIDs, files) even after a
failed or interrupted `up`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from selfheal.errors import SelfhealError
from selfheal.lab import render
from selfheal.lab.plan import HostSpec, LabSpec
from selfheal.supervisor import Supervisor

CMD_TIMEOUT = 30.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


class LabError(SelfhealError):
    """The lab cannot be brought up or down; the message says why and what to do."""


# -- small helpers --------------------------------------------------------------------------
def _run(
    *cmd: str, check: bool = True, timeout: float = CMD_TIMEOUT
) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from None
    if check and proc.returncode != 0:
        raise LabError(f"failed ({proc.returncode}): {' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    path.write_text(text)
    path.chmod(mode)
    return True


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie is gone for our purposes
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def pid_alive(pid: int | None, expect: str = "") -> bool:
    """The PID runs a process whose command line contains `expect` (guards against reuse)."""
    if not pid:
        return False
    cmdline = _cmdline(pid)
    return bool(cmdline) and expect in cmdline


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def terminate_all(targets: list[tuple[int, str]], timeout: float = 10.0) -> list[int]:
    """SIGTERM each (pid, expected command) at once, a bounded wait, then SIGKILL.

    Returns the PIDs that were running (and are not any more)."""
    running = [pid for pid, expect in targets if pid_alive(pid, expect)]
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for sig, wait in ((signal.SIGKILL, timeout), (None, 5.0)):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for pid in running:
                with contextlib.suppress(ChildProcessError):  # reap our own children
                    os.waitpid(pid, os.WNOHANG)
            if not any(pid_alive(pid) for pid in running):
                return running
            time.sleep(0.05)
        for pid in running:
            if sig is not None and pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
    return running


def terminate(pid: int, expect: str = "", timeout: float = 10.0) -> bool:
    """SIGTERM, a bounded wait, then SIGKILL. False if it was not running (as expected)."""
    return bool(terminate_all([(pid, expect)], timeout))


def port_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _wait(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def sshd_binary() -> str:
    found = shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise LabError("sshd is not installed (Debian package: openssh-server)")
    return found  # sshd re-executes itself and insists on an absolute path


def netns_support() -> str | None:
    """None when netns mode can work here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "netns mode needs root (it creates network namespaces, a bridge and veth pairs)"
    if shutil.which("ip") is None:
        return "netns mode needs iproute2's `ip` command"
    try:
        proc = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` does not work here: {exc}"
    if proc.returncode != 0:
        return f"`ip netns` does not work here: {proc.stderr.decode(errors='replace').strip()}"
    return None


# -- the lab --------------------------------------------------------------------------------
@dataclass
class HostResult:
    name: str
    address: str
    actions: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "already up" if not self.actions else ", ".join(self.actions)


class Lab:
    def __init__(self, spec: LabSpec):
        self.spec = spec
        self.record: dict = self._load_record()

    # The record of what this lab made --------------------------------------------------
    def _load_record(self) -> dict:
        try:
            data = json.loads(self.spec.record.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.spec.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.spec.record)

    def _note(self, kind: str, value) -> None:
        items = self.record.setdefault("created", {}).setdefault(kind, [])
        if value not in items:
            items.append(value)
            self._save()

    def _set_pid(self, host: HostSpec, what: str, pid: int | None) -> None:
        self.record.setdefault("pids", {}).setdefault(host.name, {})[what] = pid
        self._save()

    @classmethod
    def existing(cls, state_dir: Path) -> Lab | None:
        """The lab recorded in `state_dir`, with the options it was brought up with."""
        try:
            data = json.loads((Path(state_dir) / "lab.json").read_text())
            return cls(LabSpec.from_dict(data["spec"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def supervisor(self, host: HostSpec) -> Supervisor:
        launcher = ("ip", "netns", "exec", host.netns) if host.netns else ()
        return Supervisor(host.supervisor_dir, launcher=launcher)

    # up ----------------------------------------------------------------------------------
    def check_mode(self) -> None:
        if self.spec.mode == "netns" and (reason := netns_support()):
            raise LabError(f"{reason}; use --mode loopback to run the lab on 127.0.0.x instead")
        sshd_binary()
        if not Supervisor.available():
            raise LabError("supervisord is not installed (Debian package: supervisor)")
        if shutil.which("ssh-keygen") is None:
            raise LabError("ssh-keygen is not installed (Debian package: openssh-client)")
        if self.spec.postgres:
            from selfheal.lab import postgres

            postgres.check()

    def up(self, timeout: float = 60.0) -> list[HostResult]:
        self.check_mode()
        recorded = self.record.get("spec")
        if recorded and LabSpec.from_dict(recorded) != self.spec:
            raise LabError(
                f"a different lab is recorded in {self.spec.state_dir} "
                f"({recorded['hosts']} hosts, mode {recorded['mode']}); run `selfheal lab down` "
                "first or pick another --state-dir"
            )
        self.record["spec"] = self.spec.to_dict()
        self._save()
        hosts = self.spec.all_hosts()
        results = {h.name: HostResult(h.name, h.address) for h in hosts}
        self._client_key()
        if self.spec.mode == "netns":
            self._bridge()
            for host in hosts:
                self._host_network(host, results[host.name])
        for host in hosts:
            self._host_files(host, results[host.name])
            self._sshd(host, results[host.name])
            self._supervisord(host, results[host.name])
        if _write_if_changed(self.spec.inventory, render.inventory_text(self.spec)):
            self._note("files", str(self.spec.inventory.parent))
        _write_if_changed(self.spec.policy, render.policy_text(self.spec))
        self._wait_ready(hosts, timeout)
        return [results[h.name] for h in hosts]

    def _client_key(self) -> None:
        key = self.spec.client_key
        if key.exists() and key.with_suffix(".pub").exists():
            return
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        self._note("files", str(key.parent))
        key.unlink(missing_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "selfheal-lab", "-f", str(key))

    def _own(self, kind: str, name: str, option: str) -> None:
        """Refuse to adopt a namespace or link this lab did not make (another lab's?)."""
        if name not in self.record.get("created", {}).get(kind, []):
            raise LabError(
                f"{name} exists but this lab ({self.spec.state_dir}) did not create it: another "
                f"lab is using it; bring that one down or choose another {option}"
            )

    def _link_exists(self, name: str, netns: str | None = None) -> bool:
        cmd = ["ip", *(["-n", netns] if netns else []), "link", "show", "dev", name]
        return _run(*cmd, check=False).returncode == 0

    def _netns_exists(self, name: str) -> bool:
        out = _run("ip", "netns", "list").stdout
        return any(line.split()[0] == name for line in out.splitlines() if line.strip())

    def _bridge(self) -> None:
        spec = self.spec
        if not self._link_exists(spec.bridge):
            self._note("links", spec.bridge)
            _run("ip", "link", "add", spec.bridge, "type", "bridge")
        else:
            self._own("links", spec.bridge, "--bridge")
        addr = f"{spec.gateway}/{spec.prefixlen}"
        if addr not in _run("ip", "-o", "addr", "show", "dev", spec.bridge).stdout:
            _run("ip", "addr", "add", addr, "dev", spec.bridge)
        _run("ip", "link", "set", spec.bridge, "up")

    def _host_network(self, host: HostSpec, result: HostResult) -> None:
        assert host.netns and host.veth and host.veth_peer
        if not self._netns_exists(host.netns):
            self._note("netns", host.netns)
            _run("ip", "netns", "add", host.netns)
            result.actions.append("namespace created")
        else:
            self._own("netns", host.netns, "--netns-prefix")
        ns = ("ip", "-n", host.netns)
        if not self._link_exists("eth0", host.netns):
            if self._link_exists(host.veth):  # a stale half of an earlier pair
                _run("ip", "link", "del", host.veth)
            self._note("links", host.veth)
            _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", host.veth_peer)
            _run("ip", "link", "set", host.veth_peer, "netns", host.netns)
            _run(*ns, "link", "set", host.veth_peer, "name", "eth0")
            result.actions.append("link created")
        _run("ip", "link", "set", host.veth, "master", self.spec.bridge)
        _run("ip", "link", "set", host.veth, "up")
        addr = f"{host.address}/{self.spec.prefixlen}"
        if addr not in _run(*ns, "-o", "addr", "show", "dev", "eth0").stdout:
            _run(*ns, "addr", "add", addr, "dev", "eth0")
        _run(*ns, "link", "set", "lo", "up")
        _run(*ns, "link", "set", "eth0", "up")
        # No default route on purpose: a host reaches the subnet (the controller is the
        # bridge's address) and nothing else, so a DNS lookup fails at once instead of
        # timing out (Python's http.server resolves its own name when it binds).

    def _host_files(self, host: HostSpec, result: HostResult) -> None:
        if not host.dir.exists():
            host.dir.mkdir(parents=True)
            host.dir.chmod(0o700)
        self._note("files", str(host.dir.parent))
        if not host.host_key.exists():
            _run(
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                host.name,
                "-f",
                str(host.host_key),
            )
        pub = self.spec.client_key.with_suffix(".pub").read_text()
        changed = _write_if_changed(host.authorized_keys, pub, 0o600)
        changed |= _write_if_changed(
            host.sshd_config, render.sshd_config(host, render.ansible_user()), 0o600
        )
        if changed:
            result.actions.append("configured")

    def _exec_prefix(self, host: HostSpec) -> tuple[str, ...]:
        return ("ip", "netns", "exec", host.netns) if host.netns else ()

    def _sshd(self, host: HostSpec, result: HostResult) -> None:
        pid = _read_pid(host.sshd_pidfile)
        if pid_alive(pid, "sshd"):
            self._set_pid(host, "sshd", pid)
            return
        if os.geteuid() == 0:  # OpenSSH's privilege-separation directory
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        sshd = sshd_binary()
        _run(sshd, "-t", "-f", str(host.sshd_config))
        _run(*self._exec_prefix(host), sshd, "-f", str(host.sshd_config), "-E", str(host.sshd_log))
        if not _wait(lambda: pid_alive(_read_pid(host.sshd_pidfile), "sshd"), 10):
            raise LabError(f"{host.name}: sshd did not start; see {host.sshd_log}")
        self._set_pid(host, "sshd", _read_pid(host.sshd_pidfile))
        result.actions.append("sshd started")

    def _supervisord(self, host: HostSpec, result: HostResult) -> None:
        from selfheal.lab import postgres

        sup = self.supervisor(host)
        programs = [render.web_program(host, self.spec.web_command)]
        programs += postgres.prepare(self, host)
        if (pid := sup.pid()) is not None and pid_alive(pid, "supervisord"):
            self._set_pid(host, "supervisord", pid)
            for program in programs:  # stopped or crashed: start it again
                if not sup.is_running(program.name):
                    out = sup.ctl("start", program.name)
                    if out.returncode != 0:
                        raise LabError(
                            f"{host.name}: could not start {program.name}: {out.stdout.strip()}"
                        )
                    result.actions.append(f"{program.name} started")
            return
        sup.write_config(programs)
        try:
            pid = sup.start(timeout=20)
        except subprocess.SubprocessError as exc:
            raise LabError(f"{host.name}: supervisord did not start: {exc}") from None
        self._set_pid(host, "supervisord", pid)
        result.actions.append("supervisord started")

    def _wait_ready(self, hosts: list[HostSpec], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for host in hosts:
            left = max(0.5, deadline - time.monotonic())
            if not _wait(lambda h=host: port_open(h.address, h.ssh_port, 0.5), left, 0.2):
                raise LabError(
                    f"{host.name}: sshd does not answer on {host.address}:{host.ssh_port}"
                )
            left = max(0.5, deadline - time.monotonic())
            if not _wait(lambda h=host: http_ok(h.url("/livez"), 1.0), left, 0.2):
                raise LabError(
                    f"{host.name}: web is not healthy at {host.url('/livez')} after {timeout:.0f}s;"
                    f" see {host.supervisor_dir}"
                )
            if self.spec.postgres_role(host):
                from selfheal.lab import postgres

                left = max(0.5, deadline - time.monotonic())
                if not _wait(lambda h=host: postgres.ready(self.spec, h, 1.0), left, 0.3):
                    raise LabError(
                        f"{host.name}: PostgreSQL is not ready; see {host.supervisor_dir}"
                    )

    # status ------------------------------------------------------------------------------
    def status(self) -> dict:
        spec = self.spec
        rows = []
        pids = self.record.get("pids", {})
        for host in spec.all_hosts():
            sshd_pid = _read_pid(host.sshd_pidfile) or pids.get(host.name, {}).get("sshd")
            sup_pid = self.supervisor(host).pid()
            sshd_up = pid_alive(sshd_pid, "sshd") and port_open(host.address, host.ssh_port)
            sup_up = pid_alive(sup_pid, "supervisord")
            web = "healthy" if http_ok(host.url("/livez")) else "down"
            if web == "down" and sup_up and http_ok(host.url("/"), 1.0):
                web = "unhealthy"
            rows.append(
                {
                    "host": host.name,
                    "address": host.address,
                    "ssh_port": host.ssh_port,
                    "netns": host.netns,
                    "sshd": "up" if sshd_up else "down",
                    "supervisord": "up" if sup_up else "down",
                    "web": web,
                    "url": host.url("/"),
                }
            )
            if role := spec.postgres_role(host):
                from selfheal.lab import postgres

                state = postgres.replication_state(spec, host)
                rows[-1]["postgres"] = state
                rows[-1]["postgres_expected"] = role
        recorded = "spec" in self.record
        return {
            "state_dir": str(spec.state_dir),
            "mode": spec.mode,
            "recorded": recorded,
            "inventory": str(spec.inventory) if spec.inventory.exists() else None,
            "healthy": recorded
            and all(r["sshd"] == r["supervisord"] == "up" and r["web"] == "healthy" for r in rows)
            and all(r.get("postgres") == r.get("postgres_expected") for r in rows),
            "hosts": rows,
            "monitoring": self.record.get("monitoring"),
        }

    # down --------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove everything recorded (and anything the plan names that is still there)."""
        done: list[str] = []
        from selfheal.lab import dispatcher, monitoring  # local: they import this module

        done += dispatcher.stop(self)
        done += monitoring.stop(self)
        pids = self.record.get("pids", {})
        # supervisord first (it stops its programs), then sshd; all hosts at once.
        for what in ("supervisord", "sshd"):
            targets: dict[int, str] = {}
            for host in self.spec.all_hosts():
                recorded = pids.get(host.name, {}).get(what)
                if what == "supervisord":
                    pid = self.supervisor(host).pid() or recorded
                else:
                    pid = _read_pid(host.sshd_pidfile) or recorded
                if pid:
                    targets[pid] = host.name
            for pid in terminate_all([(pid, what) for pid in targets], timeout=15):
                done.append(f"{targets[pid]}: {what} stopped (pid {pid})")
        if self.record.get("postgres"):
            from selfheal.lab import postgres

            done += postgres.remove(self)
        if self.spec.mode == "netns" and shutil.which("ip") and os.geteuid() == 0:
            done += self._remove_network()
        done += self._remove_files()
        return done

    def _remove_network(self) -> list[str]:
        done = []
        created = self.record.get("created", {})
        # With a record, exactly what it lists; without one (lost), what the plan names.
        planned = not self.record.get("spec")
        namespaces = set(created.get("netns", []))
        if planned:
            namespaces |= {h.netns for h in self.spec.all_hosts() if h.netns}
        for ns in sorted(n for n in namespaces if n):
            if not self._netns_exists(ns):
                continue
            # Anything still running in a namespace the lab made (an SSH session, a service
            # a test started by hand) keeps it alive: those processes are the lab's too.
            for _ in range(3):
                left = [int(p) for p in _run("ip", "netns", "pids", ns, check=False).stdout.split()]
                if not left:
                    break
                for pid in left:
                    terminate(pid, timeout=5)
            _run("ip", "netns", "del", ns)
            done.append(f"namespace {ns} removed")
        links = [x for x in created.get("links", []) if x != self.spec.bridge]
        if planned:
            links += [h.veth for h in self.spec.all_hosts() if h.veth and h.veth not in links]
        if planned or self.spec.bridge in created.get("links", []):
            links.append(self.spec.bridge)  # last: after the veths on it
        for link in links:
            if not link or not self._link_exists(link):
                continue
            # A veth also goes away by itself once its peer's namespace is gone: a race.
            if _run("ip", "link", "del", link, check=False).returncode == 0:
                done.append(f"link {link} removed")
            elif self._link_exists(link):
                raise LabError(f"could not remove link {link}")
        return done

    def _remove_files(self) -> list[str]:
        spec = self.spec
        done = []
        targets = [spec.state_dir / "hosts", spec.inventory.parent, spec.client_key.parent]
        targets.append(spec.monitoring_dir)
        recorded = [Path(p) for p in self.record.get("created", {}).get("files", [])]
        targets += [p for p in recorded if p.resolve().is_relative_to(spec.state_dir.resolve())]
        for path in dict.fromkeys(targets):  # once each, in order
            if path.exists():
                shutil.rmtree(path)
                done.append(f"removed {path}")
        for path in (spec.record, spec.record.with_suffix(".tmp")):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            spec.state_dir.rmdir()  # only when nothing else is in it
        self.record = {}
        return done
