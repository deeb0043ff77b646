"""`selfheal demo`: break a real service and watch selfheal heal it.

Two shapes of the same loop:
- on the lab (default where network namespaces work, i.e. as root): lab hosts over SSH,
  Prometheus, Alertmanager and the dispatcher; the lab stays up afterwards;
- local (`--local`, or where the lab cannot run): a private supervisord on loopback, a prober
  as the detector, the policy and the heal playbook called directly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selfheal.cli import ExitCode


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the self-healing demo on embedded defaults",
        description="Kill a real service and watch selfheal detect it, decide by policy, heal "
        "it with an Ansible playbook, verify it and record everything in the audit trail; "
        "prints the timeline with MTTD and MTTR. As root it runs on the lab (network-namespace "
        "hosts, Prometheus, Alertmanager, the dispatcher) and leaves the lab up for exploration "
        "(`selfheal lab down` removes it); otherwise, or with --local, on loopback only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="the loopback-only demo: no lab, no Prometheus, no dispatcher",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the demo keeps its state (default: the lab's, or "
        "$XDG_STATE_HOME/selfheal/demo with --local)",
    )
    parser.add_argument("--port", type=int, default=None, help="--local: the service's port")
    parser.add_argument(
        "--keep", action="store_true", help="--local: leave the demo service running afterwards"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    from selfheal.lab.lab import netns_support

    if args.local or netns_support() is not None:
        if not args.local:
            print(f"selfheal demo: the lab cannot run here ({netns_support()}); running --local")
        return _run_local(args)
    return _run_lab(args)


def _run_lab(args) -> int:
    from selfheal.demo import run_lab_demo

    echo = (lambda _line: None) if args.json else print
    report, state_dir = run_lab_demo(state_dir=args.state_dir, echo=echo)
    passed = report.healed and bool(report.audit and report.audit["ok"])
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
        return ExitCode.OK if passed else ExitCode.NEGATIVE
    print()
    if report.healed:
        print(f"healed {report.host}: MTTD {report.mttd_s:.1f} s, MTTR {report.mttr_s:.1f} s")
    else:
        print(f"NOT healed: {report.missed}")
    if report.audit:
        state = "intact" if report.audit["ok"] else "BROKEN"
        print(f"audit trail: {report.audit['trail']} ({report.audit['records']} records, {state})")
        print(
            f"  check it: selfheal audit verify {report.audit['trail']} "
            f"--key-file {report.audit['key_file']}"
        )
    print(f"the lab is still up: selfheal lab status --state-dir {state_dir}")
    print(f"                     selfheal lab down --state-dir {state_dir}")
    return ExitCode.OK if passed else ExitCode.NEGATIVE


def _run_local(args) -> int:
    from selfheal.demo import run_demo

    echo = (lambda _line: None) if args.json else print
    report = run_demo(state_dir=args.state_dir, port=args.port, keep=args.keep, echo=echo)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return ExitCode.OK if _passed(report) else ExitCode.NEGATIVE
    print()
    if report.healed:
        print(f"healed: MTTD {report.mttd_s:.2f} s, MTTR {report.mttr_s:.2f} s")
    else:
        print("NOT healed: see the timeline above")
    if report.audit:
        state = "intact" if report.audit["ok"] else "BROKEN"
        print(f"audit trail: {report.audit['trail']} ({report.audit['records']} records, {state})")
        key_file = Path(report.audit["trail"]).with_name("audit-keys.json")
        print(f"  check it: selfheal audit verify {report.audit['trail']} --key-file {key_file}")
    if report.run_dir:
        print(f"ansible-runner artifacts: {report.run_dir}")
    return ExitCode.OK if _passed(report) else ExitCode.NEGATIVE


def _passed(report) -> bool:
    return report.healed and bool(report.audit and report.audit["ok"])
