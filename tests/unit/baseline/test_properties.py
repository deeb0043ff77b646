"""Properties of the KPI detector that hold for any series, checked on many random ones."""

from __future__ import annotations

import json
import math
import random

import pytest

from selfheal.baseline import DetectorConfig, KpiDetector

STEP = 300.0
T0 = 1_772_409_600.0
SEEDS = range(8)


def random_series(seed: int, n: int = 2500) -> list[float | None]:
    """Noise on a random level and scale, a daily swing, a trend, spikes, shifts and gaps."""
    rng = random.Random(seed)
    level = rng.choice([0.0, 1e-3, 5.0, 100.0, 1e6]) * rng.choice([1, -1])
    scale = abs(level) * rng.uniform(0.001, 0.3) or rng.uniform(0.01, 1.0)
    swing = scale * rng.uniform(0.0, 5.0)
    out: list[float | None] = []
    for i in range(n):
        value = level + swing * math.sin(2 * math.pi * i / 288) + rng.gauss(0.0, scale)
        value += scale * 0.001 * i * rng.choice([0, 1])
        if rng.random() < 0.003:
            value += scale * rng.uniform(-50, 50)
        if i == n // 2:
            level += scale * rng.uniform(-20, 20)
        out.append(None if rng.random() < 0.02 else value)
    return out


def scores(det: KpiDetector, values, start: int = 0) -> list[float]:
    return [det.update(T0 + (start + i) * STEP, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("seed", SEEDS)
def test_scores_are_bounded(seed: int) -> None:
    values = random_series(seed)
    rng = random.Random(seed)
    # Extreme points too: huge, tiny, infinite and missing values.
    for _ in range(20):
        values[rng.randrange(len(values))] = rng.choice([1e300, -1e300, 1e-300, math.inf, None])
    out = scores(KpiDetector(), values)
    assert all(0.0 <= s < 1.0 and not math.isnan(s) for s in out)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_look_ahead(seed: int) -> None:
    values = random_series(seed)
    cut = random.Random(seed).randrange(200, len(values))
    assert scores(KpiDetector(), values)[:cut] == scores(KpiDetector(), values[:cut])


@pytest.mark.parametrize("seed", SEEDS)
def test_state_round_trip_through_json(seed: int) -> None:
    values = random_series(seed)
    cut = random.Random(seed).randrange(1, len(values))
    whole = scores(KpiDetector(), values)
    det = KpiDetector()
    first = scores(det, values[:cut])
    resumed = KpiDetector.from_state(json.loads(json.dumps(det.to_state())))
    assert first + scores(resumed, values[cut:], start=cut) == whole
    assert resumed.to_state() == KpiDetector.from_state(resumed.to_state()).to_state()


@pytest.mark.parametrize("level", [0.0, -3.5, 1.0, 42.0, 1e9])
def test_a_flat_series_never_alarms(level: float) -> None:
    rng = random.Random(int(level))
    values = [None if rng.random() < 0.05 else level for _ in range(6000)]
    assert max(scores(KpiDetector(), values)) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_a_spike_is_caught_at_once_and_a_level_shift_within_a_few_points(seed: int) -> None:
    rng = random.Random(seed)
    level = rng.uniform(-1e3, 1e3)
    sd = rng.uniform(0.01, 50.0)
    base = [level + rng.gauss(0.0, sd) for _ in range(3000)]
    # The default (calm) alarm, above the threshold NAB selects.
    spike = KpiDetector()
    scores(spike, base)
    sign = rng.choice([1, -1])
    assert spike.update(T0 + 3000 * STEP, level + sign * 12 * sd) >= spike.config.alarm
    shift = KpiDetector()
    scores(shift, base)
    after = [level + sign * 10 * sd + rng.gauss(0.0, sd) for _ in range(20)]
    out = scores(shift, after, start=3000)
    assert max(out[:3]) >= shift.config.alarm


def test_the_score_does_not_depend_on_the_alarm_threshold() -> None:
    values = random_series(3)
    calm = scores(KpiDetector(DetectorConfig(alarm=0.5)), values)
    keen = scores(KpiDetector(DetectorConfig(alarm=0.02)), values)
    assert calm == keen
    assert max(calm) > 0.0


def test_memory_is_bounded() -> None:
    det = KpiDetector()
    scores(det, random_series(1, n=5000))
    size = len(json.dumps(det.to_state()))
    for chunk in range(1, 6):
        scores(det, random_series(chunk, n=5000), start=5000 * chunk)
    assert len(det.blk_hi) <= det.config.blocks
    assert len(json.dumps(det.to_state())) < size + 600  # counters stop growing
