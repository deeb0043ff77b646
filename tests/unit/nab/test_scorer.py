"""The NAB scorer against examples worked by hand from NAB's definitions."""

from __future__ import annotations

import math

import pytest

from selfheal.nab import (
    PROFILES,
    ScoredFile,
    normalise,
    optimise_threshold,
    probationary_length,
    scaled_sigmoid,
    score_corpus,
    score_file,
    window_metrics,
)
from selfheal.nab.scorer import null_score, perfect_score

STD = PROFILES["standard"]
LOW_FP = PROFILES["reward_low_FP_rate"]
LOW_FN = PROFILES["reward_low_FN_rate"]
SIGMA_START = 2 / (1 + math.exp(-5)) - 1  # sigma(-1) = 0.98661...


def series(n: int, hits: dict[int, float]) -> list[float]:
    scores = [0.0] * n
    for i, value in hits.items():
        scores[i] = value
    return scores


def test_profiles_are_nabs() -> None:
    assert (STD.a_tp, STD.a_fn, STD.a_fp) == (1.0, 1.0, 0.11)
    assert (LOW_FP.a_tp, LOW_FP.a_fn, LOW_FP.a_fp) == (1.0, 1.0, 0.22)
    assert (LOW_FN.a_tp, LOW_FN.a_fn, LOW_FN.a_fp) == (1.0, 2.0, 0.11)


def test_scaled_sigmoid() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.986614, abs=1e-6)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.848284, abs=1e-6)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.986614, abs=1e-6)
    assert scaled_sigmoid(3.01) == -1.0


def test_probationary_period_is_15_percent_capped_at_750() -> None:
    assert probationary_length(100) == 15
    assert probationary_length(4032) == 604  # floor(604.8)
    assert probationary_length(10_000) == 750


# One file of 100 rows (rows 0-14 probationary), one window over rows 40-49 (W = 10).
WINDOW = [(40, 49)]


def test_detection_at_window_start_earns_a_tp() -> None:
    f = ScoredFile("f", series(100, {40: 1.0}), WINDOW)
    result = score_file(f, STD, 0.5)
    assert result.score == pytest.approx(1.0)
    assert (result.tp, result.fn, result.fp) == (1, 0, 0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    # Row 45: y = -(49 - 45 + 1) / 10 = -0.5; reward sigma(-0.5) / sigma(-1) = 0.8598.
    f = ScoredFile("f", series(100, {45: 0.9, 47: 0.9, 49: 0.9}), WINDOW)
    result = score_file(f, STD, 0.5)
    assert result.score == pytest.approx(0.848284 / 0.986614, abs=1e-6)
    assert result.score == pytest.approx(0.85979, abs=1e-5)
    assert result.detections == (45,)


def test_last_row_of_the_window_earns_little() -> None:
    # Row 49: y = -1/10; sigma(-0.1) = 2 / (1 + e^-0.5) - 1 = 0.244919.
    f = ScoredFile("f", series(100, {49: 1.0}), WINDOW)
    assert score_file(f, STD, 0.5).score == pytest.approx(0.244919 / SIGMA_START, abs=1e-6)


def test_false_positive_before_any_window_costs_a_fp() -> None:
    f = ScoredFile("f", series(100, {20: 1.0, 40: 1.0}), WINDOW)
    result = score_file(f, STD, 0.5)
    assert result.score == pytest.approx(1.0 - 0.11)
    assert result.fp == 1


def test_false_positive_right_after_a_window_costs_less() -> None:
    # Row 54: y = (54 - 49) / (49 - 40) = 5/9; sigma = 2 / (1 + e^(25/9)) - 1 = -0.88293.
    f = ScoredFile("f", series(100, {40: 1.0, 54: 1.0}), WINDOW)
    cost = 2 / (1 + math.exp(25 / 9)) - 1
    assert cost == pytest.approx(-0.88293, abs=1e-5)
    assert score_file(f, STD, 0.5).score == pytest.approx(1.0 + 0.11 * cost)
    # Far after (y > 3): the full cost.
    f = ScoredFile("f", series(100, {40: 1.0, 90: 1.0}), WINDOW)
    assert score_file(f, STD, 0.5).score == pytest.approx(1.0 - 0.11)


def test_missed_window_costs_a_fn_per_profile() -> None:
    f = ScoredFile("f", series(100, {}), WINDOW)
    assert score_file(f, STD, 0.5).score == -1.0
    assert score_file(f, LOW_FP, 0.5).score == -1.0
    assert score_file(f, LOW_FN, 0.5).score == -2.0


def test_profiles_on_the_same_detections() -> None:
    # Detections: row 45 (TP 0.85979) and rows 20 and 30 (FPs, no window before them).
    f = ScoredFile("f", series(100, {20: 1.0, 30: 1.0, 45: 1.0}), WINDOW)
    tp = 0.848284 / 0.986614
    assert score_file(f, STD, 0.5).score == pytest.approx(tp - 2 * 0.11, abs=1e-5)
    assert score_file(f, LOW_FP, 0.5).score == pytest.approx(tp - 2 * 0.22, abs=1e-5)
    assert score_file(f, LOW_FN, 0.5).score == pytest.approx(tp - 2 * 0.11, abs=1e-5)
    # Both windows of a two-window file missed, one FP: the FN weight doubles the misses.
    g = ScoredFile("g", series(100, {20: 1.0}), [(40, 49), (70, 79)])
    assert score_file(g, STD, 0.5).score == pytest.approx(-2 - 0.11)
    assert score_file(g, LOW_FP, 0.5).score == pytest.approx(-2 - 0.22)
    assert score_file(g, LOW_FN, 0.5).score == pytest.approx(-4 - 0.11)


def test_probationary_detections_count_neither_way() -> None:
    # Rows 0-14 are probationary: an alarm there is no FP, and no TP for a window there.
    f = ScoredFile("f", series(100, {5: 1.0, 14: 1.0, 40: 1.0}), WINDOW)
    assert score_file(f, STD, 0.5).score == pytest.approx(1.0)
    early = ScoredFile("e", series(100, {10: 1.0}), [(8, 12)])
    assert score_file(early, STD, 0.5).score == -1.0  # the window is missed


def test_threshold_is_inclusive() -> None:
    f = ScoredFile("f", series(100, {40: 0.5}), WINDOW)
    assert score_file(f, STD, 0.5).tp == 1
    assert score_file(f, STD, 0.50001).tp == 0


def threshold_corpus() -> list[ScoredFile]:
    # a: window found at row 42 with 0.9 (y = -0.8), an FP at row 20 with 0.8.
    # b: window found only at 0.5 (at its start, reward 1).
    # c: no window; ten rows at 0.6 (ten FPs once the threshold drops to 0.6).
    a = ScoredFile("a", series(100, {42: 0.9, 20: 0.8}), [(40, 49)])
    b = ScoredFile("b", series(100, {60: 0.5}), [(60, 69)])
    c = ScoredFile("c", series(100, {i: 0.6 for i in range(50, 60)}), [])
    return [a, b, c]


def test_threshold_optimisation_by_hand() -> None:
    files = threshold_corpus()
    tp_a = scaled_sigmoid(-0.8) / SIGMA_START
    # Standard: at 0.9 -> tp_a - 1 (b missed); at 0.5 -> tp_a + 1 - 0.11 - 10 * 0.11.
    at_09 = tp_a - 1.0
    at_05 = tp_a + 1.0 - 11 * 0.11
    assert at_05 > at_09
    sweep = optimise_threshold(files, STD)
    assert sweep.threshold == 0.5
    assert sweep.score == pytest.approx(at_05)
    # Low FP rate: the eleven FPs cost 2.42, more than b's 2 -> stay at 0.9.
    sweep = optimise_threshold(files, LOW_FP)
    assert sweep.threshold == 0.9
    assert sweep.score == pytest.approx(tp_a - 1.0)
    # Low FN rate: a miss costs 2, so 0.5 again.
    sweep = optimise_threshold(files, LOW_FN)
    assert sweep.threshold == 0.5
    assert sweep.score == pytest.approx(tp_a + 1.0 - 11 * 0.11)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_sweep_matches_brute_force(name: str) -> None:
    import random

    profile = PROFILES[name]
    rng = random.Random(5)
    files = [
        ScoredFile(f"f{k}", [round(rng.random(), 2) for _ in range(300)], [(100, 130), (200, 240)])
        for k in range(4)
    ]
    sweep = optimise_threshold(files, profile)
    candidates = sorted({s for f in files for s in f.scores} | {2.0})
    best = max(score_corpus(files, profile, t) for t in candidates)
    assert sweep.score == pytest.approx(best)
    assert score_corpus(files, profile, sweep.threshold) == pytest.approx(best)


def test_normalisation_null_is_0_perfect_is_100() -> None:
    files = threshold_corpus()
    assert null_score(files, STD) == -2.0
    assert perfect_score(files, STD) == pytest.approx(2.0)
    assert normalise(-2.0, files, STD) == 0.0
    assert normalise(2.0, files, STD) == 100.0
    assert normalise(0.0, files, STD) == 50.0
    assert null_score(files, LOW_FN) == -4.0
    assert normalise(0.0, files, LOW_FN) == pytest.approx(100 * 4 / 6)
    # The never-firing detector scores 0 after the sweep.
    quiet = [ScoredFile(f.name, [0.0] * 100, f.windows) for f in files]
    assert optimise_threshold(quiet, STD).normalised == pytest.approx(0.0)


def test_window_metrics() -> None:
    files = threshold_corpus()
    m = window_metrics(files, 0.5)
    assert (m.tp, m.fn, m.fp) == (2, 0, 11)
    assert m.recall == 1.0
    assert m.precision == pytest.approx(2 / 13)
    assert m.f1 == pytest.approx(2 * (2 / 13) / (1 + 2 / 13))


def test_windows_from_timestamps() -> None:
    times = [1000.0 + 300 * i for i in range(100)]
    f = ScoredFile.from_timestamps("t", times, [0.0] * 100, [(times[40], times[49] + 10)])
    assert f.windows == [(40, 49)]
