"""`selfheal detect`: CSV or Prometheus in, anomalies out, alerts to Alertmanager."""

from __future__ import annotations

import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from selfheal.cli import main

T0 = 1_772_409_600  # 2026-03-02 00:00 UTC


def write_series(path, spike_at: int | None = 1500, n: int = 2000) -> None:
    rng = random.Random(4)
    lines = ["timestamp,value"]
    for i in range(n):
        value = 50.0 + rng.gauss(0, 0.5)
        if spike_at is not None and i == spike_at:
            value = 90.0
        lines.append(f"{T0 + 300 * i},{value:.3f}")
    path.write_text("\n".join(lines) + "\n")


class Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.server.requests.append(("GET", url.path, parse_qs(url.query)))
        body = json.dumps(self.server.prometheus_answer).encode()
        self._reply(self.server.prometheus_status, body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(length))
        self.server.requests.append(("POST", self.path, payload))
        self._reply(200, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.requests = []
    httpd.prometheus_answer = {}
    httpd.prometheus_status = 200
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url_of(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_help(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["detect", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--prometheus" in out and "--alertmanager" in out


def test_csv_with_a_spike_reports_it_and_exits_1(tmp_path, capsys) -> None:
    csv = tmp_path / "latency.csv"
    write_series(csv)
    code = main(["detect", str(csv), "--name", "p99 latency", "--kind", "latency"])
    out = capsys.readouterr().out
    assert code == 1
    assert "2026-03-07T05:00:00Z" in out  # row 1500
    assert "ANOMALY" in out and "p99 latency 1.8\u00d7 its recent level" in out


def test_json_output_and_quiet_series_exit_0(tmp_path, capsys) -> None:
    csv = tmp_path / "flat.csv"
    write_series(csv, spike_at=None, n=400)
    code = main(["detect", str(csv), "--format", "json", "--threshold", "0.5"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data == {"anomalies": 0, "points": []}


def test_state_carries_over_between_runs(tmp_path, capsys) -> None:
    csv = tmp_path / "s.csv"
    write_series(csv)
    state = tmp_path / "state.json"
    assert main(["detect", str(csv), "--state", str(state), "--format", "jsonl"]) == 1
    first = capsys.readouterr().out
    assert json.loads(state.read_text())["series"]["s"]["n"] == 2000
    # The same file again: every point is known, nothing new to report.
    assert main(["detect", str(csv), "--state", str(state), "--format", "jsonl"]) == 0
    assert capsys.readouterr().out == ""
    assert first


def test_bad_input_is_a_usage_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2026-03-02T00:00:00Z,12\nyesterday,13\n")
    assert main(["detect", str(bad)]) == 2
    assert "bad.csv:3" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "missing.csv")]) == 2
    assert main(["detect"]) == 2
    assert main(["detect", str(bad), "--threshold", "2"]) == 2


def test_prometheus_range_query_and_alertmanager(tmp_path, server, capsys) -> None:
    rng = random.Random(2)
    values = [[T0 + 60 * i, f"{0.01 + rng.random() * 0.002:.5f}"] for i in range(1500)]
    values[1400][1] = "0.2"
    server.prometheus_answer = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"__name__": "errors", "job": "api"}, "values": values}],
        },
    }
    code = main(
        [
            "detect",
            "--prometheus",
            url_of(server),
            "--query",
            "errors",
            "--start",
            str(T0),
            "--end",
            str(T0 + 90_000),
            "--step",
            "1m",
            "--name",
            "api error rate",
            "--kind",
            "error_rate",
            "--alertmanager",
            url_of(server),
        ]
    )
    assert code == 1
    method, path, query = server.requests[0]
    assert (method, path) == ("GET", "/api/v1/query_range")
    assert query["query"] == ["errors"] and query["step"] == ["1m"]
    method, path, alerts = server.requests[1]
    assert (method, path) == ("POST", "/api/v2/alerts")
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["labels"]["alertname"] == "KPIAnomaly"
    assert alert["labels"]["kpi"] == "api error rate"
    assert alert["labels"]["job"] == "api"
    assert "api error rate" in alert["annotations"]["reason"]
    assert alert["startsAt"].startswith("2026-03-02T23:20:00")
    assert "posted 1 alert" in capsys.readouterr().err


def test_unreachable_prometheus_is_a_failure(capsys) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(
        ["detect", "--prometheus", f"http://127.0.0.1:{port}", "--query", "up", "--start", "0"]
    )
    assert code == 3
    assert "cannot query Prometheus" in capsys.readouterr().err


def test_prometheus_error_answer_is_an_input_error(server, capsys) -> None:
    server.prometheus_answer = {"status": "error", "error": "parse error"}
    server.prometheus_status = 400
    args = ["detect", "--prometheus", url_of(server), "--query", "up(", "--start", "0"]
    assert main(args) == 2
    assert "parse error" in capsys.readouterr().err


def test_watch_and_dispatcher_usage_errors(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "kpi.csv"
    write_series(path)
    monkeypatch.delenv("SELFHEAL_TOKEN", raising=False)
    assert main(["detect", str(path), "--dispatcher", "http://127.0.0.1:9"]) == 2
    assert "needs a token" in capsys.readouterr().err
    monkeypatch.setenv("SELFHEAL_TOKEN", "t")
    assert main(["detect", str(path), "--watch", "1"]) == 2
    assert "--watch needs --prometheus" in capsys.readouterr().err


def test_unreachable_dispatcher_is_a_failure(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "kpi.csv"
    write_series(path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("SELFHEAL_TOKEN", "t")
    assert main(["detect", str(path), "--dispatcher", f"http://127.0.0.1:{port}"]) == 3
    assert "cannot post to the dispatcher" in capsys.readouterr().err
