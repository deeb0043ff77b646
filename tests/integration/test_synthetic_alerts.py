"""Detection alerts through a real Alertmanager on 127.0.0.1.

A broken step of the shop journey raises ``SyntheticJourneyFailed`` naming that step, and
passing again resolves it; the trace isolator's root cause and the log-rate anomaly arrive
the same way.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from unit.synthetic.shop_app import ShopServer, write_journey

from selfheal.cli import main

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(ALERTMANAGER is None, reason="Alertmanager is not installed"),
]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    work = tmp_path_factory.mktemp("alertmanager")
    (work / "alertmanager.yml").write_text(
        "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n"
    )
    port = _free_port()
    log = (work / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={work / 'alertmanager.yml'}",
            f"--storage.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        _wait(ready, 30, "alertmanager ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def active_alerts(url: str, alertname: str) -> list[dict]:
    query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"', "active": "true"})
    with urllib.request.urlopen(f"{url}/api/v2/alerts?{query}", timeout=5) as response:
        alerts = json.loads(response.read())
    return [a for a in alerts if a["status"]["state"] == "active"]


def test_a_broken_step_raises_an_alert_naming_it_and_passing_resolves_it(
    tmp_path, alertmanager
) -> None:
    shop = ShopServer().start()
    try:
        journey = write_journey(tmp_path / "shop.yml", shop.url)
        state = str(tmp_path / "state.json")
        run = ["synthetic", "run", journey, "--alertmanager", alertmanager, "--state", state]
        shop.broken.add("search")
        # --alert-after 2: the first failure alone raises nothing.
        assert main([*run, "--alert-after", "2"]) == 1
        assert active_alerts(alertmanager, "SyntheticJourneyFailed") == []
        assert main([*run, "--alert-after", "2"]) == 1
        [alert] = _wait(
            lambda: active_alerts(alertmanager, "SyntheticJourneyFailed"), 10, "the alert"
        )
        assert alert["labels"]["journey"] == "shop"
        assert alert["labels"]["step"] == "search"
        assert alert["annotations"]["failure"] == "status 500, expected 200"

        # The failure moves to checkout: the search alert resolves, a checkout one fires.
        shop.broken = {"checkout"}
        assert main([*run, "--alert-after", "2"]) == 1
        [alert] = _wait(
            lambda: (
                [
                    a
                    for a in active_alerts(alertmanager, "SyntheticJourneyFailed")
                    if a["labels"]["step"] == "checkout"
                ]
                and active_alerts(alertmanager, "SyntheticJourneyFailed")
            ),
            10,
            "the checkout alert alone",
        )
        assert alert["labels"]["step"] == "checkout"

        shop.broken.clear()
        assert main([*run, "--alert-after", "2"]) == 0
        _wait(lambda: not active_alerts(alertmanager, "SyntheticJourneyFailed"), 10, "resolution")
    finally:
        shop.stop()


def test_trace_root_cause_reaches_alertmanager_with_the_service(tmp_path, alertmanager) -> None:
    from unit.traces.otlp_builder import checkout_db_failure, write

    args = ["traces", "isolate", write(tmp_path / "traces.json", checkout_db_failure())]
    assert main([*args, "--alertmanager", alertmanager]) == 1
    [alert] = _wait(lambda: active_alerts(alertmanager, "TraceRootCause"), 10, "the alert")
    assert alert["labels"]["service"] == "postgresql"
    assert alert["annotations"]["root_cause_path"] == "frontend -> checkout -> orders -> postgresql"


def test_a_log_error_burst_reaches_alertmanager(tmp_path, alertmanager) -> None:
    from unit.logs.samples import nginx_burst

    log = tmp_path / "access.log"
    log.write_text(nginx_burst())
    args = ["logs", "rate", str(log), "--format", "nginx", "--name", "shop 5xx lines/min"]
    assert main([*args, "--alertmanager", alertmanager]) == 1
    [alert] = _wait(lambda: active_alerts(alertmanager, "KPIAnomaly"), 10, "the alert")
    assert alert["labels"]["kpi"] == "shop 5xx lines/min"
    assert alert["labels"]["source"] == "logs"
