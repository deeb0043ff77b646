"""The side-by-side benchmark's POST -> first task phase measures what it says.

Runs ``benchmarks/eda_side_by_side.py --only selfheal --phases b`` with a real
``selfheal serve`` and real ansible-runner runs (a few samples: this checks the harness,
not the speed) and checks that its timings hang together: ansible-playbook is launched
after the POST and before its first task, and the parts add up to the whole.
"""

from __future__ import annotations

import json
import subprocess
import sys

from support import REPO

# the launch stamp is the kernel's process start, truncated to a clock tick (10 ms)
TICK_MS = 10


def test_first_task_phase_splits_dispatch_from_ansible_start() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/eda_side_by_side.py"),
            "--only",
            "selfheal",
            "--phases",
            "b",
            "--samples",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=REPO,
    )
    raw = out.stdout[: out.stdout.rindex("\n}") + 2]  # the JSON before the table
    b = json.loads(raw)["selfheal"]["b"]
    assert b["samples"] == 3
    assert -TICK_MS <= b["launch_p50_ms"] < b["p50_ms"]
    assert b["ansible_start_p50_ms"] > 100  # ansible-playbook's own start, never free
    assert -TICK_MS <= b["bare_launch_p50_ms"] < b["bare_p50_ms"]
    low, high = b["overhead_ci95_ms"]
    assert low <= b["overhead_p50_ms"] <= high
    assert "vs_ansible-rulebook" not in b  # one system: nothing to pair with
    table = out.stdout[len(raw) :]
    assert "| (b) dispatch overhead above the bare start, p50 / p95 ms |" in table
