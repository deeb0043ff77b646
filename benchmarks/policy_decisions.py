"""How fast does the policy engine decide? Decisions/s and p50/p99 per decision.

A generated policy with 1,000 routes and 50 freeze windows (cron and calendar, several time
zones), 100 services of 10 hosts, and a state with some run history. Matchers and cron
schedules are compiled once at load; a decision re-parses nothing.

    python benchmarks/policy_decisions.py [--decisions 20000] [--state memory|sqlite]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from selfheal.policy import MemoryState, Request, SQLiteState, compile_policy, evaluate

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney"]
RISKS = ["low", "medium", "high", "critical"]


def generate(routes: int = 1000, windows: int = 50, services: int = 100, hosts: int = 10):
    rng = random.Random(7)
    svc = {
        f"svc{i:03d}": {
            "hosts": [f"svc{i:03d}-h{j:02d}" for j in range(hosts)],
            "environment": rng.choice(["prod", "staging"]),
            "escalation": f"pd:team{i % 17}",
        }
        for i in range(services)
    }
    runbooks = {
        f"rb{i:02d}": {"playbook": f"playbooks/rb{i:02d}.yml", "risk": RISKS[i % 4], "cost": 0.1}
        for i in range(50)
    }
    route_list = []
    for i in range(routes):
        service = f"svc{i % services:03d}"
        route = {
            "name": f"route{i:04d}",
            "match": {"alertname": f"Alert{i % 250:03d}", "service": service},
            "runbook": f"rb{i % 50:02d}",
        }
        if i % 5 == 0:
            route["match_re"] = {"severity": "warning|critical"}
        route_list.append(route)
    window_list = []
    for i in range(windows):
        window = {
            "name": f"w{i:02d}",
            "kind": "deny" if i % 3 else "allow",
            "timezone": ZONES[i % len(ZONES)],
        }
        if i % 4 == 3:
            window["dates"] = ["12-24..12-26", f"2026-{1 + i % 12:02d}-1{i % 10}"]
        else:
            window["schedule"] = f"{i % 60} {i % 24} * * {i % 7}"
            window["duration"] = f"{1 + i % 5}h"
        window["services"] = [f"svc{(i * 7 + k) % services:03d}" for k in range(3)]
        if i % 2:
            window["risks"] = [RISKS[i % 4]]
        window_list.append(window)
    policy = {
        "version": 1,
        "limits": {
            "runs_per_target": {"count": 3, "per": "1h"},
            "runs_per_runbook": {"count": 100, "per": "1h"},
            "daily_cost_budget": 1000,
        },
        "compliance": {"required_tags": ["selfheal_managed"]},
        "services": svc,
        "runbooks": runbooks,
        "routes": route_list,
        "windows": window_list,
    }
    return policy, svc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--state", choices=("memory", "sqlite"), default="memory")
    args = parser.parse_args(argv)

    data, services = generate()
    t0 = time.perf_counter()
    policy = compile_policy(data)
    compile_ms = (time.perf_counter() - t0) * 1000
    inventory = {h: {"selfheal_managed": True} for s in services.values() for h in s["hosts"]}

    tmp = tempfile.TemporaryDirectory()
    state = SQLiteState(Path(tmp.name) / "state.db") if args.state == "sqlite" else MemoryState()
    rng = random.Random(11)
    start = datetime(2026, 3, 6, 12, tzinfo=UTC)  # the DST weekend in New York is ahead
    for k in range(500):  # some history: runs, failures, unhealthy hosts
        svc = f"svc{rng.randrange(100):03d}"
        host = f"{svc}-h{rng.randrange(10):02d}"
        at = start - timedelta(minutes=rng.randrange(120))
        state.record_run(
            request_id=f"h{k}",
            runbook=f"rb{rng.randrange(50):02d}",
            target=host,
            service=svc,
            at=at,
            cost=0.1,
        )
        state.record_result(
            runbook=f"rb{rng.randrange(50):02d}", target=host, ok=rng.random() > 0.2, at=at
        )
        if k % 10 == 0:
            state.set_health(svc, host, healthy=False, at=at)

    requests = []
    for _ in range(2000):
        i = rng.randrange(1000)
        labels = {
            "alertname": f"Alert{i % 250:03d}",
            "service": f"svc{i % 100:03d}",
            "instance": f"svc{i % 100:03d}-h{rng.randrange(10):02d}:9100",
            "severity": rng.choice(["warning", "critical", "info"]),
        }
        requests.append(Request(labels=labels, inventory=inventory, request_id=f"r{_}"))

    def run(label: str, times) -> None:
        for request, now in zip(requests[:200], times[:200], strict=False):  # warm-up
            evaluate(policy, request, state, now)
        samples = []
        modes: dict[str, int] = {}
        wall = time.perf_counter()
        for n in range(args.decisions):
            request, now = requests[n % len(requests)], times[n % len(times)]
            t = time.perf_counter_ns()
            decision = evaluate(policy, request, state, now)
            samples.append(time.perf_counter_ns() - t)
            modes[decision.mode] = modes.get(decision.mode, 0) + 1
        wall = time.perf_counter() - wall
        samples.sort()
        p50 = samples[len(samples) // 2] / 1000
        p99 = samples[int(len(samples) * 0.99)] / 1000
        print(
            f"{label:34} {args.decisions / wall:9.0f} decisions/s   p50 {p50:7.1f} us   "
            f"p99 {p99:7.1f} us   mean {statistics.fmean(samples) / 1000:7.1f} us   "
            f"modes {dict(sorted(modes.items()))}"
        )

    print(
        f"policy: {len(policy.routes)} routes, {len(policy.windows)} windows, "
        f"{len(policy.services)} services, {len(policy.runbooks)} runbooks; "
        f"compiled in {compile_ms:.0f} ms; state: {args.state}"
    )
    # A long-running dispatcher holds the compiled policy for its lifetime: keep the collector
    # from rescanning it (and the generated requests) during the measurement.
    gc.collect()
    gc.freeze()
    steady = [start + timedelta(seconds=s) for s in range(args.decisions)]
    run("steady clock (1 decision/s)", steady)
    jumpy = [start + timedelta(minutes=rng.randrange(60 * 24 * 400)) for _ in range(args.decisions)]
    run("random instants over 400 days", jumpy)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
