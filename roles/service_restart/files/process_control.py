"""Find, stop and start a bare process (one no service manager runs), without a shell.

Run by the service_restart role on the target as `python3 -c <this file> ACTION ...`;
prints one JSON object. Standard library only, Python 3.6+.

  status  [--pidfile P] [--match REGEX]                 -> {"pids": [...]}
  restart [--pidfile P] [--match REGEX] [start options] -- ARGV...
  start   [--pidfile P] [--match REGEX] [start options] -- ARGV...
          -> {"stopped": [...], "pid": N}  (start: no-op with "pid": null when running)

A process is the pid in the pidfile (when it is alive and, given --match, its command line
matches), else every process whose full command line matches REGEX (as `pgrep -f` does),
never this helper or its ancestors. The new process is detached: its own session, stdin
from /dev/null, output appended to --log; with --write-pidfile its pid goes to the pidfile.
"""

import argparse
import contextlib
import errno
import json
import os
import re
import signal
import sys
import time


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent can reap it


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def _ancestors():
    seen, pid = set(), os.getpid()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return seen


def find(pidfile, match):
    pattern = re.compile(match) if match else None
    if pidfile:
        try:
            with open(pidfile, encoding="ascii") as handle:
                pid = int(handle.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and _alive(pid) and (pattern is None or pattern.search(_cmdline(pid))):
            return [pid]
        if pattern is None:
            return []
    if pattern is None:
        return []
    skip = _ancestors()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in skip:
            line = _cmdline(int(entry))
            if line and pattern.search(line) and _alive(int(entry)):
                pids.append(int(entry))
    return sorted(pids)


def stop(pids, timeout):
    for pid in pids:
        # A process this helper started leads its own group: stop its children too.
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def start(argv, log, chdir, pidfile):
    """Start argv detached (double fork, new session); return its pid or raise OSError."""
    read_end, write_end = os.pipe()  # the grandchild's pid, or why exec failed
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            os.setsid()
            if os.fork() > 0:
                os._exit(0)
            os.setpgid(0, 0)  # a group of its own, so that a later stop reaches its children
            status_fd = write_end
            os.write(status_fd, f"{os.getpid()}\n".encode())
            os.set_inheritable(status_fd, False)
            if chdir:
                os.chdir(chdir)
            null = os.open(os.devnull, os.O_RDONLY)
            out = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, status_fd)
            os.closerange(status_fd + 1, 1024)
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(write_end, f"error {exc.errno or 0} {exc}\n".encode())
        os._exit(127)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as status:
        lines = status.read().decode("utf-8", "replace").splitlines()
    if not lines or not lines[0].isdigit():
        raise OSError(errno.EIO, f"could not start {argv[0]}")
    if len(lines) > 1:
        raise OSError(errno.ENOEXEC, f"could not start {argv[0]}: {lines[1][6:]}")
    pid = int(lines[0])
    if pidfile:
        tmp = f"{pidfile}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(f"{pid}\n")
        os.replace(tmp, pidfile)
    return pid


def main(args):
    parser = argparse.ArgumentParser(prog="process_control")
    parser.add_argument("action", choices=["status", "restart", "start"])
    parser.add_argument("--pidfile", default="")
    parser.add_argument("--match", default="")
    parser.add_argument("--log", default="")
    parser.add_argument("--chdir", default="")
    parser.add_argument("--write-pidfile", action="store_true")
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    # Everything after `--` is the command, untouched by option parsing.
    split = args.index("--") if "--" in args else len(args)
    opts = parser.parse_args(args[:split])
    opts.argv = args[split + 1 :]
    if not (opts.pidfile or opts.match):
        parser.error("give --pidfile or --match")
    running = find(opts.pidfile, opts.match)
    if opts.action == "status":
        return {"pids": running}
    if not opts.argv:
        parser.error("give the command after --")
    if opts.action == "start" and running:
        return {"stopped": [], "pid": None, "pids": running}
    stop(running, opts.stop_timeout)
    pid = start(opts.argv, opts.log, opts.chdir, opts.pidfile if opts.write_pidfile else "")
    return {"stopped": running, "pid": pid, "pids": [pid]}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except OSError as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        sys.exit(1)
    print(json.dumps(result))
