"""playbooks/synthetic.yml on the controller against the real shop app on 127.0.0.1."""

from __future__ import annotations

import pytest
from support import REPO, run_playbook
from unit.synthetic.shop_app import ShopServer, write_journey

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "playbooks/synthetic.yml"


@pytest.fixture
def shop():
    server = ShopServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_a_failing_journey_fails_the_play_naming_the_step(tmp_path, shop) -> None:
    shop.broken.add("checkout")
    metrics = tmp_path / "synthetic.prom"
    extra = {
        "synthetic_journeys": [write_journey(tmp_path / "shop.yml", shop.url)],
        "synthetic_metrics_file": str(metrics),
    }
    result = run_playbook(PLAYBOOK, extra_vars=extra)
    assert result.returncode != 0
    assert "journey shop failed at step checkout: status 500, expected 200" in result.stdout
    assert 'selfheal_synthetic_step_success{journey="shop",step="checkout"} 0' in (
        metrics.read_text()
    )


def test_check_mode_runs_the_journey_but_writes_nothing(tmp_path, shop) -> None:
    metrics = tmp_path / "synthetic.prom"
    extra = {
        "synthetic_journeys": [write_journey(tmp_path / "shop.yml", shop.url)],
        "synthetic_metrics_file": str(metrics),
    }
    result = run_playbook(PLAYBOOK, extra_vars=extra, check=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["path"] for r in shop.seen] == ["/login", "/search?q=widget", "/checkout"]
    assert not metrics.exists()
