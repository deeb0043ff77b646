"""`selfheal audit`: verify, show and checkpoint the tamper-evident trail; manage its keys;
forward it to collectors."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from selfheal.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit", help="verify, show, checkpoint and forward the audit trail"
    )
    sub = parser.add_subparsers(dest="audit_command", metavar="COMMAND")
    sub.required = True

    def common(p: argparse.ArgumentParser, keys: bool = True) -> None:
        p.add_argument(
            "path",
            nargs="?",
            help="trail directory or one segment file (default: $SELFHEAL_AUDIT_TRAIL, "
            "else ~/.local/state/selfheal/audit)",
        )
        if keys:
            p.add_argument(
                "--key-file",
                help="keyring file (default: $SELFHEAL_AUDIT_KEY_FILE, else "
                "~/.config/selfheal/audit-keys.json; $SELFHEAL_AUDIT_KEYS overrides)",
            )

    p = sub.add_parser(
        "verify",
        help="check hashes, HMACs, sequence and (with --checkpoint) the tail",
        description="Exit 0 when the trail is intact, 1 when it was tampered with, 2 on bad usage.",
    )
    common(p)
    p.add_argument("--checkpoint", help="a file written by `selfheal audit checkpoint`")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_verify)

    p = sub.add_parser("show", help="list records, filtered, as a table or JSON")
    common(p, keys=False)
    p.add_argument("--incident", help="only this incident id")
    p.add_argument("--target", help="only this target")
    p.add_argument("--actor", help="only records whose user, dispatcher or AWX job id is this")
    p.add_argument("--action", help="only this action (e.g. task, play.start)")
    p.add_argument("--since", help="from this UTC time (ISO 8601, e.g. 2026-01-31T08:00)")
    p.add_argument("--until", help="up to this UTC time (ISO 8601)")
    p.add_argument("--limit", type=int, help="at most this many (the latest)")
    p.add_argument("--json", action="store_true", help="one JSON record a line")
    p.set_defaults(func=run_show)

    p = sub.add_parser(
        "checkpoint", help="record the last seq and hash, to catch a deleted tail later"
    )
    common(p, keys=False)
    p.add_argument("-o", "--output", help="write to this file (default: print)")
    p.set_defaults(func=run_checkpoint)

    p = sub.add_parser(
        "keygen", help="create the key file, or add a new active key to it (rotation)"
    )
    p.add_argument("--key-file", help="keyring file (default as for verify)")
    p.add_argument("--key-id", help="id of the new key (default: time-based)")
    p.set_defaults(func=run_keygen)

    p = sub.add_parser("forward", help="send new records to a collector through the durable outbox")
    common(p, keys=False)
    p.add_argument(
        "--to",
        required=True,
        help="syslog+tcp://HOST:PORT, elasticsearch+http(s)://HOST:PORT[/INDEX], "
        "splunk+http(s)://HOST:PORT (token in $SELFHEAL_SPLUNK_HEC_TOKEN), "
        "loki+http(s)://HOST:PORT",
    )
    p.add_argument("--outbox", help="outbox database (default: <trail>/.outbox.sqlite)")
    p.add_argument("--force", action="store_true", help="ignore the retry backoff")
    p.set_defaults(func=run_forward)


def _trail(args) -> Path:
    from selfheal.audit.trail import default_trail

    return Path(args.path) if args.path else default_trail()


def _keyring(args):
    from selfheal.audit.keyring import Keyring

    return Keyring.load(args.key_file, create=False)


def run_verify(args) -> int:
    from selfheal.audit.verify import load_checkpoint, verify
    from selfheal.cli import ExitCode

    path = _trail(args)
    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else None
    report = verify(path, _keyring(args), checkpoint)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return ExitCode.OK if report.ok else ExitCode.NEGATIVE
    keys = ", ".join(f"{k} ({n})" for k, n in sorted(report.keys_used.items())) or "none"
    if report.ok:
        tail = f", tail matches checkpoint seq {checkpoint['seq']}" if checkpoint else ""
        print(
            f"audit trail {path}: INTACT: {report.records} records in {report.segments} "
            f"segment(s), {report.bytes} bytes, last seq {report.last_seq}; keys {keys}{tail}"
        )
        print(f"last hash {report.last_hash}  ({report.seconds:.2f} s)")
        return ExitCode.OK
    bad = report.problem
    print(f"audit trail {path}: TAMPERED")
    where = f"segment {bad.segment}" + (f" line {bad.line}" if bad.line else "")
    print(f"  first bad record: {where}" + (f" (seq {bad.seq})" if bad.seq is not None else ""))
    print(f"  reason: {bad.reason}")
    if bad.record:
        print(f"  record: {bad.record}")
    print(f"  {report.records} records verified before it")
    return ExitCode.NEGATIVE


def _parse_time(text: str | None, option: str) -> str | None:
    from selfheal.audit.record import utc_timestamp

    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_timestamp(moment.timestamp())


def _actor_matches(actor, wanted: str) -> bool:
    if isinstance(actor, dict):
        return any(str(v) == wanted for v in actor.values() if v is not None)
    return str(actor) == wanted


def run_show(args) -> int:
    from selfheal.audit.trail import iter_records

    path = _trail(args)
    if not path.exists():
        raise ConfigError("no such audit trail", str(path))
    since = _parse_time(args.since, "--since")
    until = _parse_time(args.until, "--until")
    rows = []
    for rec in iter_records(path):
        ts = str(rec.get("ts", ""))
        if args.incident and rec.get("incident_id") != args.incident:
            continue
        if args.target and rec.get("target") != args.target:
            continue
        if args.action and rec.get("action") != args.action:
            continue
        if args.actor and not _actor_matches(rec.get("actor"), args.actor):
            continue
        if (since and ts < since) or (until and ts > until):
            continue
        rows.append(rec)
    if args.limit is not None:
        rows = rows[-args.limit :] if args.limit > 0 else []
    if args.json:
        for rec in rows:
            print(json.dumps(rec, sort_keys=True, ensure_ascii=False))
        return 0
    table = [("SEQ", "TIME (UTC)", "ACTOR", "ACTION", "TARGET", "OUTCOME", "INCIDENT", "DETAIL")]
    for rec in rows:
        actor = rec.get("actor") or {}
        who = (
            "/".join(str(actor[k]) for k in ("user", "dispatcher", "awx_job_id") if actor.get(k))
            if isinstance(actor, dict)
            else str(actor)
        )
        data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
        detail = data.get("task") or data.get("play") or data.get("message") or ""
        table.append(
            (
                str(rec.get("seq")),
                str(rec.get("ts", ""))[:23].replace("T", " "),
                who or "-",
                str(rec.get("action")),
                str(rec.get("target") or "-"),
                str(rec.get("outcome") or "-"),
                str(rec.get("incident_id") or "-"),
                str(detail)[:40],
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"({len(rows)} records)", file=sys.stderr)
    return 0


def run_checkpoint(args) -> int:
    from selfheal.audit.verify import make_checkpoint

    path = _trail(args)
    if not path.exists():
        raise ConfigError("no such audit trail", str(path))
    doc = make_checkpoint(path)
    text = json.dumps(doc, sort_keys=True)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        print(f"checkpoint: seq {doc['seq']} hash {doc['hash']} -> {args.output}")
    else:
        print(text)
    return 0


def run_keygen(args) -> int:
    from selfheal.audit.keyring import Keyring, default_key_file

    path = Path(args.key_file) if args.key_file else default_key_file()
    if path.exists():
        ring = Keyring.load_file(path)
        kid = ring.rotate(args.key_id)
        ring.save(path)
        print(f"added key {kid!r} to {path}; it signs new records, older keys still verify")
    else:
        ring = Keyring.generate(args.key_id)
        ring.save(path, exclusive=True)
        print(f"created {path} with key {ring.active!r}")
    return 0


def run_forward(args) -> int:
    from selfheal.audit.forward import Forwarder, Outbox, sink_from_url
    from selfheal.cli import ExitCode

    path = _trail(args)
    if not path.is_dir():
        raise ConfigError("no such audit trail directory", str(path))
    sink = sink_from_url(args.to)
    outbox = Outbox(args.outbox or path / ".outbox.sqlite")
    try:
        result = Forwarder(path, sink, outbox).flush(force=args.force)
    finally:
        outbox.close()
    print(
        f"forward to {sink.name}: {result.sent} sent, {result.pending} pending"
        + (f"; error: {result.error}" if result.error else "")
    )
    return ExitCode.OK if result.error is None else ExitCode.FAILURE
