from __future__ import annotations

import pytest

from selfheal.audit import AuditTrail, Keyring


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"k1": b"a" * 32}, "k1")


@pytest.fixture
def trail_dir(tmp_path):
    return tmp_path / "trail"


@pytest.fixture
def filled(trail_dir, keyring):
    """A trail of 10 records over several segments."""
    with AuditTrail(trail_dir, keyring, rotate_bytes=1500) as trail:
        for i in range(10):
            trail.append(
                {
                    "action": "task",
                    "target": f"web{i}",
                    "outcome": "ok",
                    "incident_id": "INC-1",
                    "actor": {"user": "alice", "dispatcher": "selfheal", "awx_job_id": 42},
                    "data": {"task": f"step {i}"},
                }
            )
    return trail_dir
