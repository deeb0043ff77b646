"""`selfheal freeze status`: which freeze windows are open, and when they open or close next."""

from __future__ import annotations

import json

from selfheal.policy.model import parse_time
from selfheal.policy.windows import HORIZON


def register(subparsers) -> None:
    parser = subparsers.add_parser("freeze", help="freeze windows of a remediation policy")
    verbs = parser.add_subparsers(dest="freeze_verb", metavar="COMMAND")
    verbs.required = True
    status = verbs.add_parser("status", help="open windows, and when each next opens or closes")
    status.add_argument("--policy", required=True, metavar="FILE", help="policy.yml")
    status.add_argument("--at", metavar="TIME", help="ISO 8601 time (default: now)")
    status.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format"
    )
    status.set_defaults(func=run_status)


def _scope(window) -> str:
    parts = []
    for label, values in (
        ("services", window.services),
        ("risks", window.risks),
        ("runbooks", window.runbooks),
        ("environments", window.environments),
    ):
        if values:
            parts.append(f"{label}={','.join(sorted(values))}")
    if not parts:
        return "everything"
    return (" and " if window.match_all else " or ").join(parts)


def window_status(policy, now) -> list[dict]:
    rows = []
    for window in policy.windows:
        state = window.state_at(now)
        rows.append(
            {
                "name": window.name,
                "kind": window.kind,
                "active": state.active,
                "since": state.start.isoformat() if state.start else None,
                "closes": state.end.isoformat() if state.end else None,
                "next_opens": state.next_open.isoformat() if state.next_open else None,
                "scope": _scope(window),
                "timezone": window.tz.key,
                "schedule": window.cron.expression if window.cron else None,
                "dates": [
                    "..".join("-".join(f"{n:02d}" for n in end) for end in (s.start, s.end))
                    for s in window.dates
                ],
                "break_glass": window.break_glass,
                "overrun": window.overrun,
            }
        )
    return rows


def run_status(args) -> int:
    from selfheal.policy import load_policy

    policy = load_policy(args.policy)
    now = parse_time(args.at)
    rows = window_status(policy, now)
    if args.format == "json":
        print(json.dumps({"at": now.isoformat(), "windows": rows}, indent=2))
        return 0
    print(f"freeze windows at {now.isoformat()}")
    if not rows:
        print("  (none)")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        if r["active"]:
            since = r["since"] or f"over {HORIZON.days} days ago"
            closes = r["closes"] or f"not within {HORIZON.days} days"
            when = f"OPEN    since {since}, closes {closes}"
        else:
            when = f"closed  next opens {r['next_opens'] or '(never)'}"
        print(f"  {r['name']:<{width}}  {r['kind']:<5}  {when}  [{r['scope']}]")
    return 0
