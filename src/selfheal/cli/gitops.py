"""`selfheal gitops`: render the GitOps bundle's generated files, and say whether an
environment is frozen (the Flux freeze guard asks this)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_OUT = "gitops"
DEFAULT_POLICY = "gitops/base/policy/policy.yml"
DEFAULT_RULES = "monitoring/prometheus/rules"


def register(subparsers) -> None:
    parser = subparsers.add_parser("gitops", help="Argo CD / Flux bundle: render, freeze status")
    verbs = parser.add_subparsers(dest="gitops_verb", metavar="COMMAND")
    verbs.required = True

    render = verbs.add_parser(
        "render", help="generate Argo CD sync windows and the PrometheusRule (docs/gitops.md)"
    )
    render.add_argument("--policy", default=DEFAULT_POLICY, metavar="FILE", help="policy.yml")
    render.add_argument("--rules", default=DEFAULT_RULES, metavar="DIR", help="alert rule files")
    render.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="the gitops/ tree")
    render.add_argument(
        "--year", type=int, help="horizon: the local year the sync windows cover (default: now)"
    )
    render.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a generated file is stale or its horizon has passed",
    )
    render.set_defaults(func=run_render)

    status = verbs.add_parser("status", help="is GitOps change to an environment frozen now?")
    status.add_argument(
        "--policy",
        default=os.environ.get("SELFHEAL_POLICY", DEFAULT_POLICY),
        metavar="FILE",
        help="policy.yml (default: $SELFHEAL_POLICY)",
    )
    status.add_argument("--environment", required=True, help="the environment, e.g. production")
    status.add_argument("--at", metavar="TIME", help="ISO 8601 time (default: now)")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=run_status)


def _name(path: str) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.name


def run_render(args) -> int:
    from selfheal.gitops.render import Sources, horizon_of, render, stale, write
    from selfheal.policy import load_policy

    policy = load_policy(args.policy)
    out = Path(args.out)
    now_year = datetime.now(UTC).year
    year = args.year or (horizon_of(out) if args.check else None) or now_year
    src = Sources(Path(args.policy), Path(args.rules), out)
    files = render(policy, src, year, {"policy": _name(args.policy), "rules": _name(args.rules)})
    if args.check:
        bad = stale(files, out)
        for rel in bad:
            print(f"stale: {out / rel} (run `selfheal gitops render`)", file=sys.stderr)
        expired = args.year is None and year < now_year
        if expired:
            print(
                f"horizon {year} has passed: run `selfheal gitops render --year {now_year}`",
                file=sys.stderr,
            )
        if bad or expired:
            return 1
        print(f"{len(files)} generated files are current (horizon {year})")
        return 0
    changed = write(files, out)
    for rel in files:
        print(f"{'wrote' if rel in changed else 'unchanged'}: {out / rel}")
    return 0


def run_status(args) -> int:
    from selfheal.gitops.freeze import freeze_state
    from selfheal.policy import load_policy
    from selfheal.policy.model import parse_time

    policy = load_policy(args.policy)
    state = freeze_state(policy, args.environment, parse_time(args.at))
    if args.format == "json":
        print(json.dumps(state.to_dict()))
    else:
        verdict = "FROZEN" if state.frozen else "open"
        why = f": {'; '.join(state.reasons)}" if state.reasons else ""
        print(f"{args.environment} at {state.at.isoformat()}: {verdict}{why}")
    return 0
