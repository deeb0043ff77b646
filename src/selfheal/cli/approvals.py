"""`selfheal approvals list|approve|deny`: the dispatcher's approval API from a shell.

The approver is whoever the API token belongs to (its name and roles in the dispatcher's
configuration); nothing on the command line can claim another identity.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from selfheal.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:9095"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "approvals", help="list, approve or deny remediations waiting for approval"
    )
    add_api_arguments(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="pending approvals")
    for verdict in ("approve", "deny"):
        sub = actions.add_parser(verdict, help=f"{verdict} a request")
        sub.add_argument("request_id", help="e.g. incident-42")
        sub.add_argument(
            "--reason",
            metavar="TEXT",
            help="why (recorded with the vote and in the audit trail; tokens with a"
            " console role must give one)",
        )
    parser.set_defaults(func=run)


def add_api_arguments(parser) -> None:
    """--url, --token, --token-file and --json: how a verb reaches the dispatcher's API."""
    parser.add_argument(
        "--url", default=os.environ.get("SELFHEAL_URL", DEFAULT_URL), help="dispatcher URL"
    )
    parser.add_argument("--token", help="API token (default: SELFHEAL_API_TOKEN)")
    parser.add_argument("--token-file", metavar="FILE", help="read the API token from FILE")
    parser.add_argument("--json", action="store_true", help="print JSON")


def api_token(args) -> str:
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read ({exc.strerror})", "--token-file") from exc
    token = args.token or os.environ.get("SELFHEAL_API_TOKEN")
    if not token:
        raise ConfigError("no API token: --token, --token-file or SELFHEAL_API_TOKEN", "--token")
    return token


def call(
    url: str, token: str, method: str, path: str, body: dict | None = None
) -> tuple[int, dict]:
    request = urllib.request.Request(
        url.rstrip("/") + path,
        method=method,
        data=json.dumps(body or {}).encode() if method == "POST" else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": exc.reason}


def run(args) -> int:
    token = api_token(args)
    try:
        if args.action == "list":
            status, body = call(args.url, token, "GET", "/approvals")
        else:
            rid = urllib.parse.quote(args.request_id, safe="")
            vote = {"reason": args.reason} if args.reason else {}
            path = f"/approvals/{rid}/{args.action}"
            status, body = call(args.url, token, "POST", path, vote)
    except OSError as exc:
        print(f"selfheal approvals: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 3
    if args.json or status >= 400:
        print(json.dumps(body, indent=2))
    elif args.action == "list":
        items = body.get("approvals", [])
        for item in items:
            print(
                f"{item['request_id']:<20} {item.get('runbook') or '-':<20}"
                f" {item.get('target') or '-':<16} quorum {item.get('quorum')}"
                f" votes {len(item.get('votes', []))} expires {item.get('expires_at')}"
            )
        print(f"({len(items)} pending)")
    else:
        print(f"{args.request_id}: {body.get('status')}")
    if status >= 400:
        return 1 if status in (403, 404, 409) else 3
    return 0
