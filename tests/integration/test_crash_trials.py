"""kill -9 trials: a real `selfheal serve` killed at random moments (intake, decision,
mid-run, recovery) and restarted with SIGHUP ignored; after each trial every run settled and
the invariants hold: attempts never overlap (per run, per target), each remediation's effect
happened exactly once, nothing acknowledged is lost, and (at the end) the audit trail
verifies. See crash_harness.py.

CI runs SELFHEAL_CRASH_TRIALS trials (default 20); SELFHEAL_CRASH_SEED replays a failure
(the seed is printed). benchmarks/crash_soak.py runs the long mode.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from integration.crash_harness import make_lab, reap, trial, violations

pytestmark = pytest.mark.integration


def test_kill9_trials(tmp_path: Path) -> None:
    trials = int(os.environ.get("SELFHEAL_CRASH_TRIALS", "20"))
    seed = int(os.environ.get("SELFHEAL_CRASH_SEED", str(random.randrange(1 << 32))))
    print(f"crash trials: {trials}, seed {seed} (SELFHEAL_CRASH_SEED={seed} replays them)")
    rng = random.Random(seed)
    lab = make_lab(tmp_path, ticks=2, spread=30, window=0.2, lease_s=10, workers=2)
    outcomes = []
    problems: list[str] = []
    try:
        lab.server.start()
        for number in range(trials):
            outcome = trial(lab, number, rng)
            print(outcome)
            outcomes.append(outcome)
            assert outcome["ok"], f"seed {seed}: trial {outcome} did not settle"
            problems = violations(lab, audit=False)
            assert problems == [], f"seed {seed}: after trial {outcome}: {problems}"
        lab.server.stop()
        problems = violations(lab)
    finally:
        left = reap(lab)
    assert problems == [], f"seed {seed}: {problems}"
    assert left == [], f"seed {seed}: processes of the runs outlived the test: {left}"
    assert len(outcomes) == trials
    phases = {o["phase"] for o in outcomes}
    assert trials < 8 or phases & {"run", "recovery"}, "no trial killed a run"
