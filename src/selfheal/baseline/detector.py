"""The KPI detector: the collection's ``plugins/module_utils/kpi_detector.py``, re-exported.

There is one implementation. The Ansible module ``kpi_baseline`` runs it on targets (it is
standard-library Python there), and the controller loads the very same file: from the
working tree when selfheal runs from a checkout (the repository root is the collection), else
from the collection the wheel installs beside the package
(``site-packages/ansible_collections/selfheal/core``). See that file for the method.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_RELATIVE = Path("plugins") / "module_utils" / "kpi_detector.py"
_MODULE = "selfheal.baseline._kpi_detector"


def _source() -> Path:
    here = Path(__file__).resolve()
    candidates = [
        here.parents[3] / _RELATIVE,  # checkout: src/selfheal/baseline -> repository root
        here.parents[2] / "ansible_collections" / "selfheal" / "core" / _RELATIVE,  # wheel
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ImportError(f"the collection's kpi_detector.py is not beside selfheal ({candidates})")


def _load():
    loaded = sys.modules.get(_MODULE)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(_MODULE, _source())
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module
    spec.loader.exec_module(module)
    return module


_impl = _load()

DEFAULTS = _impl.DEFAULTS
KINDS = _impl.KINDS
KIND_DIRECTION = _impl.KIND_DIRECTION
PARAMETERS = _impl.PARAMETERS
STATE_VERSION = _impl.STATE_VERSION
WEEKDAYS = _impl.WEEKDAYS
Detection = _impl.Detection
DetectorConfig = _impl.DetectorConfig
KpiDetector = _impl.KpiDetector
context_label = _impl.context_label
SOURCE = Path(_impl.__file__)

__all__ = [
    "DEFAULTS",
    "KINDS",
    "KIND_DIRECTION",
    "PARAMETERS",
    "SOURCE",
    "STATE_VERSION",
    "WEEKDAYS",
    "Detection",
    "DetectorConfig",
    "KpiDetector",
    "context_label",
]
