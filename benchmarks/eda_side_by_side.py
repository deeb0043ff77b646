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
  b. POST -> first task: --samples distinct ``BenchDown`` alerts per system, one at a
     time, each waiting for its play to end, after one uncounted warm-up alert each; the
     systems take turns (alternating order), so a slow minute of the machine hits both.
     The ``task_stamp`` callback (``benchmarks/eda/callback_plugins``) stamps, on both
     sides, when ``ansible-playbook`` was launched (its process start) and when its first
     task started. After each alert a bare ``ansible_runner.run`` of the same playbook runs
     under the same machine load, and each sample is paired with it:
       dispatch overhead = (POST -> ansible-playbook launched) - (bare call -> launched),
       end-to-end overhead = (POST -> first task) - (bare call -> first task),
     reported as medians of the paired differences, the end-to-end one with a bootstrap 95%
     interval: ansible-playbook's own start (about 0.6-1.1 s here) varies by hundreds of
     milliseconds from run to run, and that noise is in the end-to-end difference only.
     With both systems, each round's two alerts are also paired with each other:
     selfheal - ansible-rulebook, median of the per-round differences [95% interval].
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
import random
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


def _processes(directory: Path) -> dict[str, dict[str, float]]:
    """pid -> {stamp kind: epoch} of every ansible-playbook process stamped in `directory`."""
    found: dict[str, dict[str, float]] = {}
    for path in directory.iterdir():
        kind, at, pid = path.name.split("-")
        found.setdefault(pid, {})[kind] = float(at)
    return found


def _wait_process(directory: Path, known: set[str], timeout: float) -> dict[str, float] | None:
    """The stamps of the first playbook process not in `known` once its play has ended
    (None when none started its first task within `timeout` s)."""
    deadline = time.monotonic() + timeout
    finishing = False
    while time.monotonic() < deadline:
        fresh = [v for k, v in _processes(directory).items() if k not in known and "start" in v]
        if fresh:
            run = min(fresh, key=lambda v: v["start"])
            if "end" in run:
                return run
            if not finishing:  # started: give the play a minute to end
                finishing, deadline = True, time.monotonic() + 60
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


def _first_task_sample(system: System, i: int) -> dict[str, float] | None:
    """One alert through `system`, then one bare runner start: their timings (seconds)."""
    known = set(_processes(system.stamps))
    body = intake.alertmanager_body(
        i, alertname="BenchDown", host="localhost", instance=f"{system.name}-first-{i}"
    )
    sent = time.time()
    if system.post(body) // 100 != 2:
        return None
    run = _wait_process(system.stamps, known, 60)
    if run is None or "launch" not in run:
        return None
    system.idle()
    # a bare runner start right after, under the same machine load: the reference
    bare = _bare_once(system.tmp, system.stamps.parent / "bare-stamps")
    if bare is None:
        return None
    return {
        "e2e": run["start"] - sent,
        "dispatch": run["launch"] - sent,
        "ansible": run["start"] - run["launch"],
        "bare_e2e": bare["start"] - bare["call"],
        "bare_dispatch": bare["launch"] - bare["call"],
        "bare_ansible": bare["start"] - bare["launch"],
    }


def _median_ci(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the median (fixed seed: reruns agree)."""
    rng = random.Random(0)
    medians = sorted(_pct(rng.choices(values, k=len(values)), 0.5) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def _summary(samples: list[dict[str, float]]) -> dict:
    def ms(values: list[float], q: float = 0.5) -> float:
        return round(_pct(values, q) * 1000, 1)

    column = {k: [s[k] for s in samples] for k in (samples[0] if samples else ())}
    overheads = [s["e2e"] - s["bare_e2e"] for s in samples]
    dispatch = [s["dispatch"] - s["bare_dispatch"] for s in samples]
    low, high = _median_ci(overheads) if overheads else (float("nan"), float("nan"))
    return {
        "samples": len(samples),
        "p50_ms": ms(column.get("e2e", [])),
        "p95_ms": ms(column.get("e2e", []), 0.95),
        "launch_p50_ms": ms(column.get("dispatch", [])),
        "launch_p95_ms": ms(column.get("dispatch", []), 0.95),
        "ansible_start_p50_ms": ms(column.get("ansible", [])),
        "bare_p50_ms": ms(column.get("bare_e2e", [])),
        "bare_launch_p50_ms": ms(column.get("bare_dispatch", [])),
        "bare_ansible_start_p50_ms": ms(column.get("bare_ansible", [])),
        "dispatch_overhead_p50_ms": ms(dispatch),
        "dispatch_overhead_p95_ms": ms(dispatch, 0.95),
        "overhead_p50_ms": ms(overheads),
        "overhead_ci95_ms": [round(low * 1000, 1), round(high * 1000, 1)],
    }


def phase_first_task(systems: list[System], args) -> dict[str, dict]:
    """Phase b for every system at once, taking turns sample by sample."""
    for system in systems:  # warm-up, not counted: each server's first run pays for caches
        _first_task_sample(system, -1)
    rounds: list[dict[str, dict[str, float]]] = []
    stalled: set[str] = set()
    for i in range(args.samples):
        rounds.append({})
        for system in systems if i % 2 == 0 else systems[::-1]:
            if system.name in stalled:
                continue
            sample = _first_task_sample(system, i)
            if sample is None:
                stalled.add(system.name)  # nothing runs: do not wait for its other samples
            else:
                rounds[-1][system.name] = sample
            time.sleep(0.5)
        print(f"   b: {i + 1}/{args.samples}", file=sys.stderr, flush=True)
    out = {s.name: _summary([r[s.name] for r in rounds if s.name in r]) for s in systems}
    if len(systems) == 2:  # the two alerts of a round are neighbours in time: pair them
        first, second = (s.name for s in systems)
        both = [r for r in rounds if first in r and second in r]
        out[first][f"vs_{second}"] = _versus(both, first, second)
    return out


def _versus(rounds: list[dict[str, dict[str, float]]], a: str, b: str) -> dict:
    """`a` - `b` per round: POST -> first task and POST -> launched, medians [95% CI]."""
    result: dict = {"rounds": len(rounds)}
    for key in ("e2e", "dispatch"):
        diffs = [r[a][key] - r[b][key] for r in rounds]
        if diffs:
            low, high = _median_ci(diffs)
            result[key] = [round(v * 1000, 1) for v in (_pct(diffs, 0.5), low, high)]
    return result


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
    "print(t0, r.rc)\n"
)


def _bare_once(tmp: Path, stamps: Path) -> dict[str, float] | None:
    """One ansible_runner.run of the playbook in a fresh process (ansible_runner imported
    before the clock starts, as in a running server): when it was called, when it launched
    ansible-playbook, when the first task started."""
    stamps.mkdir(exist_ok=True)
    known = set(_processes(stamps))
    out = subprocess.run(
        [sys.executable, "-c", _BARE, str(tmp), str(PLAYBOOK), str(EDA / "inventory.yml")],
        env={**os.environ, **_stamp_env(stamps)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    t0, rc = out.stdout.split()
    run = _wait_process(stamps, known, 5)
    if rc != "0" or run is None or "launch" not in run:
        return None
    return {"call": float(t0), "launch": run["launch"], "start": run["start"]}


# -- report ---------------------------------------------------------------------------------


def _row(label: str, values: dict[str, str], names: list[str]) -> str:
    return f"| {label} | " + " | ".join(values.get(n, "-") for n in names) + " |"


def report(results: dict[str, dict]) -> str:
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
            "(b) POST -> ansible-playbook launched p50 / p95 ms",
            cell(lambda r: f"{r['b']['launch_p50_ms']:.0f} / {r['b']['launch_p95_ms']:.0f}"),
            names,
        )
    )
    lines.append(
        _row(
            "(b) launched -> first task (ansible's own start) p50 ms",
            cell(lambda r: f"{r['b']['ansible_start_p50_ms']:.0f}"),
            names,
        )
    )
    lines.append(
        _row(
            "(b) paired bare runner: call -> launched / first task p50 ms",
            cell(lambda r: f"{r['b']['bare_launch_p50_ms']:.0f} / {r['b']['bare_p50_ms']:.0f}"),
            names,
        )
    )
    lines.append(
        _row(
            "(b) dispatch overhead above the bare start, p50 / p95 ms",
            cell(
                lambda r: (
                    f"{r['b']['dispatch_overhead_p50_ms']:.0f} / "
                    f"{r['b']['dispatch_overhead_p95_ms']:.0f}"
                )
            ),
            names,
        )
    )
    lines.append(
        _row(
            "(b) end-to-end difference to the bare start, p50 [95% CI] ms",
            cell(
                lambda r: (
                    f"{r['b']['overhead_p50_ms']:.0f} "
                    f"[{r['b']['overhead_ci95_ms'][0]:.0f}, {r['b']['overhead_ci95_ms'][1]:.0f}]"
                )
            ),
            names,
        )
    )
    versus = [n for n in names if f"vs_{n}" in results.get(names[0], {}).get("b", {})]
    if versus:
        vs = results[names[0]]["b"][f"vs_{versus[0]}"]
        label = f"(b) {names[0]} - {versus[0]} per round, p50 [95% CI] ms"
        for key, what in (("e2e", "POST -> first task"), ("dispatch", "POST -> launched")):
            if key in vs:
                median, low, high = vs[key]
                lines.append(
                    _row(
                        f"{label}: {what}",
                        {names[0]: f"{median:.0f} [{low:.0f}, {high:.0f}]"},
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
    return "\n".join(lines)


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
    parser.add_argument("--samples", type=int, default=30, help="phase b alerts per system")
    parser.add_argument("--storm", type=int, default=1000, help="phase c copies")
    parser.add_argument("--storm-window", type=float, default=60.0, help="phase c wait, s")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="selfheal-eda-bench-"))
    kinds = [Selfheal, Rulebook]
    if args.only:
        kinds = [k for k in kinds if k.name == args.only]
    results: dict[str, dict] = {k.name: {} for k in kinds}
    try:
        for phase in (p for p in "abc" if p in args.phases):
            print(f"== phase {phase}", file=sys.stderr, flush=True)
            # fresh servers per phase: no backlog of one phase slows the next
            if phase == "b":  # every system at once, taking turns
                started = [s for s in (k(tmp / f"{k.name}-b") for k in kinds) if _start(s, results)]
                try:
                    results_b = phase_first_task(started, args) if started else {}
                finally:
                    for system in started:
                        system.stop()
                for name, out in results_b.items():
                    results[name]["b"] = out
            else:
                for kind in kinds:
                    system = kind(tmp / f"{kind.name}-{phase}")
                    if not _start(system, results, phase):
                        continue
                    try:
                        run = phase_intake if phase == "a" else phase_storm
                        results[kind.name][phase] = run(system, args)
                        if phase == "c" and isinstance(system, Selfheal):
                            results[kind.name][phase]["store_runs"] = system.runs()
                    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
                        results[kind.name][phase] = {"error": str(exc)}
                    finally:
                        system.stop()
            for name, out in results.items():
                if phase in out:
                    print(
                        f"   {name} {phase}: {json.dumps(out[phase])}", file=sys.stderr, flush=True
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    print(report(results))


def _start(system: System, results: dict[str, dict], phase: str = "b") -> bool:
    """Start `system`'s server; on failure record the error for `phase` and stop it."""
    try:
        system.start()
        return True
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        results[system.name][phase] = {"error": str(exc)}
        system.stop()
        return False


if __name__ == "__main__":
    main()
