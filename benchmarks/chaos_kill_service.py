"""Chaos benchmark: the kill-service experiment (kill web, detect, heal, steady state
again) run N times on a lab, with MTTD and MTTR medians and where the time goes.

    sudo python benchmarks/chaos_kill_service.py                 # its own lab, 5 runs
    python benchmarks/chaos_kill_service.py --inventory INV -n 7 # an existing lab

Without --inventory it brings up a lab of its own (netns mode as root, else loopback;
its own state dir, namespace prefix, bridge and subnet) and tears it down afterwards. Each
run is appended to the lab's chaos history, so `selfheal chaos history` shows the trend.

The breakdown of MTTR (fault -> steady state again):
  detection     fault -> first failing probe (bounded by the probe interval)
  heal          the heal playbook (heal_service.yml through selfheal.runner), end to end
  verification  heal done -> every probe holds again
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from selfheal.chaos import audit, history  # noqa: E402
from selfheal.chaos.engine import ExperimentRunner, PlaybookExecutor  # noqa: E402
from selfheal.chaos.experiment import load_experiment  # noqa: E402
from selfheal.chaos.inventory import LabInventory  # noqa: E402

TAG = os.getpid() % 1000


def _collections() -> None:
    """Point ansible at this checkout's collection, as the tests do."""
    sys.path.insert(0, str(REPO / "tests"))
    import support  # noqa: F401  (sets ANSIBLE_COLLECTIONS_PATH and PYTHONPATH)


def _lab(command: str, state: Path, *opts: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "selfheal.cli", "lab", command, "--state-dir", str(state), *opts],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"lab {command} failed: {proc.stderr.strip()}")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f}s" if values else "     -"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, help="an existing lab's inventory")
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--experiment", default="kill_web_healed")
    parser.add_argument("--audit-trail", type=Path, help="read the healing from this trail")
    args = parser.parse_args()
    _collections()
    own = args.inventory is None
    work = Path(tempfile.mkdtemp(prefix="shcb-"))
    state = work / "s"
    if own:
        netns = os.geteuid() == 0 and shutil.which("ip")
        opts = ["--hosts", "2", "--mode", "netns" if netns else "loopback"]
        if netns:
            opts += ["--netns-prefix", f"shcb{TAG}-", "--bridge", f"shcb{TAG}"]
            opts += ["--subnet", f"10.73.{TAG % 250}.0/24"]
        else:
            opts += ["--subnet", f"127.73.{TAG % 250}.0/24", "--ssh-port-base", str(40000 + TAG)]
        print(f"lab up ({opts[3]} mode) in {state}", flush=True)
        _lab("up", state, *opts)
    try:
        inventory = LabInventory.load(args.inventory or state / "inventory" / "hosts.yml")
        experiment = load_experiment(args.experiment)
        experiment.check_against(inventory)
        trail = audit.configured(args.audit_trail)
        rows = []
        for i in range(1, args.runs + 1):
            runner = ExperimentRunner(
                experiment, inventory, PlaybookExecutor(inventory, work / "runs"), audit=trail
            )
            run = runner.run()
            report = run.to_dict()
            history.append(history.history_path(inventory.chaos_dir), report)
            heal = run.heal or {}
            heal_end = (heal.get("started_at") or 0) + (heal.get("seconds") or 0)
            row = {
                "status": run.status,
                "mttd": run.mttd,
                "mttr": run.mttr,
                "inject": (run.method[0].get("seconds") if run.method else None),
                "heal": heal.get("seconds"),
                "verify": (run.recovered_at - heal_end) if run.recovered_at and heal_end else None,
                "rollback": sum(r.get("seconds", 0) for r in run.rollbacks),
                "tasks": heal.get("tasks") or {},
            }
            rows.append(row)
            print(
                f"run {i}: {run.status:7} MTTD {run.mttd if run.mttd is not None else '-'}s "
                f"MTTR {run.mttr if run.mttr is not None else '-'}s "
                f"(inject {row['inject'] or 0:.1f}s, heal {row['heal'] or 0:.1f}s, "
                f"rollback {row['rollback']:.1f}s){'' if run.passed else ' ' + str(run.missed)}",
                flush=True,
            )
            time.sleep(1)
    finally:
        if own:
            _lab("down", state)
        shutil.rmtree(work, ignore_errors=True)

    def values(key: str) -> list[float]:
        return [r[key] for r in rows if r[key] is not None]

    interval = experiment.detection.interval
    print()
    print(f"{args.experiment}: {sum(r['status'] == 'passed' for r in rows)}/{len(rows)} passed")
    print(
        f"MTTD median {_median(values('mttd'))}  (fault -> first failing probe, every {interval:g}s)"
    )
    print(f"MTTR median {_median(values('mttr'))}  (fault -> steady state again)")
    print("where the MTTR goes (medians):")
    print(f"  detection      {_median(values('mttd'))}  probe interval {interval:g}s")
    print(f"  heal playbook  {_median(values('heal'))}  heal_service.yml via selfheal.runner")
    task_names = {name for r in rows for name in r["tasks"]}
    per_task = {n: [r["tasks"][n] for r in rows if n in r["tasks"]] for n in task_names}
    in_tasks = [sum(r["tasks"].values()) for r in rows if r["tasks"]]
    for name, secs in sorted(per_task.items(), key=lambda kv: -statistics.median(kv[1]))[:6]:
        print(f"    {_median(secs)}  task: {name}")
    overhead = [r["heal"] - sum(r["tasks"].values()) for r in rows if r["heal"] and r["tasks"]]
    print(f"    {_median(overhead)}  ansible start-up, SSH, between tasks")
    if not in_tasks:
        print("    (no per-task timings)")
    print(f"  verification   {_median(values('verify'))}  heal done -> probes hold")
    print("outside the MTTR (medians):")
    print(f"  inject         {_median(values('inject'))}  kill_service.yml, inject phase")
    print(f"  rollback       {_median(values('rollback'))}  kill_service.yml, rollback phase")
    return 0 if all(r["status"] == "passed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
