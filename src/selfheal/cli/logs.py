"""`selfheal logs`: parse structured logs and detect error-rate anomalies.

Exit codes: ``parse`` 0; ``rate`` 0 no anomaly, 1 anomalies found; both 2 bad arguments or
input, 3 Alertmanager unreachable.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

from selfheal.baseline.alerts import build_alert, post_alerts
from selfheal.errors import ConfigError
from selfheal.logs.parsers import ParserDef, detect_format, load_definitions, parse_time
from selfheal.logs.rate import DEFAULT_WARMUP, error_rate_series, score_series

EXIT_OK, EXIT_ANOMALY, EXIT_USAGE, EXIT_FAILURE = 0, 1, 2, 3


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="parse structured logs; detect error-rate anomalies",
        description="Parse logs with the parser definitions shared with the fluent_bit role "
        "(json, nginx, apache, syslog-rfc3164, syslog-rfc5424).",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    parse = sub.add_parser(
        "parse",
        help="print each line's fields as JSON",
        description="Parse a log file and print one JSON object per line (unparsed lines are "
        "counted on stderr).",
        epilog="Exit codes: 0 done, 2 usage or input error.",
    )
    _common(parse)
    parse.set_defaults(func=_parse)
    rate = sub.add_parser(
        "rate",
        help="error lines per minute against their baseline",
        description="Count error lines per minute (syslog err and worse, HTTP status >= 500, "
        "JSON level error and worse) and score each minute against the baseline of the minutes "
        "before it with the KPI detector (direction up).",
        epilog="Exit codes: 0 no anomaly, 1 anomalies found, 2 usage or input error, "
        "3 Alertmanager unreachable.",
    )
    _common(rate)
    rate.add_argument("--name", help="KPI name in reasons and alerts (default: FILE errors/min)")
    rate.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, help="minutes before scoring (default: 60)"
    )
    rate.add_argument("--threshold", type=float, help="alarm score in (0, 1) (default: 0.1)")
    rate.add_argument("--all", action="store_true", help="print every minute")
    rate.add_argument("--json", action="store_true", help="print JSON")
    rate.add_argument("--alertmanager", metavar="URL", help="post the latest anomaly (KPIAnomaly)")
    rate.add_argument("--alert-ttl", type=float, default=10.0, metavar="MINUTES")
    rate.set_defaults(func=_rate)


def _common(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="log file ('-': stdin)")
    parser.add_argument(
        "--format",
        default="auto",
        help="parser name (json, nginx, apache, syslog-rfc3164, syslog-rfc5424) or auto",
    )
    parser.add_argument("--year", type=int, help="year of RFC 3164 timestamps (default: now)")


def _records(args) -> Iterator[tuple[dict | None, str]]:
    parsers = load_definitions()
    chosen: ParserDef | None = None
    if args.format != "auto":
        if args.format not in parsers:
            raise ConfigError(f"unknown parser; one of {', '.join(parsers)}", path="--format")
        chosen = parsers[args.format]
    try:
        # stdin is borrowed, not closed; a file is opened for this read only.
        source = (
            contextlib.nullcontext(sys.stdin)
            if args.file == "-"
            else open(args.file, encoding="utf-8", errors="replace")  # noqa: SIM115
        )
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=args.file) from None
    with source as handle:
        for line in handle:
            if not line.strip():
                continue
            parser = chosen or detect_format(line, parsers)
            if parser is None:
                yield None, ""
                continue
            record = parser.parse(line)
            if (
                record is not None
                and args.year
                and parser.time_format
                and "%Y" not in parser.time_format
            ):
                stamp = parse_time(
                    record.get(parser.time_key or "time"), parser.time_format, args.year
                )
                if stamp is not None:
                    record["_time"] = stamp
            yield record, parser.name


def _parse(args) -> int:
    unparsed = total = 0
    for record, fmt in _records(args):
        total += 1
        if record is None:
            unparsed += 1
            continue
        print(json.dumps({"_format": fmt, **record}, default=str))
    if unparsed:
        print(f"{unparsed} of {total} line(s) not parsed", file=sys.stderr)
    return EXIT_OK


def _rate(args) -> int:
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ConfigError("must be in (0, 1)", path="--threshold")
    if args.warmup < 1:
        raise ConfigError("must be at least 1", path="--warmup")
    series, summary = error_rate_series(_records(args))
    name = args.name or f"{'stdin' if args.file == '-' else args.file} error lines/min"
    detections = score_series(series, name, args.warmup, args.threshold)
    anomalies = [d for d in detections if d.anomalous]
    shown = detections if args.all else anomalies
    if args.json:
        print(
            json.dumps(
                {
                    "lines": summary.lines,
                    "parsed": summary.parsed,
                    "errors": summary.errors,
                    "minutes": len(series),
                    "anomalies": len(anomalies),
                    "points": [d.as_dict() for d in shown],
                },
                indent=2,
            )
        )
    else:
        for d in shown:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.timestamp))
            flag = "ANOMALY" if d.anomalous else "ok"
            print(f"{stamp}  {d.value:>6.0f}  {d.score:.3f}  {flag:<7}  {d.reason}")
        print(
            f"{summary.errors} error line(s) of {summary.parsed} parsed ({summary.lines} read) "
            f"over {len(series)} minute(s); {len(anomalies)} anomal"
            f"{'y' if len(anomalies) == 1 else 'ies'}"
        )
    if args.alertmanager and anomalies:
        alert = build_alert(
            anomalies[-1], name, {"source": "logs"}, timedelta(minutes=args.alert_ttl)
        )
        try:
            post_alerts(args.alertmanager, [alert])
        except OSError as exc:
            print(f"selfheal logs: cannot post to Alertmanager: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print("posted 1 alert to Alertmanager", file=sys.stderr)
    return EXIT_ANOMALY if anomalies else EXIT_OK
