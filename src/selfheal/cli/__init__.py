"""The `selfheal` command line.

Each verb lives in its own module under `selfheal.cli` and exposes `register(subparsers)`,
which adds one sub-parser whose default `func(args) -> int` runs it. Exit codes mean the
same for every verb (see `ExitCode`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from enum import IntEnum

from selfheal import __version__
from selfheal.errors import SelfhealError


class ExitCode(IntEnum):
    OK = 0  # done; the thing checked is healthy / allowed / intact
    NEGATIVE = 1  # ran fine, and the answer is "no": unhealthy, denied, tampered
    USAGE = 2  # bad arguments or bad input files; nothing was done
    FAILURE = 3  # could not do the job (I/O, an unreachable component)


# Verb modules, in the order `--help` lists them.
VERBS: tuple[str, ...] = (
    "approvals",
    "audit",
    "chaos",
    "demo",
    "detect",
    "freeze",
    "gitops",
    "lab",
    "logs",
    "policy",
    "postmortem",
    "report",
    "runs",
    "serve",
    "synthetic",
    "traces",
    "version",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfheal",
        description="Self-healing infrastructure: health checks, policy-gated remediation, "
        "tamper-evident audit.",
        epilog="Exit codes: 0 ok, 1 negative answer (unhealthy, denied, tampered), "
        "2 usage or input error, 3 failure to do the job.",
    )
    parser.add_argument("--version", action="version", version=f"selfheal {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    for name in VERBS:
        importlib.import_module(f"selfheal.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SelfhealError as exc:
        print(f"selfheal {args.verb}: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print(f"selfheal {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
