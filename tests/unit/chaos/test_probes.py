"""Probes and the Alertmanager detection against small local HTTP servers."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from selfheal.chaos.experiment import Probe
from selfheal.chaos.inventory import LabInventory
from selfheal.chaos.probes import alert_firing, cert_not_after, run_probe


class Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict] = {}

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        status, body = self.routes.get(path, (404, b"no"))
        if callable(body):
            body = body(self.path)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _inventory(tmp_path: Path, base: str, monitoring: dict | None = None) -> LabInventory:
    state = tmp_path / "lab"
    state.mkdir()
    if monitoring:
        (state / "lab.json").write_text(json.dumps({"monitoring": monitoring}))
    svc = {
        "manager": "supervisord",
        "health_url": f"{base}/livez",
        "health_checks": [{"name": "livez", "kind": "http", "url": f"{base}/livez"}],
    }
    hosts = {"lab1": {"selfheal_services": {"web": svc}}}
    return LabInventory(tmp_path / "hosts.yml", hosts, {"selfheal_lab_state_dir": str(state)})


def test_http_probe(server, tmp_path: Path) -> None:
    Handler.routes = {"/livez": (200, b"ok"), "/readyz": (503, b"no")}
    inv = _inventory(tmp_path, server)
    ok = run_probe(Probe("p", "http", host="lab1", tolerance=[200]), inv)
    assert ok.ok and ok.detail.endswith("/livez: 200")
    bad = run_probe(Probe("p", "http", host="lab1", path="/readyz", tolerance=[200]), inv)
    assert not bad.ok and bad.detail.endswith(": 503")
    expected = run_probe(Probe("p", "http", host="lab1", path="/readyz", tolerance=[503]), inv)
    assert expected.ok
    assert run_probe(Probe("h", "health_check", host="lab1", tolerance=True), inv).ok
    Handler.routes = {}
    assert not run_probe(Probe("h", "health_check", host="lab1", tolerance=True), inv).ok


def test_a_probe_that_cannot_connect_fails(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, "http://127.0.0.1:9")
    result = run_probe(Probe("p", "http", host="lab1", tolerance=[200], timeout=0.5), inv)
    assert not result.ok and "no answer" in result.detail


def test_prometheus_probe(server, tmp_path: Path) -> None:
    doc = {"status": "success", "data": {"result": [{"metric": {}, "value": [0, "1"]}]}}
    Handler.routes = {"/api/v1/query": (200, json.dumps(doc).encode())}
    inv = _inventory(tmp_path, server, {"prometheus": {"url": server}})
    probe = Probe("up", "prometheus", query="up", tolerance={"op": ">=", "value": 1})
    assert run_probe(probe, inv).ok
    probe.tolerance = {"op": "==", "value": 0}
    assert not run_probe(probe, inv).ok
    (tmp_path / "x").mkdir()
    no_monitoring = _inventory(tmp_path / "x", server)
    assert "monitoring is not up" in run_probe(probe, no_monitoring).detail


def test_alertmanager_detection(server) -> None:
    alerts = [
        {"labels": {"alertname": "ServiceDown", "host": "lab2"}, "startsAt": "t0"},
        {"labels": {"alertname": "ServiceDown", "host": "lab1"}, "startsAt": "t1"},
    ]
    seen = []

    def body(path: str) -> bytes:
        seen.append(path)
        return json.dumps(alerts).encode()

    Handler.routes = {"/api/v2/alerts": (200, body)}
    assert alert_firing(server, "ServiceDown", "lab1") == "ServiceDown firing for lab1 since t1"
    assert "filter=alertname%3D%22ServiceDown%22" in seen[0] and "active=true" in seen[0]
    assert alert_firing(server, "ServiceDown", "lab3") is None
    alerts[1]["startsAt"] = "2026-11-26T02:00:00.123456789Z"
    assert alert_firing(server, "ServiceDown", "lab1", since=0.0)
    since = dt.datetime(2026, 11, 26, 2, 0, 1, tzinfo=dt.UTC).timestamp()
    assert alert_firing(server, "ServiceDown", "lab1", since=since) is None  # an older alert
    assert alert_firing("http://127.0.0.1:9", "ServiceDown", None) is None


def test_cert_probe(tmp_path: Path) -> None:
    crypto = pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    assert crypto
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    inv = _inventory(tmp_path, "http://127.0.0.1:9")
    path = inv.cert_path("lab1")
    path.parent.mkdir(parents=True)
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    assert cert_not_after(str(path)) < now
    result = run_probe(Probe("c", "cert", host="lab1", min_days=0), inv)
    assert not result.ok and "days left" in result.detail
