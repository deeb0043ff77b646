"""Scoring anomaly detectors the way the Numenta Anomaly Benchmark (NAB) does.

Written from NAB's published definitions (see docs/detection.md): labelled anomaly windows,
a scaled sigmoid reward for the earliest detection in each window, a per-false-positive
cost, a probationary period, one corpus-wide threshold optimised per application profile,
and normalisation against the null and the perfect detector.
"""

from selfheal.nab.scorer import (
    PROFILES,
    FileResult,
    Profile,
    ScoredFile,
    SweepResult,
    normalise,
    optimise_threshold,
    probationary_length,
    scaled_sigmoid,
    score_corpus,
    score_file,
    window_metrics,
)

__all__ = [
    "PROFILES",
    "FileResult",
    "Profile",
    "ScoredFile",
    "SweepResult",
    "normalise",
    "optimise_threshold",
    "probationary_length",
    "scaled_sigmoid",
    "score_corpus",
    "score_file",
    "window_metrics",
]
