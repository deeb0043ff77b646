"""`selfheal synthetic`: run multi-step HTTP user journeys, export metrics, raise alerts.

Exit codes: 0 every journey passed (its last run), 1 a journey failed, 2 bad arguments or
journey file, 3 Alertmanager, the metrics file or the state file unreachable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta

from selfheal.baseline.alerts import post_alerts
from selfheal.errors import ConfigError
from selfheal.synthetic.alerting import FailureTracker
from selfheal.synthetic.journey import load_journey, parse_duration
from selfheal.synthetic.metrics import MetricsServer, render, write_file
from selfheal.synthetic.runner import JourneyResult, run_journey

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FAILURE = 0, 1, 2, 3
MAX_COUNT = 1_000_000


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synthetic",
        help="run synthetic user journeys (multi-step HTTP checks)",
        description="Synthetic transactions: journeys of HTTP steps defined in YAML, with "
        "values extracted from one step passed to the next and assertions on status, body "
        "and latency.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    run = sub.add_parser(
        "run",
        help="run journeys once or on a bounded schedule",
        description="Run each journey, --count times every --every. Exports Prometheus gauges "
        "(--metrics-file, --listen) and posts SyntheticJourneyFailed to Alertmanager after "
        "--alert-after failed runs in a row, resolved when the journey passes again.",
        epilog="Exit codes: 0 all journeys passed their last run, 1 a journey failed, 2 usage "
        "or journey error, 3 Alertmanager, metrics or state file unreachable.",
    )
    run.add_argument("journeys", nargs="+", metavar="JOURNEY.yml", help="journey definitions")
    run.add_argument("--every", default="30s", help="interval between runs (default: 30s)")
    run.add_argument("--count", type=int, default=1, help="number of runs (default: 1)")
    run.add_argument("--metrics-file", metavar="FILE", help="write Prometheus text format here")
    run.add_argument("--listen", metavar="HOST:PORT", help="serve /metrics while running")
    run.add_argument("--alertmanager", metavar="URL", help="post alerts to Alertmanager")
    run.add_argument(
        "--alert-after", type=int, default=1, metavar="N", help="failed runs in a row (default: 1)"
    )
    run.add_argument(
        "--alert-ttl", type=float, default=10.0, metavar="MINUTES", help="firing alert lifetime"
    )
    run.add_argument("--severity", default="warning", help="alert severity label")
    run.add_argument("--state", metavar="FILE", help="carry failure counts between invocations")
    run.add_argument("--json", action="store_true", help="print each result as a JSON line")
    run.set_defaults(func=_run)
    validate = sub.add_parser(
        "validate",
        help="check journey files without running them",
        description="Load and validate journey files; errors name the field.",
        epilog="Exit codes: 0 valid, 2 invalid.",
    )
    validate.add_argument("journeys", nargs="+", metavar="JOURNEY.yml")
    validate.set_defaults(func=_validate)


def _validate(args) -> int:
    for path in args.journeys:
        journey = load_journey(path)
        print(f"{path}: journey {journey.name}, {len(journey.steps)} step(s)")
    return EXIT_OK


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("must be HOST:PORT", path="--listen")
    return host or "127.0.0.1", int(port)


def _load_state(path: str | None) -> dict:
    if not path or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except ValueError:
            raise ConfigError("not a synthetic state file", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("not a synthetic state file", path=path)
    return data


def _print(result: JourneyResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.as_dict()), flush=True)
        return
    failed = result.failed_step
    verdict = "ok" if result.ok else f"FAILED at {failed.name}: {failed.failure}"
    print(f"{result.journey}: {verdict} ({result.duration_s * 1000:.0f} ms)", flush=True)
    for step in result.steps:
        mark = "ok" if step.ok else "FAIL"
        status = step.status if step.status is not None else "-"
        print(f"  {step.name:<20} {mark:<4} {status} {step.latency_s * 1000:.0f} ms")


def _run(args) -> int:
    journeys = [load_journey(path) for path in args.journeys]
    interval = parse_duration(args.every, "--every")
    if not 1 <= args.count <= MAX_COUNT:
        raise ConfigError(f"must be from 1 to {MAX_COUNT}", path="--count")
    if args.alert_after < 1:
        raise ConfigError("must be at least 1", path="--alert-after")
    try:
        tracker = FailureTracker(args.alert_after, _load_state(args.state), args.severity)
    except OSError as exc:
        print(f"selfheal synthetic: cannot read state: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    server = None
    if args.listen:
        host, port = _listen_address(args.listen)
        try:
            server = MetricsServer(host, port)
        except OSError as exc:
            print(f"selfheal synthetic: cannot listen on {args.listen}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        server.start()
        print(f"serving /metrics on {host}:{server.port}", file=sys.stderr)
    ttl = timedelta(minutes=args.alert_ttl)
    latest: dict[str, JourneyResult] = {}
    trouble = False
    try:
        for number in range(args.count):
            started = time.monotonic()
            alerts: list[dict] = []
            for journey in journeys:
                result = run_journey(journey)
                latest[journey.name] = result
                _print(result, args.json)
                alerts += tracker.observe(result, ttl)
            text = render(list(latest.values()), tracker.failures)
            if server:
                server.update(text)
            trouble |= _export(args, text, alerts, tracker)
            if number + 1 < args.count:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if server:
            server.stop()
    if trouble:
        return EXIT_FAILURE
    return EXIT_OK if all(r.ok for r in latest.values()) else EXIT_FAILED


def _export(args, text: str, alerts: list[dict], tracker: FailureTracker) -> bool:
    """Write metrics and state, post alerts; True when one of them could not be done."""
    trouble = False
    if args.metrics_file:
        try:
            write_file(args.metrics_file, text)
        except OSError as exc:
            print(f"selfheal synthetic: cannot write metrics: {exc}", file=sys.stderr)
            trouble = True
    if args.alertmanager and alerts:
        try:
            post_alerts(args.alertmanager, alerts)
            print(f"posted {len(alerts)} alert(s) to Alertmanager", file=sys.stderr)
        except OSError as exc:
            print(f"selfheal synthetic: cannot post to Alertmanager: {exc}", file=sys.stderr)
            trouble = True
    if args.state:
        try:
            write_file(args.state, json.dumps(tracker.state()))
        except OSError as exc:
            print(f"selfheal synthetic: cannot write state: {exc}", file=sys.stderr)
            trouble = True
    return trouble
