"""playbooks/rotate.yml on localhost: an old audit HMAC key and an old webhook secret are
rotated (old key kept so older records verify; old secret valid during the overlap),
secrets never reach the output, check mode and a second run change nothing, the previous
secret is retired after the overlap, and a host without the compliance tags is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO, run_playbook

from selfheal.audit import AuditTrail, Keyring

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "playbooks/rotate.yml"
OLD_KID = "k20200101000000abcd"
OLD_SECRET = "old-webhook-secret-0123456789abcdef"


@pytest.fixture
def creds(tmp_path: Path) -> dict[str, Path]:
    keys = tmp_path / "audit-keys.json"
    ring = Keyring.generate(OLD_KID)
    ring.save(keys)
    trail = tmp_path / "audit"
    with AuditTrail(trail, ring) as t:
        t.append({"action": "task", "target": "web1", "outcome": "ok"})
    secret = tmp_path / "webhook.key"
    secret.write_text(OLD_SECRET + "\n")
    secret.chmod(0o600)
    old = time.time() - 60 * 86400
    os.utime(secret, (old, old))
    return {"keys": keys, "trail": trail, "secret": secret}


def _vars(creds, **extra) -> dict:
    return {
        "selfheal_rotate": {
            "audit_key_file": str(creds["keys"]),
            "webhook_secret_file": str(creds["secret"]),
            "webhook_overlap_seconds": 3600,
            "selfheal_command": [sys.executable, "-m", "selfheal.cli"],
        },
        **extra,
    }


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def _verify(creds) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfheal.cli", "audit", "verify", str(creds["trail"]),
         "--key-file", str(creds["keys"])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_rotates_with_overlap_and_is_idempotent(creds) -> None:
    keys_before = creds["keys"].read_bytes()
    dry = run_playbook(PLAYBOOK, extra_vars=_vars(creds), check=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "changed=0" not in _recap(dry.stdout)
    assert creds["keys"].read_bytes() == keys_before
    assert creds["secret"].read_text().strip() == OLD_SECRET
    assert not Path(f"{creds['secret']}.previous").exists()

    first = run_playbook(PLAYBOOK, extra_vars=_vars(creds))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=0" not in _recap(first.stdout)
    ring = json.loads(creds["keys"].read_text())
    assert ring["active"] != OLD_KID and OLD_KID in ring["keys"]
    assert creds["keys"].stat().st_mode & 0o777 == 0o600
    assert _verify(creds).returncode == 0  # records signed with the old key still verify

    new_secret = creds["secret"].read_text().strip()
    assert new_secret != OLD_SECRET and len(new_secret) == 48
    assert creds["secret"].stat().st_mode & 0o777 == 0o600
    previous_path = Path(f"{creds['secret']}.previous")
    previous = json.loads(previous_path.read_text())
    assert previous["secret"] == OLD_SECRET
    assert time.time() + 3000 < previous["valid_until"] <= time.time() + 3600
    assert previous_path.stat().st_mode & 0o777 == 0o600
    for secret in (OLD_SECRET, new_secret, *ring["keys"].values()):
        assert secret not in first.stdout + first.stderr

    second = run_playbook(PLAYBOOK, extra_vars=_vars(creds))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in _recap(second.stdout)
    assert json.loads(creds["keys"].read_text())["active"] == ring["active"]
    assert creds["secret"].read_text().strip() == new_secret

    # Once the overlap is over the old secret is retired.
    previous["valid_until"] = int(time.time()) - 1
    previous_path.write_text(json.dumps(previous))
    third = run_playbook(PLAYBOOK, extra_vars=_vars(creds))
    assert third.returncode == 0, third.stdout + third.stderr
    assert "changed=1" in _recap(third.stdout)
    assert not previous_path.exists()
    assert creds["secret"].read_text().strip() == new_secret


def test_refuses_a_host_without_the_compliance_tags(creds) -> None:
    extra = _vars(creds, credential_rotate_required_tags={"env": "production"})
    result = run_playbook(PLAYBOOK, extra_vars=extra)
    assert result.returncode != 0
    assert "not cleared for automated remediation" in result.stdout
    assert creds["secret"].read_text().strip() == OLD_SECRET
