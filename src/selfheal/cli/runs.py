"""`selfheal runs list|cancel`: the dispatcher's runs from a shell.

Canceling needs a token with the `operate` scope (the operator, approver and admin console
roles); the dispatcher records who canceled and why, from the token, in the audit trail.
"""

from __future__ import annotations

import json
import sys

from selfheal.cli.approvals import add_api_arguments, api_token, call


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list recent remediation runs, or cancel one")
    add_api_arguments(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="the newest runs, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    cancel = actions.add_parser(
        "cancel", help="cancel a queued run, or stop a running one (no retry, no escalation)"
    )
    cancel.add_argument("run_id", type=int, help="the run's id")
    cancel.add_argument(
        "--reason", metavar="TEXT", required=True, help="why (recorded in the audit trail)"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    token = api_token(args)
    try:
        if args.action == "list":
            status, body = call(args.url, token, "GET", f"/runs?limit={max(1, args.limit)}")
        else:
            path = f"/runs/{args.run_id}/cancel"
            status, body = call(args.url, token, "POST", path, {"reason": args.reason})
    except OSError as exc:
        print(f"selfheal runs: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 3
    if args.json or status >= 400:
        print(json.dumps(body, indent=2))
    elif args.action == "list":
        for item in body.get("runs", []):
            print(
                f"{item['id']:>6} {item['status']:<11} {item['runbook']:<22} {item['target']:<16}"
                f" incident {item['incident_id']} attempt {item['attempts']}"
            )
    else:
        print(f"run {args.run_id}: {body.get('status')}")
    if status >= 400:
        return 1 if status in (400, 403, 404, 409) else 3
    return 0
