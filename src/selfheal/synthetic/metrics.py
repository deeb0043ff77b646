"""Prometheus text exposition of journey results, to a file or on ``/metrics``."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .runner import JourneyResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_HELP = {
    "selfheal_synthetic_journey_success": "1 when the journey's last run passed every step",
    "selfheal_synthetic_journey_duration_seconds": "wall time of the journey's last run",
    "selfheal_synthetic_journey_consecutive_failures": "failed runs in a row",
    "selfheal_synthetic_journey_last_run_timestamp_seconds": "when the last run started",
    "selfheal_synthetic_step_success": "1 when the step passed in the last run (absent if not reached)",
    "selfheal_synthetic_step_duration_seconds": "latency of the step's last attempt",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def render(results: list[JourneyResult], failures: dict[str, int]) -> str:
    """The gauges of the latest result of each journey."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}
    for result in results:
        journey = _labels(journey=result.journey)
        samples["selfheal_synthetic_journey_success"].append(f"{journey} {int(result.ok)}")
        samples["selfheal_synthetic_journey_duration_seconds"].append(
            f"{journey} {result.duration_s:.6f}"
        )
        samples["selfheal_synthetic_journey_consecutive_failures"].append(
            f"{journey} {failures.get(result.journey, 0)}"
        )
        samples["selfheal_synthetic_journey_last_run_timestamp_seconds"].append(
            f"{journey} {result.started_at:.3f}"
        )
        for step in result.steps:
            labels = _labels(journey=result.journey, step=step.name)
            samples["selfheal_synthetic_step_success"].append(f"{labels} {int(step.ok)}")
            samples["selfheal_synthetic_step_duration_seconds"].append(
                f"{labels} {step.latency_s:.6f}"
            )
    lines: list[str] = []
    for name, text in _HELP.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"


def write_file(path: str, text: str) -> None:
    """Atomically, so a node_exporter textfile collector never reads half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".synthetic-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class MetricsServer:
    """Serves the latest exposition on ``GET /metrics`` from a background thread."""

    def __init__(self, host: str, port: int):
        self._text = render([], {})
        self._lock = threading.Lock()
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = server_self.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:
                return  # scrapes are not worth a line each

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True)

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    def update(self, text: str) -> None:
        with self._lock:
            self._text = text

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
