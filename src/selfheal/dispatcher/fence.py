"""Run fencing: an attempt of a run never outlives the lease of the worker that started it.

Two sides keep the fence (docs/dispatcher.md, "Run fencing"):

* the **executing side**: every attempt runs under a *guard*, this file run as a script
  (stdlib only, so it starts fast) between ansible-runner and ``ansible-playbook``. The
  guard leads the attempt's process group (ansible-runner starts it in a new session),
  writes its identity into the attempt's fence directory, and starts ``ansible-playbook``
  as its child in that group. The worker's heartbeat writes the lease deadline (epoch
  seconds) into the fence directory after every successful lease renewal; when the
  deadline passes without a renewal (the dispatcher was killed, stopped, or lost the lease)
  the guard kills the attempt: SIGTERM, a short grace, SIGKILL. It refuses to start
  ``ansible-playbook`` at all when the deadline has already passed or the attempt was
  revoked.

  The attempt's processes are its process group **and** every process carrying the
  attempt's token in its environment (`ATTEMPT_ENV`): Ansible's workers call setsid(), so
  they and the task processes they start leave the group, but they keep the environment.
* the **taking side** (a restarted dispatcher, or a replica whose recovery took the run
  over): before it retries an interrupted run it revokes the attempt, then stops every
  process of the attempt on this host and waits until none is left; for an attempt on
  another host it waits until the lease ran out plus `TAKEOVER_GRACE_S`, by which time that
  host's guard has killed it.

The guard writes its identity *before* it reads the revocation; the taker writes the
revocation *before* it reads the identities. So either the taker finds the guard (and stops
its attempt) or the guard finds the revocation (and never starts the playbook).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

# The guard imports only what it needs and runs as ``python -I -S``: it starts in about
# 30 ms (tempfile, socket and subprocess would double that).

FENCE_DIR = "fence"  # in a run's private data dir
LEASE_FILE = "lease"  # the lease deadline, epoch seconds as text
REVOKED_FILE = "revoked"  # present: the attempt was taken over; nothing may run
IDENTITY_PREFIX = "process-"  # process-<pid>.json: one per guard of the attempt
POLL_S = 0.2  # how often the guard reads the lease
KILL_GRACE_S = 2.0  # SIGTERM, then SIGKILL after this long
# what a taker on another host adds to the lease's end before it retries: the guard's poll
# and kill grace, plus a margin for the hosts' clocks
TAKEOVER_GRACE_S = 5.0
EXITED_PREFIX = "exited-"  # exited-<pid>: that guard's ansible-playbook ended on its own
ATTEMPT_ENV = "SELFHEAL_ATTEMPT"  # the attempt's token, inherited by all its processes
EXIT_FENCED = 75  # the guard refused to start, or killed its attempt (EX_TEMPFAIL)


# -- identities ------------------------------------------------------------------------------


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (field 3 onwards), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode(errors="replace").split()


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot): tells a reused pid apart."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def host() -> dict[str, str]:
    return {"host": os.uname().nodename, "boot_id": boot_id()}


def identity(pid: int | None = None) -> dict[str, Any]:
    pid = os.getpid() if pid is None else pid
    return {
        **host(),
        "pid": pid,
        "pgid": os.getpgid(pid),
        "start_ticks": start_ticks(pid),
        "token": os.environ.get(ATTEMPT_ENV, ""),
    }


def new_token() -> str:
    return os.urandom(12).hex()


def marked(token: str) -> list[int]:
    """Live processes (other than this one) whose environment carries the attempt's token."""
    if not token:
        return []
    needle = f"{ATTEMPT_ENV}={token}\0".encode()
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle not in fh.read():
                    continue
        except OSError:
            continue
        fields = _stat(int(entry))
        if fields and fields[0] not in "ZX":
            found.append(int(entry))
    return found


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        # fields: state, ppid, pgrp, ...
        if fields and len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in "ZX":
            members.append(int(entry))
    return members


def attempt_members(ident: dict[str, Any]) -> list[int]:
    """The live processes of the guard's group. A pid is not reused while a group of that id
    has members; so when the leader's pid belongs to a process that started at another time,
    the recorded group is gone and those members are somebody else's."""
    pgid = ident.get("pgid")
    if not isinstance(pgid, int) or pgid <= 1:
        return []
    leader_ticks = start_ticks(pgid)
    if leader_ticks is not None and ident.get("start_ticks") not in (None, leader_ticks):
        return []
    return group_members(pgid)


# -- files in the fence directory ----------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_lease(fence_dir: Path, deadline: float) -> None:
    _write_atomic(fence_dir / LEASE_FILE, f"{deadline:.3f}\n")


def read_lease(fence_dir: Path) -> float | None:
    try:
        return float((fence_dir / LEASE_FILE).read_text())
    except (OSError, ValueError):
        return None


def revoke(fence_dir: Path, why: str) -> bool:
    """Mark the attempt taken over (no guard starts, running guards stop). False when the
    fence directory does not exist (then no guard can start in it either)."""
    try:
        _write_atomic(fence_dir / REVOKED_FILE, why + "\n")
    except FileNotFoundError:
        return False
    return True


def revoked(fence_dir: Path) -> bool:
    return (fence_dir / REVOKED_FILE).exists()


def identities(fence_dir: Path) -> list[dict[str, Any]]:
    found = []
    with contextlib.suppress(OSError):
        for path in sorted(fence_dir.glob(f"{IDENTITY_PREFIX}*.json")):
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(path.read_text()))
    return found


def prepare(base_dir: Path, prefix: str, deadline: float) -> Path:
    """A new private data dir for an attempt, with its fence directory and first lease."""
    import tempfile

    base_dir.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
    fence_dir = private / FENCE_DIR
    fence_dir.mkdir()
    write_lease(fence_dir, deadline)
    return private


def guard_command(fence_dir: Path, command: list[str]) -> list[str]:
    """`command` under a guard fenced by `fence_dir`: ``python -I -S fence.py DIR COMMAND...``
    (isolated, without site-packages: the guard needs the standard library only)."""
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(fence_dir), *command]


# -- the taking side -----------------------------------------------------------------------


def attempt_processes(ident: dict[str, Any]) -> list[int]:
    """Every live process of the attempt: the guard's group and the token's carriers."""
    me = os.getpid()
    found = set(attempt_members(ident)) | set(marked(str(ident.get("token") or "")))
    return sorted(found - {me})


def kill_attempt(ident: dict[str, Any], grace_s: float = KILL_GRACE_S) -> bool:
    """SIGTERM the attempt's processes, SIGKILL what is left after `grace_s` (again, for what
    forked meanwhile); True when none is left (bounded: about 3 * grace_s)."""
    rounds = ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s), (signal.SIGKILL, grace_s))
    # A process that is exiting has already dropped its environment (the token scan no longer
    # sees it) but is not gone yet: every process signalled is awaited until it is gone (or a
    # zombie), so "none is left" means exactly that.
    signalled: dict[int, int | None] = {}

    def left() -> list[int]:
        pids = set(attempt_processes(ident))
        for pid, ticks in signalled.items():
            fields = _stat(pid)
            if fields and fields[0] not in "ZX" and ticks in (None, start_ticks(pid)):
                pids.add(pid)
        return sorted(pids)

    for sig, wait in rounds:
        pids = left()
        if not pids:
            return True
        pgid = ident.get("pgid")
        if isinstance(pgid, int) and pgid > 1 and attempt_members(ident):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if pgid != os.getpgrp():
                    os.killpg(pgid, sig)
        for pid in pids:
            signalled.setdefault(pid, start_ticks(pid))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not left():
                return True
            time.sleep(0.05)
    return not left()


def sweep(token: str, grace_s: float = KILL_GRACE_S) -> bool:
    """Kill what is left of an attempt that was canceled or timed out (ansible-runner kills
    the guard's group; the workers, in sessions of their own, outlive it)."""
    return kill_attempt({"token": token}, grace_s)


def _alive(ident: dict[str, Any]) -> bool:
    """The process of `ident` (its pid, started at the recorded time) still runs."""
    pid = ident.get("pid")
    fields = _stat(pid) if isinstance(pid, int) else None
    if not fields or len(fields) <= 19 or fields[0] in "ZX":
        return False
    return ident.get("start_ticks") in (None, int(fields[19]))


def stop_attempt(process: dict[str, Any], why: str, grace_s: float = KILL_GRACE_S) -> str:
    """Fence a run's attempt from the taking side, given the process the store recorded.

    "stopped": no process of the attempt is left and none can start; "alive": it is on this
    host and would not die; "elsewhere": it is on another host (its guard stops it when the
    lease runs out)."""
    here = host()
    if process.get("host") != here["host"]:
        return "elsewhere"
    if process.get("boot_id") != here["boot_id"]:
        return "stopped"  # this host booted since: nothing of that attempt runs
    private = process.get("private_data_dir")
    known: list[dict[str, Any]] = []
    if private:
        fence_dir = Path(private) / FENCE_DIR
        revoke(fence_dir, why)  # before reading the identities (see the module docstring)
        known = identities(fence_dir)
    if isinstance(process.get("pgid"), int) and process.get("pid") not in {
        i.get("pid") for i in known
    }:
        known.append(process)  # the guard's identity as the store recorded it
    if not known and process.get("token"):
        known = [{**process, "pid": None}]  # no guard identity (its files are gone): the token
    alive = False
    for ident in known:
        if ident.get("boot_id") != here["boot_id"]:
            continue
        exited = (
            bool(private)
            and (Path(private) / FENCE_DIR / f"{EXITED_PREFIX}{ident.get('pid')}").exists()
        )
        if exited:
            # the playbook had ended on its own: what it left running (a service it
            # started) is its effect, not an attempt; only the guard's exit is awaited
            deadline = time.monotonic() + grace_s
            while _alive(ident) and time.monotonic() < deadline:
                time.sleep(0.05)
            alive = alive or _alive(ident)
        elif not kill_attempt(ident, grace_s):
            alive = True
    return "alive" if alive else "stopped"


# -- the executing side: the guard ---------------------------------------------------------


class _Guard:
    def __init__(self, fence_dir: Path, command: list[str]):
        self.fence_dir = fence_dir
        self.command = command
        self.child: int | None = None  # its pid while it runs
        self.terminating = False
        self.deadline: float | None = None

    def note(self, text: str) -> None:
        with contextlib.suppress(OSError), (self.fence_dir / "guard.log").open("a") as fh:
            fh.write(f"{time.time():.3f} {os.getpid()} {text}\n")

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.terminating = True
        if self.child is not None:
            with contextlib.suppress(OSError):
                os.kill(self.child, signum)

    def fenced(self) -> str | None:
        """Why the attempt must stop now, or None while its lease holds."""
        if revoked(self.fence_dir):
            return "revoked"
        lease = read_lease(self.fence_dir)
        if lease is not None:
            self.deadline = lease
        if self.deadline is None:
            return "no lease"
        if time.time() >= self.deadline:
            return "lease expired"
        return None

    def reap(self, timeout: float) -> int | None:
        """The child's exit code once it ended (waits up to `timeout`), else None."""
        assert self.child is not None
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.child, os.WNOHANG)
                if pid == self.child:
                    self.child = None
                    return os.waitstatus_to_exitcode(status)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # SIGCHLD is blocked: it wakes this wait as soon as the child ends
            signal.sigtimedwait([signal.SIGCHLD], min(left, POLL_S))

    def kill_group(self, why: str) -> int:
        self.note(f"fenced ({why}): stopping the attempt")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM is not for us
        gone = kill_attempt(identity())
        if self.child is not None:
            self.reap(1.0)
        self.note("stopped" if gone else "processes of the attempt would not die")
        return EXIT_FENCED

    def run(self) -> int:
        pid = os.getpid()
        if os.getpgrp() != pid:
            with contextlib.suppress(OSError):
                os.setpgid(0, 0)  # lead a group of our own (ansible-runner gives us a session)
        _write_atomic(
            self.fence_dir / f"{IDENTITY_PREFIX}{pid}.json", json.dumps(identity(pid)) + "\n"
        )
        # only now (identity first: see the module docstring) may the fence be read
        why = self.fenced()
        if why is not None:
            self.note(f"refused to start ({why})")
            print(f"selfheal run guard: not started: {why}", file=sys.stderr)
            return EXIT_FENCED
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
        if self.terminating:
            return EXIT_FENCED
        try:
            # the child gets the usual signal mask; SIGHUP stays as it was given to us
            self.child = os.posix_spawnp(self.command[0], self.command, os.environ, setsigmask=())
        except OSError as exc:
            print(f"selfheal run guard: cannot start {self.command[0]}: {exc}", file=sys.stderr)
            return 127
        while True:
            rc = self.reap(POLL_S)
            if rc is None:
                why = self.fenced()
                if why is not None:
                    return self.kill_group(why)
                continue
            with contextlib.suppress(OSError):
                _write_atomic(self.fence_dir / f"{EXITED_PREFIX}{pid}", f"{rc}\n")
            return rc if rc >= 0 else 128 - rc


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: fence.py FENCE_DIR COMMAND [ARG...]", file=sys.stderr)
        return 2
    return _Guard(Path(argv[0]), argv[1:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
