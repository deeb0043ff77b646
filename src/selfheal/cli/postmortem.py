"""`selfheal postmortem`: a postmortem draft (Markdown or HTML) of one incident."""

from __future__ import annotations

import sys
from pathlib import Path

from selfheal.audit import Keyring
from selfheal.reporting import build, gather, load_audit, to_html, to_markdown
from selfheal.reporting.cli_common import open_existing_store


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "postmortem",
        help="draft a postmortem of one incident",
        description="Draft a postmortem (summary, impact, detection, timeline, what the "
        "automation did, root-cause candidates, action items) from the store and, "
        "optionally, the audit trail. Exit 2 for an unknown incident, 1 when the audit "
        "trail fails verification (the draft is still written and says so).",
    )
    parser.add_argument("incident", type=int, metavar="INCIDENT", help="incident id")
    parser.add_argument("--store", required=True, metavar="PATH", help="store file or URL")
    parser.add_argument("--audit", metavar="DIR", help="audit trail directory")
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help="audit key file (default: SELFHEAL_AUDIT_KEYS, else the default key file)",
    )
    parser.add_argument("--out", metavar="FILE", help="write here (default: stdout)")
    parser.add_argument("--format", choices=("md", "html"), default="md", help="output format")
    parser.set_defaults(func=run)


def run(args) -> int:
    from selfheal.cli import ExitCode

    with open_existing_store(args.store) as store:
        incident = store.get_incident(args.incident)
        if incident is None:
            print(f"selfheal postmortem: no incident {args.incident}", file=sys.stderr)
            return ExitCode.USAGE
        facts = gather(store, incident)
    audit = None
    if args.audit:
        key_file = args.key_file
        keyring = Keyring.load_file(key_file) if key_file else Keyring.load(create=False)
        audit = load_audit(args.audit, keyring, incident.id)
    doc = build(facts, audit)
    text = to_html(doc) if args.format == "html" else to_markdown(doc)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if audit is not None and not audit.ok:
        print(f"selfheal postmortem: audit trail: {audit.summary}", file=sys.stderr)
        return ExitCode.NEGATIVE
    return ExitCode.OK
