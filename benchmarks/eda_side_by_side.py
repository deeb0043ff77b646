"""selfheal serve and ansible-rulebook side by side: same Alertmanager payloads, same playbook.

    python benchmarks/eda_side_by_side.py                       # both systems, every phase
    python benchmarks/eda_side_by_side.py --only selfheal --duration 5 --samples 5

selfheal: `selfheal serve` (SQLite store, WAL + synchronous=FULL: a 2xx means the alert
is committed) with a policy that sends ``BenchDown`` alerts to the one-task runbook.
ansible-rulebook: ``benchmarks/eda/rulebook.yml`` (``eda.builtin.webhook`` source, events
held in memory) whose rule runs the same playbook (``run_playbook``) for ``BenchDown``.
Load comes from a second process on loopback (the client of ``dispatcher_intake.py``).

Phases:
  a. intake: maximum rate (closed loop, --connections) and a fixed offered rate (open loop,
     --rate; latency counted from each request's due time). The load alerts (1,000
     distinct, ``BenchAlert``) start no playbook on either side.
  b. POST -> first task: --samples distinct ``BenchDown`` alerts, one at a time, each
     waiting for its play to end; the task start time comes from the ``task_stamp``
     callback (``benchmarks/eda/callback_plugins``) on both sides. After each alert, a bare
     ``ansible_runner.run`` of the same playbook runs under the same machine load; dispatch
     overhead = median of (POST -> first task) - (bare call -> first task), paired.
  c. storm: --storm copies of one ``BenchDown`` alert; the playbook runs each system
     starts within --storm-window seconds.

Each phase starts a fresh server, so no backlog of one phase slows the next.
Needs ansible-rulebook (PyPI) and a Java 17 runtime (JAVA_HOME, else found under
/usr/lib/jvm). Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dispatcher_intake as intake

HERE = Path(__file__).resolve().parent
EDA = HERE / "eda"
PLAYBOOK = EDA / "one_task.yml"
WEBHOOK_TOKEN = "bench-webhook-token-0123456789"


def _pct(values: list[float], q: float) -> float:
    return intake._pct(values, q)


def _stamp_env(stamps: Path) -> dict[str, str]:
    plugins = [str(EDA / "callback_plugins")]
    if os.environ.get("ANSIBLE_CALLBACK_PLUGINS"):
        plugins.append(os.environ["ANSIBLE_CALLBACK_PLUGINS"])
    return {
        "BENCH_STAMP_DIR": str(stamps),
        "ANSIBLE_CALLBACK_PLUGINS": ":".join(plugins),
        "ANSIBLE_CALLBACKS_ENABLED": "task_stamp",
        "ANSIBLE_NOCOLOR": "1",
    }


def _stamps(directory: Path, kind: str) -> list[float]:
    return sorted(float(p.name.split("-")[1]) for p in directory.glob(f"{kind}-*"))


def _wait_stamp(directory: Path, kind: str, seen: int, timeout: float) -> float | None:
    """The newest `kind` stamp once more than `seen` exist (None after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _stamps(directory, kind)
        if len(found) > seen:
            return found[-1]
        time.sleep(0.01)
    return None


def _settle(directory: Path, quiet: float, limit: float) -> None:
    """Wait until no new stamp appeared for `quiet` s (at most `limit` s)."""
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(list(directory.iterdir()))
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.2)


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early (rc {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not listen in time")


# -- the two systems ------------------------------------------------------------------------


class System:
    name = ""
    path = ""
    token = ""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.stamps = tmp / "stamps"
        self.stamps.mkdir(parents=True)
        self.port = intake.free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            intake.stop(self.proc)

    def settle(self, limit: float = 60) -> None:
        """Wait for work the warm-up left behind (nothing to wait for by default)."""

    def idle(self, limit: float = 60) -> None:
        """Wait until the last run is over (the end stamp already says its play ended)."""

    def post(self, body: bytes) -> int:
        return intake.post(self.port, self.path, body, self.token)[0]

    def client(self, mode: str, rate: float, duration: float, conns: int, count: int = 0):
        return intake.run_client(
            self.port, mode, rate, duration, conns, path=self.path, token=self.token, count=count
        )


class Selfheal(System):
    name = "selfheal"
    path = "/alerts/alertmanager"
    token = intake.TOKEN

    def start(self) -> None:
        config = intake.write_selfheal_config(self.tmp, self.port, 2, playbook=PLAYBOOK)
        self.proc = intake.start_selfheal(self.tmp, config, _stamp_env(self.stamps))
        intake.wait_ready(self.port, self.proc)

    def settle(self, limit: float = 60) -> None:
        """The warm-up opened 1,000 incidents: let the pipeline decide them first."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode()
            if "\nselfheal_pipeline_backlog 0\n" in text:
                return
            time.sleep(0.5)

    def idle(self, limit: float = 60) -> None:
        # the policy allows one remediation per target at a time: an alert arriving before
        # the previous run released its slot would be deferred, not dispatched
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with sqlite3.connect(self.tmp / "state/selfheal.db") as db:
                busy = db.execute(
                    "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"
                ).fetchone()[0]
            if not busy:
                return
            time.sleep(0.05)

    def runs(self) -> int:
        with sqlite3.connect(self.tmp / "state/selfheal.db") as db:
            return db.execute("SELECT count(*) FROM runs").fetchone()[0]


class Rulebook(System):
    name = "ansible-rulebook"
    path = "/endpoint"
    token = WEBHOOK_TOKEN

    def start(self) -> None:
        variables = self.tmp / "vars.yml"
        variables.write_text(
            json.dumps(
                {"webhook_port": self.port, "webhook_token": self.token, "playbook": str(PLAYBOOK)}
            )
        )
        env = {**os.environ, **_stamp_env(self.stamps)}
        env.setdefault("JAVA_HOME", _java_home() or "")
        self.proc = subprocess.Popen(
            [
                shutil.which("ansible-rulebook") or "ansible-rulebook",
                "--rulebook",
                str(EDA / "rulebook.yml"),
                "--inventory",
                str(EDA / "inventory.yml"),
                "--vars",
                str(variables),
            ],
            cwd=self.tmp,
            env=env,
            stdout=(self.tmp / "rulebook.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port, self.proc)


def _java_home() -> str | None:
    for candidate in sorted(Path("/usr/lib/jvm").glob("*17*")):
        if (candidate / "bin/java").exists():
            return str(candidate)
    return None


# -- phases ---------------------------------------------------------------------------------


def phase_intake(system: System, args) -> dict:
    # warm-up, not counted: JIT and caches on both sides, selfheal's 1,000 incidents opened
    system.client("max", 0, min(3.0, args.duration), args.connections)
    system.settle()
    peak = system.client("max", 0, args.duration, args.connections)
    fixed = system.client("fixed", args.rate, args.duration, args.connections)
    return {"max": peak, "fixed": fixed}


def phase_first_task(system: System, args) -> dict:
    latencies: list[float] = []
    overheads: list[float] = []  # POST -> first task minus the paired bare runner start
    bares: list[float] = []
    for i in range(args.samples):
        ends = len(_stamps(system.stamps, "end"))
        starts = len(_stamps(system.stamps, "start"))
        body = intake.alertmanager_body(
            i, alertname="BenchDown", host="localhost", instance=f"{system.name}-first-{i}"
        )
        sent = time.time()
        if system.post(body) // 100 != 2:
            continue
        start = _wait_stamp(system.stamps, "start", starts, 60)
        if start is None:
            break  # nothing runs: do not wait for the other samples too
        _wait_stamp(system.stamps, "end", ends, 60)  # one run at a time on both sides
        system.idle()
        # a bare runner start right after, under the same machine load: the reference
        bare = _bare_once(system.tmp, system.stamps.parent / "bare-stamps")
        if bare is not None:
            latencies.append(start - sent)
            overheads.append(start - sent - bare[0])
            bares.append(bare[0])
        time.sleep(0.5)
    return {
        "samples": len(latencies),
        "p50_ms": round(_pct(latencies, 0.5) * 1000, 1),
        "p95_ms": round(_pct(latencies, 0.95) * 1000, 1),
        "bare_p50_ms": round(_pct(bares, 0.5) * 1000, 1),
        "overhead_p50_ms": round(_pct(overheads, 0.5) * 1000, 1),
    }


def phase_storm(system: System, args) -> dict:
    before = len(_stamps(system.stamps, "start"))
    sent = system.client("storm", 0, args.storm_window, args.connections, count=args.storm)
    _settle(system.stamps, 5.0, args.storm_window)
    return {
        "accepted": sum(v for k, v in sent["statuses"].items() if k.startswith("2")),
        "runs": len(_stamps(system.stamps, "start")) - before,
    }


_BARE = (
    "import sys, time, tempfile, ansible_runner\n"
    "t0 = time.time()\n"
    "r = ansible_runner.run(private_data_dir=tempfile.mkdtemp(dir=sys.argv[1]),"
    " playbook=sys.argv[2], inventory=sys.argv[3], quiet=True)\n"
    "print(t0, time.time(), r.rc)\n"
)


def _bare_once(tmp: Path, stamps: Path) -> tuple[float, float] | None:
    """One ansible_runner.run of the playbook in a fresh process (ansible_runner imported
    before the clock starts, as in a running server): (call -> first task, whole run)."""
    stamps.mkdir(exist_ok=True)
    seen = len(_stamps(stamps, "start"))
    out = subprocess.run(
        [sys.executable, "-c", _BARE, str(tmp), str(PLAYBOOK), str(EDA / "inventory.yml")],
        env={**os.environ, **_stamp_env(stamps)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    t0, t1, rc = out.stdout.split()
    start = _wait_stamp(stamps, "start", seen, 5)
    if rc != "0" or start is None:
        return None
    return start - float(t0), float(t1) - float(t0)


def bare_runner(tmp: Path, samples: int) -> dict:
    """The bare runner alone: call -> first task and the whole run."""
    to_task, total = [], []
    for _ in range(samples):
        once = _bare_once(tmp, tmp / "bare-stamps")
        if once is not None:
            to_task.append(once[0])
            total.append(once[1])
    return {
        "to_first_task_p50_ms": round(_pct(to_task, 0.5) * 1000, 1),
        "run_p50_ms": round(_pct(total, 0.5) * 1000, 1),
    }


# -- report ---------------------------------------------------------------------------------


def _row(label: str, values: dict[str, str], names: list[str]) -> str:
    return f"| {label} | " + " | ".join(values.get(n, "-") for n in names) + " |"


def report(results: dict[str, dict], bare: dict | None) -> str:
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def cell(fn) -> dict[str, str]:
        out = {}
        for n in names:
            try:
                out[n] = fn(results[n])
            except (KeyError, TypeError):
                out[n] = "-"
        return out

    lines.append(
        _row("(a) max accepted/s", cell(lambda r: f"{r['a']['max']['accepted_per_s']:,.0f}"), names)
    )
    lines.append(
        _row(
            "(a) max: p50 / p99 ms",
            cell(lambda r: f"{r['a']['max']['p50_ms']:.1f} / {r['a']['max']['p99_ms']:.1f}"),
            names,
        )
    )
    lines.append(
        _row(
            "(a) offered /s: accepted/s, p50 / p99 ms",
            cell(
                lambda r: (
                    f"{r['a']['fixed']['offered_per_s']:,.0f}: "
                    f"{r['a']['fixed']['accepted_per_s']:,.0f}, "
                    f"{r['a']['fixed']['p50_ms']:.1f} / {r['a']['fixed']['p99_ms']:.1f}"
                )
            ),
            names,
        )
    )
    lines.append(
        _row(
            "(a) durable before the 2xx",
            {n: ("yes (fsync)" if n == "selfheal" else "no (memory)") for n in names},
            names,
        )
    )
    lines.append(
        _row(
            "(b) POST -> first task p50 / p95 ms",
            cell(lambda r: f"{r['b']['p50_ms']:.0f} / {r['b']['p95_ms']:.0f}"),
            names,
        )
    )
    lines.append(
        _row(
            "(b) paired bare runner start, p50 ms",
            cell(lambda r: f"{r['b']['bare_p50_ms']:.0f}"),
            names,
        )
    )
    lines.append(
        _row(
            "(b) dispatch overhead above it, p50 ms",
            cell(lambda r: f"{r['b']['overhead_p50_ms']:.0f}"),
            names,
        )
    )
    lines.append(
        _row(
            "(c) storm: accepted / playbook runs",
            cell(lambda r: f"{r['c']['accepted']:,} / {r['c']['runs']:,}"),
            names,
        )
    )
    text = "\n".join(lines)
    if bare:
        text += (
            f"\n\nbare ansible_runner.run of the same playbook: call -> first task p50 "
            f"{bare['to_first_task_p50_ms']:.0f} ms, whole run p50 {bare['run_p50_ms']:.0f} ms"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.epilog = "\n".join(__doc__.splitlines()[2:])
    parser.add_argument("--only", choices=["selfheal", "ansible-rulebook"], help="one system")
    parser.add_argument("--phases", default="abc", help="which phases (default abc)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per intake phase")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed offered rate, /s")
    parser.add_argument("--connections", type=int, default=64, help="client connections")
    parser.add_argument("--samples", type=int, default=10, help="phase b alerts")
    parser.add_argument("--bare-samples", type=int, default=5, help="bare runner runs")
    parser.add_argument("--storm", type=int, default=1000, help="phase c copies")
    parser.add_argument("--storm-window", type=float, default=60.0, help="phase c wait, s")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="selfheal-eda-bench-"))
    systems = [Selfheal, Rulebook]
    if args.only:
        systems = [s for s in systems if s.name == args.only]
    phases = {"a": phase_intake, "b": phase_first_task, "c": phase_storm}
    results: dict[str, dict] = {}
    try:
        for kind in systems:
            print(f"== {kind.name}", file=sys.stderr, flush=True)
            out: dict = results.setdefault(kind.name, {})
            for phase in (p for p in "abc" if p in args.phases):
                # a fresh server per phase: no backlog of one phase slows the next
                system = kind(tmp / f"{kind.name}-{phase}")
                try:
                    system.start()
                    out[phase] = phases[phase](system, args)
                    if phase == "c" and isinstance(system, Selfheal):
                        out[phase]["store_runs"] = system.runs()
                except (RuntimeError, SystemExit, subprocess.SubprocessError, OSError) as exc:
                    out[phase] = {"error": str(exc)}
                finally:
                    system.stop()
                print(f"   {phase}: {json.dumps(out[phase])}", file=sys.stderr, flush=True)
        bare = bare_runner(tmp, args.bare_samples) if "b" in args.phases else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"results": results, "bare_runner": bare}, indent=2))
    print(report(results, bare))


if __name__ == "__main__":
    main()
