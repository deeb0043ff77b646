"""`selfheal traces`: name the service where errors or latency originate, from OTLP JSON.

Exit codes: 0 no failing (or slow) trace, 1 root-cause candidates found, 2 bad arguments or
input, 3 Alertmanager unreachable.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from selfheal.baseline.alerts import post_alerts
from selfheal.cli.approvals import DEFAULT_URL, api_token, call
from selfheal.errors import ConfigError
from selfheal.traces.attach import incident_payload, root_cause_alert
from selfheal.traces.isolate import isolate
from selfheal.traces.otlp import read_file, read_spans

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_FAILURE = 0, 1, 2, 3


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "traces",
        help="isolate the origin of failures in OpenTelemetry traces",
        description="Read OpenTelemetry traces (OTLP JSON export) and name the service where "
        "errors or latency originate.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    run = sub.add_parser(
        "isolate",
        help="rank root-cause candidates over the traces of a file",
        description="Per trace, the deepest failing span whose children are all healthy (or, "
        "with --latency, the span with the largest self time beyond its baseline); ranked over "
        "traces. A client span to an untraced database or peer names that peer.",
        epilog="Exit codes: 0 nothing found, 1 candidates found, 2 usage or input error, "
        "3 Alertmanager unreachable.",
    )
    run.add_argument(
        "file", metavar="FILE", help="OTLP JSON: one object or JSON lines ('-': stdin)"
    )
    run.add_argument("--latency", action="store_true", help="isolate latency, not errors")
    run.add_argument(
        "--baseline",
        metavar="FILE",
        help="JSON object of usual self time in ms per 'service/operation' (--latency)",
    )
    run.add_argument(
        "--threshold-ms",
        type=float,
        default=0.0,
        help="self time over baseline needed to count (--latency; default 0)",
    )
    run.add_argument("--top", type=int, default=5, help="candidates to print (default: 5)")
    run.add_argument("--json", action="store_true", help="print JSON")
    run.add_argument(
        "--alertmanager",
        metavar="URL",
        help="post the top candidate as a TraceRootCause alert (label service=<origin>)",
    )
    run.add_argument(
        "--incident",
        type=int,
        metavar="ID",
        help="attach the candidates to this dispatcher incident (POST /incidents/ID/root-cause)",
    )
    run.add_argument(
        "--url",
        default=os.environ.get("SELFHEAL_URL", DEFAULT_URL),
        help=f"dispatcher URL for --incident (default: SELFHEAL_URL or {DEFAULT_URL})",
    )
    run.add_argument("--token", help="API token with the intake scope (or SELFHEAL_API_TOKEN)")
    run.add_argument("--token-file", metavar="FILE", help="read the API token from FILE")
    run.set_defaults(func=_isolate)


def _baseline(path: str | None) -> dict[str, float]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read baseline: {exc}", path=path) from None
    if not isinstance(data, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in data.values()
    ):
        raise ConfigError("must be a JSON object of 'service/operation': milliseconds", path=path)
    return {str(k): float(v) for k, v in data.items()}


def _isolate(args) -> int:
    spans = read_spans(sys.stdin, "<stdin>") if args.file == "-" else read_file(args.file)
    mode = "latency" if args.latency else "errors"
    candidates, traces = isolate(spans, mode, _baseline(args.baseline), args.threshold_ms)
    shown = candidates[: max(1, args.top)]
    if args.json:
        print(
            json.dumps(
                {"mode": mode, "traces": traces, "candidates": [c.as_dict() for c in shown]},
                indent=2,
            )
        )
    else:
        what = "slow" if args.latency else "failing"
        if not candidates:
            print(f"no {what} trace among {traces}")
        for i, candidate in enumerate(shown, 1):
            print(f"{i}. {candidate.summary} (e.g. trace {candidate.example_trace_id})")
    if args.alertmanager and candidates:
        try:
            post_alerts(args.alertmanager, [root_cause_alert(candidates[0], timedelta(minutes=30))])
        except OSError as exc:
            print(f"selfheal traces: cannot post to Alertmanager: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print("posted 1 alert to Alertmanager", file=sys.stderr)
    if args.incident is not None and candidates:
        token = api_token(args)
        path = f"/incidents/{args.incident}/root-cause"
        try:
            status, body = call(args.url, token, "POST", path, incident_payload(shown, mode))
        except OSError as exc:
            print(f"selfheal traces: cannot reach {args.url}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        if status != 201:
            print(f"selfheal traces: dispatcher answered {status}: {body}", file=sys.stderr)
            return EXIT_USAGE if 400 <= status < 500 else EXIT_FAILURE
        print(f"attached {len(shown)} candidate(s) to incident {args.incident}", file=sys.stderr)
    return EXIT_FOUND if candidates else EXIT_OK
