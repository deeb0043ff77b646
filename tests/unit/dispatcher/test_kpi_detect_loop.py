"""The KPI detector in the loop: `selfheal detect --watch` polls a Prometheus query API,
and its anomalies reach a real dispatcher's alertmanager intake with their evidence."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import uvicorn
import yaml
from unit.dispatcher.helpers import (
    READ_TOKEN,
    TOKEN,
    am_alert,
    am_body,
    free_port,
    policy_data,
    wait_for,
)

from selfheal.cli import main
from selfheal.dispatcher import build_app

STEP = 60


class FakePrometheus(BaseHTTPRequestHandler):
    """``/api/v1/query_range`` over an in-memory series (the documented matrix answer)."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.server.queries.append(query)
        if len(self.server.queries) > 1 and self.server.later:  # time passes between rounds
            self.server.points += self.server.later.pop(0)
        if url.path != "/api/v1/query_range":
            self._reply(404, {"status": "error", "error": "not found"})
            return
        start, end = float(query["start"][0]), float(query["end"][0])
        values = [[t, repr(v)] for t, v in self.server.points if start <= t <= end]
        labels = {"__name__": "http_request_duration_seconds", "job": "shop"}
        self._reply(
            200,
            {
                "status": "success",
                "data": {"resultType": "matrix", "result": [{"metric": labels, "values": values}]},
            },
        )

    def _reply(self, status: int, answer: dict) -> None:
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def prometheus():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    httpd.queries = []
    httpd.points = []
    httpd.later = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dispatcher_url(make_dispatcher):
    """A real dispatcher (store, policy, audit) served over HTTP on a free local port."""
    d, client = make_dispatcher()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(d, manage_lifecycle=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20)
    yield f"http://127.0.0.1:{port}", client, d
    server.should_exit = True
    thread.join(timeout=10)


def test_watch_posts_a_kpi_anomaly_that_opens_an_incident(
    prometheus, dispatcher_url, tmp_path, capsys
) -> None:
    url, client, d = dispatcher_url
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    state = tmp_path / "kpi.json"
    now = time.time()
    # Two days of a steady latency (a flat series never alarms); then it jumps.
    first = math.ceil((now - 2 * 86400) / STEP) * STEP
    prometheus.points = [(float(t), 0.2) for t in range(first, int(now) - 600, STEP)]
    last = prometheus.points[-1][0]
    prometheus.later = [[(last + STEP, 0.2), (last + 2 * STEP, 1.5)]]
    code = main(
        [
            "detect",
            "--prometheus",
            f"http://127.0.0.1:{prometheus.server_address[1]}",
            "--query",
            "http_request_duration_seconds",
            "--name",
            "p99 latency",
            "--kind",
            "latency",
            "--step",
            "1m",
            "--start",
            str(now - 2 * 86400),
            "--state",
            str(state),
            "--dispatcher",
            url,
            "--token-file",
            str(token_file),
            "--watch",
            "0.05",
            "--rounds",
            "2",
            "--format",
            "jsonl",
        ]
    )
    assert code == 1
    # The second round asked only for what came after the last point learned.
    assert float(prometheus.queries[1]["start"][0]) == last
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines() if line]
    assert [r["value"] for r in rows if r["anomalous"]] == [1.5]
    assert "posted 1 alert(s) to the dispatcher (1 accepted)" in out.err
    saved = json.loads(state.read_text())["series"]
    assert [s["n"] for s in saved.values()] == [len(prometheus.points)]
    # The dispatcher opened an incident for it, like for any alert, with the evidence.
    incidents = wait_for(
        lambda: client.get("/incidents", token=READ_TOKEN).json()["incidents"] or None
    )
    assert len(incidents) == 1
    answer = client.get(f"/incidents/{incidents[0]['id']}", token=READ_TOKEN)
    assert answer.status == 200
    incident = answer.json()
    assert incident["labels"] == {
        "alertname": "KPIAnomaly",
        "job": "shop",
        "kpi": "p99 latency",
        "severity": "warning",
    }
    assert incident["status"] == "open" and incident["source"] == "alertmanager"
    (alert,) = d.store.alerts_of(incident["id"])
    evidence = alert["annotations"]
    assert evidence["series"] == 'http_request_duration_seconds{job="shop"}'
    assert float(evidence["value"]) == 1.5 and float(evidence["expected"]) == 0.2
    assert float(evidence["score"]) >= float(evidence["threshold"]) == 0.1
    assert evidence["reason"].startswith("p99 latency 7.5\u00d7 its recent level")


def test_healing_cost_is_a_series_to_watch(make_dispatcher, env) -> None:
    """Each healing run started adds its runbook's cost to selfheal_healing_cost_total, a
    stream `selfheal detect --watch` can baseline like any KPI."""
    policy = policy_data(str(env["tmp"] / "heal.yml"))
    policy["runbooks"]["heal"]["cost"] = 2.5
    (env["tmp"] / "policy.yml").write_text(yaml.safe_dump(policy))
    d, client = make_dispatcher()
    for host in ("web-01", "web-02"):
        labels = {"alertname": "ServiceDown", "service": "app", "host": host}
        answer = client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
        assert answer.status == 202
    wait_for(lambda: len(d.store.list_runs()) == 2)
    text = client.get("/metrics").body.decode()
    assert 'selfheal_healing_cost_total{runbook="heal"} 5' in text
