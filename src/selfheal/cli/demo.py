"""`selfheal demo`: break a real service on this machine and watch selfheal heal it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selfheal.cli import ExitCode


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the self-healing demo on embedded defaults (loopback only)",
        description="Start a demo web service under a private supervisord, kill it, detect "
        "the failure, decide by policy, heal it with the service_restart playbook through "
        "ansible-runner, verify, and print the timeline with MTTD and MTTR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the demo keeps its supervisord, inventory, runs and audit trail "
        "(default: $XDG_STATE_HOME/selfheal/demo)",
    )
    parser.add_argument("--port", type=int, default=None, help="port of the demo service")
    parser.add_argument(
        "--keep", action="store_true", help="leave the demo service running afterwards"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
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
