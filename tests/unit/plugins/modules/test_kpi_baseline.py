"""The kpi_baseline module: main() with patched args, check mode, and parity with the package."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest
import support
from ansible_collections.selfheal.core.plugins.module_utils import kpi_detector
from ansible_collections.selfheal.core.plugins.modules import kpi_baseline

from selfheal.baseline import KpiDetector, read_csv

COLLECTION = "ansible_collections.selfheal.core"
NAB_FILE = "data/nab/realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv"
T0 = 1_772_409_600  # 2026-03-02 00:00 UTC


@pytest.fixture
def run(module_runner):
    """run(args, check_mode=False) -> (failed, result) of one kpi_baseline main()."""
    return lambda args, check_mode=False: module_runner(kpi_baseline.main, args, check_mode)


def history(n: int = 2000, seed: int = 1) -> list[list[float]]:
    rng = random.Random(seed)
    return [[T0 + 300 * i, 120.0 + rng.gauss(0, 3)] for i in range(n)]


def test_learns_then_flags_a_spike(run, tmp_path) -> None:
    state = tmp_path / "kpi.json"
    args = {"name": "p99 latency", "kind": "latency", "state_path": str(state)}
    failed, result = run({**args, "values": history()})
    assert not failed and result["changed"]
    assert result["learned"] == 2000 and result["trained"] == 2000
    saved = json.loads(state.read_text())["series"]["p99 latency"]
    assert saved["n"] == 2000
    failed, result = run({**args, "values": [{"timestamp": T0 + 300 * 2000, "value": 372.0}]})
    assert not failed
    assert result["anomalous"] is True
    assert result["score"] > 0.9
    assert result["reason"].startswith("p99 latency 3.1\u00d7 its recent level")
    assert len(result["anomalies"]) == 1
    assert result["value"] == 372.0
    assert json.loads(state.read_text())["series"]["p99 latency"]["n"] == 2001


def test_check_mode_writes_no_state(run, tmp_path) -> None:
    state = tmp_path / "kpi.json"
    args = {"name": "rps", "state_path": str(state), "values": history(500)}
    failed, result = run(args, check_mode=True)
    assert not failed and result["changed"] is True
    assert not state.exists()
    run(args)
    before = state.read_bytes()
    more = {"name": "rps", "state_path": str(state), "values": [[T0 + 300 * 500, 999.0]]}
    failed, result = run(more, check_mode=True)
    assert result["changed"] and result["anomalous"]
    assert state.read_bytes() == before


def test_series_file_and_already_learned_points(run, tmp_path) -> None:
    series = tmp_path / "s.csv"
    series.write_text(
        "timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in history(300)) + f"{T0 + 90000},\n"
    )
    args = {"name": "s", "state_path": str(tmp_path / "st.json"), "series_path": str(series)}
    failed, result = run(args)
    assert not failed
    assert result["points"] == 301 and result["learned"] == 300  # the last one is missing
    failed, result = run(args)  # nothing new (the missing point is still missing)
    assert not result["changed"] and result["learned"] == 0
    assert result["reason"] == "s: no value"
    failed, result = run({"name": "s", "state_path": args["state_path"], "values": [[T0, 1.0]]})
    assert not failed
    assert result["reason"] == "s: no new points"


def test_bare_values_are_spaced_by_step(run, tmp_path) -> None:
    args = {"name": "q", "state_path": str(tmp_path / "q.json"), "values": [1, 2, 3], "step": 60}
    failed, result = run(args)
    assert not failed and result["learned"] == 3
    state = json.loads((tmp_path / "q.json").read_text())["series"]["q"]
    assert state["step_s"] == 60.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"values": [["yesterday", 1]]}, "values[0]"),
        ({"values": [{"value": 1}]}, "needs timestamp and value"),
        ({"series_path": "/nonexistent/s.csv"}, "cannot read series_path"),
        ({"values": [1], "threshold": 3.0}, "alarm must be in (0, 1)"),
    ],
)
def test_bad_input_fails_with_the_reason(run, tmp_path, extra, message) -> None:
    failed, result = run({"name": "x", "state_path": str(tmp_path / "x.json"), **extra})
    assert failed
    assert message in result["msg"]


def test_corrupt_state_fails(run, tmp_path) -> None:
    state = tmp_path / "bad.json"
    state.write_text("{not json")
    failed, result = run({"name": "x", "state_path": str(state), "values": [1]})
    assert failed and "cannot read state_path" in result["msg"]


def test_module_utils_detector_matches_the_package() -> None:
    rows = read_csv(support.SHARED / NAB_FILE)[:2500]
    rows[700] = (rows[700][0], None)
    ours = KpiDetector()
    theirs = kpi_detector.KpiDetector()
    a = [ours.update(t, x) for t, x in rows]
    b = [theirs.update(t, x) for t, x in rows]
    assert a == b
    assert json.loads(json.dumps(ours.to_state())) == json.loads(json.dumps(theirs.to_state()))
    t = rows[-1][0] + 300
    assert ours.step(t, 99.0).reason == theirs.step(t, 99.0)["reason"]
    assert not math.isnan(sum(a))


def test_runs_as_a_module_with_json_args(tmp_path) -> None:
    state = tmp_path / "k.json"
    args = {"ANSIBLE_MODULE_ARGS": {"name": "k", "state_path": str(state), "values": [5, 6]}}
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(support.COLLECTIONS), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", f"{COLLECTION}.plugins.modules.kpi_baseline", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["changed"] is True and result["learned"] == 2
    assert state.exists()
