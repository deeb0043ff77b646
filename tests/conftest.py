"""Session-wide fixtures. `support` does the environment setup when imported."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO, SHARED


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not beside the checkout")
    return SHARED
