"""A private supervisord instance: its own config, socket, logs and PID, under one directory.

Used by the demo (and usable by tests) to run services the way a host would, without
touching any system-wide supervisord. Stopping it signals only the PID it recorded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from selfheal.errors import SelfhealError


@dataclass(frozen=True)
class Program:
    name: str
    command: str
    autorestart: bool = False  # off: a crash stays a crash until something heals it
    startsecs: int = 1
    environment: str = ""
    user: str = ""  # run as this user (supervisord must run as root)
    stopsignal: str = ""  # e.g. INT for PostgreSQL's fast shutdown; "" = TERM
    stopwaitsecs: int = 0  # 0 = supervisord's default (10)


class Supervisor:
    def __init__(self, root: str | Path, launcher: Sequence[str] = ()):
        """`launcher` prefixes the supervisord command, e.g. `ip netns exec NS` (the lab)."""
        self.root = Path(root)
        self.launcher = tuple(launcher)
        self.config = self.root / "supervisord.conf"
        self.pidfile = self.root / "supervisord.pid"
        self.socket = self.root / "supervisor.sock"

    @staticmethod
    def available() -> bool:
        return shutil.which("supervisord") is not None and shutil.which("supervisorctl") is not None

    def write_config(self, programs: list[Program]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        sections = [
            f"[unix_http_server]\nfile={self.socket}\nchmod=0700\n",
            f"[supervisord]\npidfile={self.pidfile}\nlogfile={self.root / 'supervisord.log'}\n"
            f"childlogdir={self.root}\n",
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
            f"[supervisorctl]\nserverurl=unix://{self.socket}\n",
        ]
        for program in programs:
            section = (
                f"[program:{program.name}]\ncommand={program.command}\n"
                f"autorestart={'true' if program.autorestart else 'false'}\n"
                f"startsecs={program.startsecs}\nstopasgroup=true\nkillasgroup=true\n"
            )
            if program.environment:
                section += f"environment={program.environment}\n"
            if program.user:
                section += f"user={program.user}\n"
            if program.stopsignal:
                section += f"stopsignal={program.stopsignal}\n"
            if program.stopwaitsecs:
                section += f"stopwaitsecs={program.stopwaitsecs}\n"
            sections.append(section)
        self.config.write_text("\n".join(sections))

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def start(self, timeout: float = 20.0) -> int:
        if (pid := self.pid()) is not None:
            return pid
        if not self.available():
            raise SelfhealError("supervisord is not installed (Debian package: supervisor)")
        subprocess.run(
            [*self.launcher, "supervisord", "-c", str(self.config)], check=True, timeout=timeout
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (pid := self.pid()) is not None and self.socket.exists():
                return pid
            time.sleep(0.1)
        raise SelfhealError(f"supervisord did not start; see {self.root / 'supervisord.log'}")

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["supervisorctl", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def program_pid(self, name: str) -> int | None:
        out = self.ctl("pid", name).stdout.strip()
        return int(out) if out.isdigit() and int(out) > 0 else None

    def is_running(self, name: str) -> bool:
        return "RUNNING" in self.ctl("status", name).stdout

    def stop(self, timeout: float = 20.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)  # supervisord stops its programs on the way out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
