"""A lab inventory on disk (as `selfheal lab up` writes it) for the chaos unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from selfheal.chaos.inventory import LabInventory
from selfheal.lab import render
from selfheal.lab.plan import LabSpec


@pytest.fixture
def inventory(tmp_path: Path) -> LabInventory:
    spec = LabSpec(state_dir=tmp_path / "lab", hosts=3, mode="loopback", subnet="127.74.0.0/24")
    spec.inventory.parent.mkdir(parents=True)
    spec.inventory.write_text(yaml.safe_dump(render.inventory(spec)))
    return LabInventory.load(spec.inventory)
