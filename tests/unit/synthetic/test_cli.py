"""`selfheal synthetic run`: exit codes, Prometheus metrics (file and /metrics), state."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from unit.synthetic.shop_app import write_journey

from selfheal.cli import main


def _metrics(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_a_passing_journey_exits_0_and_writes_metrics(tmp_path, shop, capsys) -> None:
    journey = write_journey(tmp_path / "shop.yml", shop.url)
    metrics = tmp_path / "synthetic.prom"
    assert main(["synthetic", "run", journey, "--metrics-file", str(metrics)]) == 0
    values = _metrics(metrics.read_text())
    assert values['selfheal_synthetic_journey_success{journey="shop"}'] == 1
    assert values['selfheal_synthetic_step_success{journey="shop",step="checkout"}'] == 1
    assert values['selfheal_synthetic_journey_duration_seconds{journey="shop"}'] > 0
    assert values['selfheal_synthetic_step_duration_seconds{journey="shop",step="login"}'] > 0
    assert "shop: ok" in capsys.readouterr().out


def test_a_failing_journey_exits_1_and_its_metrics_name_the_step(tmp_path, shop, capsys) -> None:
    shop.broken.add("checkout")
    journey = write_journey(tmp_path / "shop.yml", shop.url)
    metrics = tmp_path / "synthetic.prom"
    args = ["synthetic", "run", journey, "--metrics-file", str(metrics), "--json"]
    assert main([*args, "--count", "2", "--every", "10ms"]) == 1
    values = _metrics(metrics.read_text())
    assert values['selfheal_synthetic_journey_success{journey="shop"}'] == 0
    assert values['selfheal_synthetic_journey_consecutive_failures{journey="shop"}'] == 2
    assert values['selfheal_synthetic_step_success{journey="shop",step="search"}'] == 1
    assert values['selfheal_synthetic_step_success{journey="shop",step="checkout"}'] == 0
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["failed_step"] for r in runs] == ["checkout", "checkout"]


def test_state_carries_consecutive_failures_between_invocations(tmp_path, shop) -> None:
    shop.broken.add("login")
    journey = write_journey(tmp_path / "shop.yml", shop.url)
    state = tmp_path / "state.json"
    for expected in (1, 2):
        assert main(["synthetic", "run", journey, "--state", str(state)]) == 1
        assert json.loads(state.read_text())["failures"] == {"shop": expected}
    shop.broken.clear()
    assert main(["synthetic", "run", journey, "--state", str(state)]) == 0
    assert json.loads(state.read_text())["failures"] == {"shop": 0}


def test_listen_serves_metrics_while_running(tmp_path, shop, unused_port) -> None:
    journey = write_journey(tmp_path / "shop.yml", shop.url)
    scraped: list[str] = []

    def scrape() -> None:
        # Scrape until the journey's gauges show up or the run ends (bounded either way).
        for _ in range(200):
            try:
                url = f"http://127.0.0.1:{unused_port}/metrics"
                with urllib.request.urlopen(url, timeout=1) as response:
                    text = response.read().decode()
                if 'journey="shop"' in text:
                    scraped.append(text)
                    return
            except OSError:
                pass
            time.sleep(0.02)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    args = ["--listen", f"127.0.0.1:{unused_port}", "--count", "10", "--every", "50ms"]
    assert main(["synthetic", "run", journey, *args]) == 0
    scraper.join(timeout=10)
    assert scraped, "no scrape saw the journey"
    assert 'selfheal_synthetic_journey_success{journey="shop"} 1' in scraped[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "--count: must be from 1"),
        (["--every", "often"], "--every: must be a duration"),
        (["--listen", "nowhere"], "--listen: must be HOST:PORT"),
    ],
)
def test_bad_options_exit_2(tmp_path, shop, capsys, args, message) -> None:
    journey = write_journey(tmp_path / "shop.yml", shop.url)
    assert main(["synthetic", "run", journey, *args]) == 2
    assert message in capsys.readouterr().err


def test_validate(tmp_path, shop, capsys) -> None:
    journey = write_journey(tmp_path / "shop.yml", shop.url)
    assert main(["synthetic", "validate", journey]) == 0
    assert "journey shop, 3 step(s)" in capsys.readouterr().out
    (tmp_path / "bad.yml").write_text("name: x\nsteps: [{name: a}]\n")
    assert main(["synthetic", "validate", str(tmp_path / "bad.yml")]) == 2
    assert "steps[0].url: must be a non-empty string" in capsys.readouterr().err
