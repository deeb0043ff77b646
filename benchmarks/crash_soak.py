"""Crash soak: kill -9 trials against a real `selfheal serve`, many more than CI runs.

    python benchmarks/crash_soak.py                  # 100 trials, a random seed
    python benchmarks/crash_soak.py -n 500 --seed 7  # replay a seed

Each trial posts a few alerts (a runbook whose effect is counted), SIGKILLs the dispatcher
process alone at a random moment (during intake, just after the decisions, mid-run, or
mid-run and again during the recovery), restarts it with SIGHUP ignored, and waits until
every run settled; then checks the invariants (tests/integration/crash_harness.py): no two
attempts on a target overlap, each remediation's effect happened exactly once, nothing
acknowledged is lost; at the end, the audit trail verifies. Prints the trials run, the
violations found, and where the time went.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

import support  # noqa: E402,F401  (points ansible and subprocesses at this checkout)
from integration.crash_harness import make_lab, reap, trial, violations  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the lab directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="selfheal-crash-soak-"))
    lab = make_lab(root, ticks=2, spread=30, window=0.2, lease_s=10, workers=2)
    outcomes: list[dict] = []
    found: list[str] = []
    began = time.monotonic()
    print(f"crash soak: {args.trials} trials, seed {seed}, lab {root}")
    try:
        lab.server.start()
        for number in range(args.trials):
            outcome = trial(lab, number, rng)
            outcomes.append(outcome)
            problems = violations(lab, audit=False) if outcome["ok"] else ["did not settle"]
            new = [p for p in problems if p not in found]
            found += new
            status = "ok" if not new else f"VIOLATION {new}"
            print(
                f"trial {number:4d}  {outcome['phase']:<9} alerts {outcome['alerts']}"
                f"  kill after {outcome['kill_s']:5.2f} s  restart {outcome['restart_s']:5.2f} s"
                f"  settled in {outcome['settle_s']:5.2f} s  {status}",
                flush=True,
            )
            if not outcome["ok"]:
                break
        lab.server.stop()
        found += [p for p in violations(lab) if p not in found]
    finally:
        left = reap(lab)
    if left:
        found.append(f"processes left running: {left}")
    phases = Counter(o["phase"] for o in outcomes)
    settle = [o["settle_s"] for o in outcomes]
    print(f"trials run          {len(outcomes)} ({dict(sorted(phases.items()))})")
    print(f"alerts posted       {lab.alerts_sent}, acknowledged {len(lab.acked)}")
    if settle:
        print(
            f"settle after restart  median {statistics.median(settle):.2f} s"
            f"  max {max(settle):.2f} s"
        )
    print(f"wall time           {time.monotonic() - began:.1f} s")
    print(f"violations found    {len(found)}")
    for problem in found:
        print(f"  - {problem}")
    if not args.keep and not found:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
