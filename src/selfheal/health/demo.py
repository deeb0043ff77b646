"""A small demo web service with health endpoints and Prometheus metrics.

    python -m selfheal.health.demo --host 127.0.0.1 --port 8080 \\
        [--ready-tcp [NAME=]HOST:PORT ...] [--ready-http [NAME=]URL ...] [--name web]

Serves `/` (a JSON hello), `/livez`, `/readyz` and `/metrics` (Prometheus text format:
requests by path and code, 5xx errors, a latency histogram) from a threaded wsgiref
server. SIGTERM and SIGINT stop it cleanly (requests in progress finish; exit code 0).
`--port 0` picks a free port; the first line on stdout names the address.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._http import status_line
from .probes import CheckFailed, http, tcp
from .registry import HealthRegistry
from .wsgi import WSGIApp, make_wsgi_app

log = logging.getLogger("selfheal.health.demo")

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KNOWN_PATHS = ("/", "/livez", "/readyz", "/metrics")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class Metrics:
    """Request counters and a latency histogram, rendered in Prometheus text format."""

    def __init__(self, name: str, buckets: Sequence[float] = BUCKETS) -> None:
        self.name = name
        self.buckets = tuple(sorted(buckets))
        self.started = time.time()
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._errors: dict[str, int] = {}
        self._hist: dict[str, list[int]] = {}  # per path: cumulative counts per bucket
        self._sum: dict[str, float] = {}
        self._count: dict[str, int] = {}

    @staticmethod
    def path_label(path: str) -> str:
        return path if path in KNOWN_PATHS else "other"  # bounded label cardinality

    def observe(self, path: str, code: int, seconds: float) -> None:
        path = self.path_label(path)
        with self._lock:
            key = (path, str(code))
            self._requests[key] = self._requests.get(key, 0) + 1
            if code >= 500:
                self._errors[path] = self._errors.get(path, 0) + 1
            counts = self._hist.setdefault(path, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if seconds <= bound:
                    counts[i] += 1
            self._sum[path] = self._sum.get(path, 0.0) + seconds
            self._count[path] = self._count.get(path, 0) + 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP demo_info Demo service identity.",
                "# TYPE demo_info gauge",
                f'demo_info{{name="{_label(self.name)}"}} 1',
                "# HELP process_start_time_seconds Start time of the process (Unix time).",
                "# TYPE process_start_time_seconds gauge",
                f"process_start_time_seconds {_number(round(self.started, 3))}",
                "# HELP http_requests_total HTTP requests served, by path and status code.",
                "# TYPE http_requests_total counter",
            ]
            for (path, code), value in sorted(self._requests.items()):
                lines.append(f'http_requests_total{{path="{_label(path)}",code="{code}"}} {value}')
            lines += [
                "# HELP http_request_errors_total HTTP requests answered with a 5xx status.",
                "# TYPE http_request_errors_total counter",
            ]
            for path, value in sorted(self._errors.items()):
                lines.append(f'http_request_errors_total{{path="{_label(path)}"}} {value}')
            lines += [
                "# HELP http_request_duration_seconds HTTP request latency.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for path in sorted(self._hist):
                p = _label(path)
                for bound, value in zip(self.buckets, self._hist[path], strict=True):
                    lines.append(
                        f'http_request_duration_seconds_bucket{{path="{p}",le="{_number(bound)}"}}'
                        f" {value}"
                    )
                count = self._count[path]
                lines += [
                    f'http_request_duration_seconds_bucket{{path="{p}",le="+Inf"}} {count}',
                    f'http_request_duration_seconds_sum{{path="{p}"}} {self._sum[path]!r}',
                    f'http_request_duration_seconds_count{{path="{p}"}} {count}',
                ]
        return "\n".join(lines) + "\n"


def _json(start_response: Callable[..., Any], status: int, doc: object) -> list[bytes]:
    body = json.dumps(doc).encode() + b"\n"
    start_response(
        status_line(status),
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def build_app(registry: HealthRegistry, metrics: Metrics, name: str) -> WSGIApp:
    """The demo's WSGI app: hello and metrics, health in front, metrics around all."""

    def service(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/":
            return _json(start_response, 200, {"service": name, "message": "hello"})
        if path == "/metrics":
            body = metrics.render().encode()
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        return _json(start_response, 404, {"error": "not found", "path": path})

    app = make_wsgi_app(registry, service)

    def measured(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: dict[str, int] = {}

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen["code"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            result = app(environ, recording_start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            log.exception("unhandled error serving %s", environ.get("PATH_INFO"))
            seen["code"] = 500
            body = b'{"error": "internal error"}\n'
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                sys.exc_info(),
            )
        metrics.observe(
            environ.get("PATH_INFO") or "/", seen.get("code", 500), time.perf_counter() - started
        )
        return [body]

    return measured


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False  # on shutdown, requests in progress finish (block_on_close)
    block_on_close = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


class Heartbeat:
    """A worker thread that ticks; liveness fails when it stops or stalls."""

    def __init__(self, interval: float = 0.25, stale_after: float = 5.0) -> None:
        self.interval = interval
        self.stale_after = stale_after
        self.last = time.monotonic()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demo-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.last = time.monotonic()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        if not self.thread.is_alive():
            raise CheckFailed("heartbeat thread is not alive")
        age = time.monotonic() - self.last
        if age > self.stale_after:
            raise CheckFailed(f"heartbeat stalled for {age:.1f} s")
        return True


def _check_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]+", "-", text).strip("-")[:80] or "dependency"


def _named(value: str) -> tuple[str | None, str]:
    """`NAME=VALUE` or `VALUE`; a name is letters, digits, '_' and '-'."""
    name, sep, rest = value.partition("=")
    if sep and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name) and "://" not in name:
        return name, rest
    return None, value


def _tcp_target(value: str) -> tuple[str, str, int]:
    name, target = _named(value)
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected [NAME=]HOST:PORT, got {value!r}")
    host = host.strip("[]")
    return name or _check_name(f"tcp-{host}-{port}"), host, int(port)


def _http_target(value: str) -> tuple[str | None, str]:
    name, url = _named(value)
    if not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected [NAME=]URL (http/https), got {value!r}")
    return name, url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m selfheal.health.demo",
        description="Demo web service: /, /livez, /readyz and /metrics (Prometheus).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port, 0 for a free one (8080)")
    parser.add_argument("--name", default="web", help="service name shown by / (web)")
    parser.add_argument(
        "--ready-tcp",
        action="append",
        type=_tcp_target,
        default=[],
        metavar="[NAME=]HOST:PORT",
        help="readiness: TCP dependency that must accept connections (repeatable); "
        "the check is named NAME, or tcp-HOST-PORT",
    )
    parser.add_argument(
        "--ready-http",
        action="append",
        type=_http_target,
        default=[],
        metavar="[NAME=]URL",
        help="readiness: HTTP dependency that must answer 200 (repeatable); "
        "the check is named NAME, or http-1, http-2, ...",
    )
    parser.add_argument(
        "--check-timeout", type=float, default=1.0, help="seconds per readiness check (1)"
    )
    parser.add_argument(
        "--check-ttl", type=float, default=2.0, help="seconds readiness results are cached (2)"
    )
    parser.add_argument("--quiet", action="store_true", help="no access log on stderr")
    return parser


def build_registry(args: argparse.Namespace, heartbeat: Heartbeat) -> HealthRegistry:
    registry = HealthRegistry()
    registry.add_liveness("heartbeat", heartbeat.check)
    for name, host, port in args.ready_tcp:
        registry.add_readiness(
            name, tcp(host, port), timeout=args.check_timeout, ttl=args.check_ttl
        )
    for i, (name, url) in enumerate(args.ready_http, 1):
        registry.add_readiness(
            name or f"http-{i}", http(url), timeout=args.check_timeout, ttl=args.check_ttl
        )
    return registry


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    heartbeat = Heartbeat()
    heartbeat.start()
    try:
        registry = build_registry(args, heartbeat)
    except ValueError as exc:  # e.g. two dependencies with the same name
        heartbeat.stop()
        print(f"invalid dependency: {exc}", file=sys.stderr)
        return 2
    metrics = Metrics(args.name)
    try:
        server = make_server(
            args.host,
            args.port,
            build_app(registry, metrics, args.name),
            server_class=ThreadingWSGIServer,
            handler_class=QuietHandler,
        )
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=server.shutdown, name="demo-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"{args.name} listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        heartbeat.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
