"""`selfheal detect`: score a KPI series against its learned baseline and report anomalies.

The series comes from a CSV file (``timestamp,value``; ``-`` reads stdin) or a Prometheus
range query. With ``--state`` the baseline carries over from run to run; with
``--alertmanager`` (Alertmanager's API) or ``--dispatcher`` (the dispatcher's
``alertmanager`` intake, with a bearer token) the latest anomaly of each series is posted as
a ``KPIAnomaly`` alert carrying its evidence. With ``--watch SECONDS`` it keeps polling
Prometheus: each round scores the points that arrived since the last one learned, saves the
state and posts the new anomalies, so a KPI anomaly opens an incident like any alert.
Exit codes: 0 no anomaly, 1 anomalies found, 2 bad arguments or input, 3 Prometheus,
Alertmanager, the dispatcher or the state file could not be reached.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from selfheal.baseline.alerts import build_alert, post_alerts, post_to_dispatcher
from selfheal.baseline.detector import KIND_DIRECTION, KINDS, DetectorConfig, KpiDetector
from selfheal.baseline.series import SeriesError, iter_csv, parse_time, prometheus_range, read_csv

EXIT_OK, EXIT_ANOMALY, EXIT_USAGE, EXIT_FAILURE = 0, 1, 2, 3


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="score a KPI series against its learned baseline",
        description="Score every point of a KPI series against the baseline learned from the "
        "points before it (seasonality, level shifts), and report the anomalies with a reason.",
        epilog="Exit codes: 0 no anomaly, 1 anomalies found, 2 usage or input error, "
        "3 Prometheus, Alertmanager, the dispatcher or the state file unreachable.",
    )
    parser.add_argument("csv", nargs="?", metavar="CSV", help="timestamp,value file ('-': stdin)")
    source = parser.add_argument_group("Prometheus source (instead of a CSV)")
    source.add_argument("--prometheus", metavar="URL", help="Prometheus base URL")
    source.add_argument("--query", metavar="PROMQL", help="range query")
    source.add_argument("--start", metavar="TIME", help="ISO 8601 or epoch seconds")
    source.add_argument("--end", metavar="TIME", help="ISO 8601 or epoch seconds (default: now)")
    source.add_argument("--step", default="5m", help="query resolution (default: 5m)")
    parser.add_argument("--name", help="KPI name used in reasons and alerts")
    parser.add_argument("--kind", choices=KINDS, default="generic", help="kind of KPI")
    parser.add_argument(
        "--direction",
        choices=("up", "down", "both"),
        help="which deviations count (default: up for latency and error_rate, else both)",
    )
    parser.add_argument(
        "--threshold", type=float, metavar="SCORE", help="alarm score in (0, 1) (default: 0.1)"
    )
    parser.add_argument("--state", metavar="FILE", help="baseline state to resume and save")
    parser.add_argument("--alertmanager", metavar="URL", help="post anomalies to Alertmanager")
    parser.add_argument(
        "--dispatcher", metavar="URL", help="post anomalies to the dispatcher's intake"
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="bearer token (intake scope) for --dispatcher (default: $SELFHEAL_TOKEN)",
    )
    parser.add_argument(
        "--alert-ttl", type=float, default=60.0, metavar="MINUTES", help="alert lifetime"
    )
    parser.add_argument(
        "--watch",
        type=float,
        metavar="SECONDS",
        help="keep polling Prometheus every SECONDS (start: --start, else 7 days ago)",
    )
    parser.add_argument("--rounds", type=int, metavar="N", help="with --watch: stop after N rounds")
    parser.add_argument(
        "--format", choices=("table", "json", "jsonl"), default="table", help="output format"
    )
    parser.add_argument("--all", action="store_true", help="print every point, not only anomalies")
    parser.set_defaults(func=run)


def _config(args) -> DetectorConfig:
    overrides = {"direction": args.direction or KIND_DIRECTION[args.kind]}
    if args.threshold is not None:
        if not 0.0 < args.threshold < 1.0:
            raise SeriesError("--threshold must be in (0, 1)")
        overrides["alarm"] = args.threshold
    return DetectorConfig(**overrides)


def _load_series(args) -> dict[str, tuple[dict[str, str], list[tuple[float, float | None]]]]:
    """Series to score: key -> (labels, points)."""
    if args.prometheus:
        if args.csv:
            raise SeriesError("give a CSV file or --prometheus, not both")
        if not args.query or not args.start:
            raise SeriesError("--prometheus needs --query and --start")
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end else time.time()
        if end <= start:
            raise SeriesError("--end must be after --start")
        return prometheus_range(args.prometheus, args.query, start, end, args.step)
    if not args.csv:
        raise SeriesError("give a CSV file (or '-') or --prometheus with --query")
    if args.csv == "-":
        rows = list(iter_csv(sys.stdin, "<stdin>"))
        return {args.name or "KPI": ({}, rows)}
    return {args.name or Path(args.csv).stem: ({}, read_csv(args.csv))}


def _load_state(path: str | None) -> dict:
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except ValueError as exc:
        raise SeriesError(f"{path}: not a detector state file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("series", {}), dict):
        raise SeriesError(f"{path}: not a detector state file")
    return data.get("series", {})


def _save_state(path: str, states: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".detect-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"series": states}, handle)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _print_table(rows: list[dict]) -> None:
    if not rows:
        return
    for row in rows:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["timestamp"]))
        flag = "ANOMALY" if row["anomalous"] else "ok"
        print(f"{stamp}  {row['series']:<24} {row['score']:.3f}  {flag:<7}  {row['reason']}")


LOOKBACK_S = 7 * 86400  # --watch without --start: the history a first round learns from


def _token(args) -> str:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise SeriesError(f"cannot read --token-file: {exc.strerror or exc}") from None
    else:
        token = os.environ.get("SELFHEAL_TOKEN", "").strip()
    if not token:
        raise SeriesError("--dispatcher needs a token: --token-file or SELFHEAL_TOKEN")
    return token


def _score(args, config: DetectorConfig, series: dict, states: dict):
    """Score the points not yet learned: (rows to print, latest anomaly per series, count,
    new states)."""
    out: list[dict] = []
    latest: dict[str, dict] = {}
    new_states = dict(states)
    anomalies = 0
    for key, (labels, points) in series.items():
        kpi = args.name or key
        if key in states:
            try:
                detector = KpiDetector.from_state(states[key], config)
            except ValueError as exc:
                raise SeriesError(f"{args.state}: series {key}: {exc}") from None
            detector.name = kpi
        else:
            detector = KpiDetector(config, name=kpi, kind=args.kind)
        last_t = detector.last_t
        for t, value in sorted(points, key=lambda p: p[0]):
            if not math.isnan(last_t) and t <= last_t:
                continue  # already learned in an earlier run
            found = detector.step(t, value)
            if found.anomalous:
                anomalies += 1
                latest[key] = {"detection": found, "kpi": kpi, "labels": labels}
            if found.anomalous or args.all:
                out.append({"series": key, **found.as_dict()})
        new_states[key] = detector.to_state()
    return out, latest, anomalies, new_states


def _report(args, out: list[dict], anomalies: int, n_series: int) -> None:
    if args.format == "json":
        print(json.dumps({"anomalies": anomalies, "points": out}, indent=2))
    elif args.format == "jsonl":
        for row in out:
            print(json.dumps(row))
    else:
        _print_table(out)
        print(f"{anomalies} anomal{'y' if anomalies == 1 else 'ies'} in {n_series} series")


def _alerts(args, config: DetectorConfig, latest: dict) -> list[dict]:
    ttl = timedelta(minutes=args.alert_ttl)
    return [
        build_alert(
            item["detection"], item["kpi"], item["labels"], ttl, threshold=config.alarm, series=key
        )
        for key, item in latest.items()
    ]


def _post(args, alerts: list[dict], token: str | None) -> bool:
    """Post to every destination given; False (and a message) when one could not be reached."""
    ok = True
    if args.alertmanager:
        try:
            post_alerts(args.alertmanager, alerts)
            print(f"posted {len(alerts)} alert(s) to Alertmanager", file=sys.stderr)
        except OSError as exc:
            print(f"selfheal detect: cannot post to Alertmanager: {exc}", file=sys.stderr)
            ok = False
    if args.dispatcher:
        try:
            answer = post_to_dispatcher(args.dispatcher, alerts, token or "")
            print(
                f"posted {len(alerts)} alert(s) to the dispatcher "
                f"({answer.get('accepted', 0)} accepted)",
                file=sys.stderr,
            )
        except OSError as exc:
            print(f"selfheal detect: cannot post to the dispatcher: {exc}", file=sys.stderr)
            ok = False
    return ok


def run(args) -> int:
    config = _config(args)
    token = _token(args) if args.dispatcher else None
    if args.watch is not None:
        return _watch(args, config, token)
    try:
        series = _load_series(args)
    except OSError as exc:
        print(f"selfheal detect: cannot query Prometheus: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        states = _load_state(args.state)
    except OSError as exc:
        print(f"selfheal detect: cannot read state: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    out, latest, anomalies, new_states = _score(args, config, series, states)
    _report(args, out, anomalies, len(series))
    if args.state:
        try:
            _save_state(args.state, new_states)
        except OSError as exc:
            print(f"selfheal detect: cannot write state: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    if latest and not _post(args, _alerts(args, config, latest), token):
        return EXIT_FAILURE
    return EXIT_ANOMALY if anomalies else EXIT_OK


def _watch(args, config: DetectorConfig, token: str | None) -> int:
    """Poll Prometheus every ``--watch`` seconds; each round learns the new points, saves the
    state and posts the new anomalies (kept and retried next round when a post fails).
    Prometheus being down skips a round; it does not end the watch."""
    if not args.prometheus or not args.query or args.csv:
        raise SeriesError("--watch needs --prometheus and --query (not a CSV)")
    if args.end:
        raise SeriesError("--watch runs up to the present: no --end")
    if args.watch <= 0:
        raise SeriesError("--watch must be a positive number of seconds")
    try:
        states = _load_state(args.state)
    except OSError as exc:
        print(f"selfheal detect: cannot read state: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    start = parse_time(args.start) if args.start else time.time() - LOOKBACK_S
    total = 0
    pending: list[dict] = []
    rounds = 0
    try:
        while True:
            rounds += 1
            learned = [s.get("last_t") for s in states.values() if s.get("last_t") is not None]
            since = min(learned) if learned and len(learned) == len(states) else start
            since = max(since, time.time() - LOOKBACK_S)  # a series gone quiet: not forever
            now = time.time()
            try:
                series = prometheus_range(args.prometheus, args.query, since, now, args.step)
            except OSError as exc:
                print(f"selfheal detect: cannot query Prometheus: {exc}", file=sys.stderr)
                series = None
            if series is not None:
                out, latest, anomalies, states = _score(args, config, series, states)
                total += anomalies
                if out or args.format == "table":
                    _report(args, out, anomalies, len(series))
                if args.state:
                    try:
                        _save_state(args.state, states)
                    except OSError as exc:
                        print(f"selfheal detect: cannot write state: {exc}", file=sys.stderr)
                        return EXIT_FAILURE
                pending = (pending + _alerts(args, config, latest))[-100:]
            if pending and _post(args, pending, token):
                pending = []
            if args.rounds is not None and rounds >= args.rounds:
                break
            time.sleep(args.watch)
    except KeyboardInterrupt:
        pass
    return EXIT_ANOMALY if total else EXIT_OK
