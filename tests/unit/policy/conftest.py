"""Fixtures for the policy engine tests (data and helpers live in policy_fixtures.py)."""

from __future__ import annotations

import pytest
from unit.policy.policy_fixtures import BASE  # noqa: F401  (re-exported for readers)

from selfheal.policy import MemoryState, SQLiteState


@pytest.fixture(params=["memory", "sqlite"])
def state(request, tmp_path):
    if request.param == "memory":
        yield MemoryState()
    else:
        db = SQLiteState(tmp_path / "state.db")
        yield db
        db.close()
