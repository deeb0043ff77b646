"""KPI baselining: learn each KPI's normal behaviour and score departures from it online."""

from selfheal.baseline.detector import (
    KINDS,
    Detection,
    DetectorConfig,
    KpiDetector,
)
from selfheal.baseline.series import SeriesError, iter_csv, parse_time, read_csv

__all__ = [
    "KINDS",
    "Detection",
    "DetectorConfig",
    "KpiDetector",
    "SeriesError",
    "iter_csv",
    "parse_time",
    "read_csv",
]
