"""Credential rotation end to end: `playbooks/rotate.yml` rotates the dispatcher's API token
file and a webhook HMAC secret file while a real dispatcher keeps running; during the
overlap both the old and the new credentials are accepted, after it only the new ones, and
no restart is needed."""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import REPO, run_playbook
from unit.dispatcher.helpers import (
    INVENTORY,
    Client,
    am_alert,
    am_body,
    hmac_headers,
    policy_data,
)
from unit.dispatcher.test_intake import GRAFANA

from selfheal.dispatcher import Dispatcher, build_app, config_from_data
from selfheal.dispatcher import secrets as secrets_module

pytestmark = pytest.mark.integration

OLD_TOKEN = "old-alertmanager-token-0123456789"
OLD_HMAC = "old-grafana-hmac-secret-0123456789"


def _aged(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    old = time.time() - 60 * 86400
    os.utime(path, (old, old))
    return path


_deliveries = itertools.count()


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setattr(secrets_module, "RECHECK_S", 0.0)  # see each rotation at once
    token_file = _aged(tmp_path / "alertmanager.token", OLD_TOKEN)
    hmac_file = _aged(tmp_path / "grafana.key", OLD_HMAC)
    (tmp_path / "policy.yml").write_text(yaml.safe_dump(policy_data("heal.yml")))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    config = {
        "store": str(tmp_path / "state/selfheal.db"),
        "policy": str(tmp_path / "policy.yml"),
        "inventory": str(tmp_path / "inventory.yml"),
        "workers": 0,
        "tokens": [{"name": "alertmanager", "token_file": str(token_file), "scopes": ["intake"]}],
        "sources": {"grafana": {"auth": "hmac", "hmac_secret_file": str(hmac_file)}},
    }
    d = Dispatcher(config_from_data(config, tmp_path))
    d.start()
    client = Client(build_app(d, manage_lifecycle=False))
    yield client, token_file, hmac_file
    d.stop()
    client.close()


def _alert(client, token: str) -> int:
    body = am_body(am_alert({"alertname": "Disk", "host": "web-01"}))
    return client.post("/alerts/alertmanager", body, token=token).status


def _grafana(client, secret: str) -> int:
    # each delivery its own body: a signed delivery is accepted once (replays are refused)
    body = json.dumps({**GRAFANA, "groupKey": f"delivery-{next(_deliveries)}"}).encode()
    return client.post("/alerts/grafana", body, headers=hmac_headers(body, secret)).status


def test_rotated_credentials_overlap_then_retire(served) -> None:
    client, token_file, hmac_file = served
    assert _alert(client, OLD_TOKEN) == 202 and _grafana(client, OLD_HMAC) == 202

    rotate = {
        "selfheal_rotate": {
            "secret_files": [
                {"file": str(token_file), "max_age_days": 30, "overlap_seconds": 3600},
                {"file": str(hmac_file), "max_age_days": 30, "overlap_seconds": 3600},
            ],
            "selfheal_command": [sys.executable, "-m", "selfheal.cli"],
        }
    }
    result = run_playbook(REPO / "playbooks/rotate.yml", extra_vars=rotate)
    assert result.returncode == 0, result.stdout + result.stderr
    new_token = token_file.read_text().strip()
    new_hmac = hmac_file.read_text().strip()
    assert new_token != OLD_TOKEN and new_hmac != OLD_HMAC

    # The overlap: old and new both accepted by the running dispatcher.
    assert _alert(client, OLD_TOKEN) == 202 and _alert(client, new_token) == 202
    assert _grafana(client, OLD_HMAC) == 202 and _grafana(client, new_hmac) == 202
    assert _alert(client, "not-a-token-0123456789") == 401
    assert _grafana(client, "not-the-secret") == 403

    # After the overlap only the new credentials pass.
    for path in (token_file, hmac_file):
        previous = Path(f"{path}.previous")
        data = json.loads(previous.read_text())
        data["valid_until"] = int(time.time()) - 1
        previous.write_text(json.dumps(data))
    assert _alert(client, OLD_TOKEN) == 401 and _alert(client, new_token) == 202
    assert _grafana(client, OLD_HMAC) == 403 and _grafana(client, new_hmac) == 202

    second = run_playbook(REPO / "playbooks/rotate.yml", extra_vars=rotate)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not Path(f"{token_file}.previous").exists()  # retired files removed
    assert _alert(client, new_token) == 202


def test_an_unreadable_rotation_keeps_the_last_good_secret(served) -> None:
    client, token_file, _ = served
    token_file.write_text("")  # a rotation caught half-way: empty file
    assert _alert(client, OLD_TOKEN) == 202
    token_file.write_text("fresh-alertmanager-token-0123456789\n")
    assert _alert(client, "fresh-alertmanager-token-0123456789") == 202
    assert _alert(client, OLD_TOKEN) == 401  # replaced without an overlap file
