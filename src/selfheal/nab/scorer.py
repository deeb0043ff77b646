"""NAB scoring: windows, scaled sigmoid rewards, profiles, threshold sweep, normalisation.

Definitions (NAB's, restated; the tests work examples by hand):

- A file of N rows has a probationary period of ``min(floor(0.15 N), 750)`` rows; no
  detection there counts for or against the detector.
- A detection is a row whose anomaly score is at or above the threshold.
- Inside an anomaly window ``[s, e]`` (row indices, inclusive, width ``W = e - s + 1``) a
  detection at row ``i`` sits at ``y = -(e - i + 1) / W`` (``-1`` at the start, ``-1/W`` at
  the end). Only the earliest detection of a window counts, earning
  ``A_TP * sigma(y) / sigma(-1)`` where ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (``-1`` once
  ``y > 3``). A window without a detection costs ``A_FN``.
- Every detection outside the windows is a false positive and costs ``A_FP * sigma(y)``:
  ``y = (i - e) / (e - s)`` past the end ``e`` of the preceding window (a detection just after
  a window costs little, one far after costs ``A_FP``), and ``sigma = -1`` (the full
  ``A_FP``) when no window precedes it.
- True negatives earn nothing whatever ``A_TN``.
- One threshold for the whole corpus, the one maximising the total score, per profile.
- Normalised score ``100 (S - S_null) / (S_perfect - S_null)``: the null detector never fires
  (``S_null = -A_FN`` per window); the perfect one detects every window at its first scored
  row (``A_TP`` per window whose start is past the probationary period).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750  # rows: 0.15 of NAB's 5000-row reference length


@dataclass(frozen=True)
class Profile:
    """An application profile: the weights of true/false positives and negatives."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float
    a_tn: float = 1.0  # part of NAB's profiles; true negatives still score 0


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", a_tp=1.0, a_fp=0.11, a_fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", a_tp=1.0, a_fp=0.22, a_fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", a_tp=1.0, a_fp=0.11, a_fn=2.0),
}


def scaled_sigmoid(y: float) -> float:
    """``2 / (1 + e^(5y)) - 1``: +0.987 at y=-1, 0 at y=0, -1 for y > 3."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


SIGMA_AT_START = scaled_sigmoid(-1.0)


def probationary_length(rows: int) -> int:
    return min(math.floor(PROBATION_FRACTION * rows), PROBATION_CAP)


@dataclass
class ScoredFile:
    """One data file: the detector's scores per row and the anomaly windows as row ranges."""

    name: str
    scores: Sequence[float]
    windows: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def from_timestamps(
        cls,
        name: str,
        timestamps: Sequence,
        scores: Sequence[float],
        windows: Iterable[tuple],
    ) -> ScoredFile:
        """Windows given as (start, end) times, mapped onto the rows they cover.

        ``timestamps`` must be sorted and comparable with the window ends (datetimes or
        epoch seconds).
        """
        rows = []
        for start, end in windows:
            first = bisect.bisect_left(timestamps, start)
            last = bisect.bisect_right(timestamps, end) - 1
            if first <= last:
                rows.append((first, last))
        return cls(name, scores, sorted(rows))

    @property
    def probation(self) -> int:
        return probationary_length(len(self.scores))

    def row_weights(self, profile: Profile) -> tuple[list[int], list[float]]:
        """Per row: the window it belongs to (-1 outside, -2 probationary) and its weight.

        The weight is what a detection there earns: the TP reward inside a window, the
        (negative) FP cost outside.
        """
        n = len(self.scores)
        owner = [-1] * n
        weight = [0.0] * n
        previous: tuple[int, int] | None = None
        bounds = sorted(self.windows)
        k = 0
        for i in range(n):
            while k < len(bounds) and bounds[k][1] < i:
                previous = bounds[k]
                k += 1
            if k < len(bounds) and bounds[k][0] <= i <= bounds[k][1]:
                start, end = bounds[k]
                y = -(end - i + 1) / (end - start + 1)
                owner[i] = k
                weight[i] = profile.a_tp * scaled_sigmoid(y) / SIGMA_AT_START
            else:
                if previous is None or previous[1] == previous[0]:
                    sigma = -1.0
                else:
                    sigma = scaled_sigmoid((i - previous[1]) / (previous[1] - previous[0]))
                weight[i] = profile.a_fp * sigma
        for i in range(min(self.probation, n)):
            owner[i] = -2
            weight[i] = 0.0
        return owner, weight


@dataclass(frozen=True)
class FileResult:
    name: str
    score: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside windows (after the probationary period)
    detections: tuple[int, ...]  # rows of the counted detections (earliest per window, FPs)


def score_file(scored: ScoredFile, profile: Profile, threshold: float) -> FileResult:
    owner, weight = scored.row_weights(profile)
    n_windows = len(scored.windows)
    earliest: list[int | None] = [None] * n_windows
    total = 0.0
    fp = 0
    counted = []
    for i, value in enumerate(scored.scores):
        if value < threshold or owner[i] == -2:
            continue
        w = owner[i]
        if w >= 0:
            if earliest[w] is None:
                earliest[w] = i
                total += weight[i]
                counted.append(i)
        else:
            fp += 1
            total += weight[i]
            counted.append(i)
    tp = sum(1 for e in earliest if e is not None)
    total -= profile.a_fn * (n_windows - tp)
    return FileResult(scored.name, total, tp, n_windows - tp, fp, tuple(counted))


def score_corpus(files: Sequence[ScoredFile], profile: Profile, threshold: float) -> float:
    return sum(score_file(f, profile, threshold).score for f in files)


def null_score(files: Sequence[ScoredFile], profile: Profile) -> float:
    return -profile.a_fn * sum(len(f.windows) for f in files)


def perfect_score(files: Sequence[ScoredFile], profile: Profile) -> float:
    """Every window detected at its first scored row (a window wholly in probation is missed)."""
    total = 0.0
    for scored in files:
        owner, weight = scored.row_weights(profile)
        best = [None] * len(scored.windows)
        for i, w in enumerate(owner):
            if w >= 0 and best[w] is None:
                best[w] = weight[i]
        total += sum(-profile.a_fn if b is None else b for b in best)
    return total


def normalise(raw: float, files: Sequence[ScoredFile], profile: Profile) -> float:
    null = null_score(files, profile)
    perfect = perfect_score(files, profile)
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True)
class SweepResult:
    profile: str
    threshold: float
    score: float  # raw total at that threshold
    normalised: float


def optimise_threshold(files: Sequence[ScoredFile], profile: Profile) -> SweepResult:
    """The corpus-wide threshold maximising the total score (exhaustive sweep).

    Every distinct score is a candidate; lowering the threshold past a score adds the rows
    holding it as detections, so the total is updated incrementally. Ties keep the higher
    threshold. No detection at all (threshold above every score) is the starting point.
    """
    entries: list[tuple[float, int, int]] = []
    owners: list[list[int]] = []
    weights: list[list[float]] = []
    for f_index, scored in enumerate(files):
        owner, weight = scored.row_weights(profile)
        owners.append(owner)
        weights.append(weight)
        for i, value in enumerate(scored.scores):
            if owner[i] != -2:
                entries.append((value, f_index, i))
    entries.sort(key=lambda e: -e[0])
    earliest = [[None] * len(f.windows) for f in files]
    total = null_score(files, profile)
    best_total, best_threshold = total, math.inf
    k = 0
    while k < len(entries):
        value = entries[k][0]
        while k < len(entries) and entries[k][0] == value:
            _, f_index, i = entries[k]
            k += 1
            w = owners[f_index][i]
            if w < 0:
                total += weights[f_index][i]
                continue
            current = earliest[f_index][w]
            if current is None:
                total += weights[f_index][i] + profile.a_fn
                earliest[f_index][w] = i
            elif i < current:
                total += weights[f_index][i] - weights[f_index][current]
                earliest[f_index][w] = i
        if total > best_total + 1e-12:
            best_total, best_threshold = total, value
    return SweepResult(
        profile.name, best_threshold, best_total, normalise(best_total, files, profile)
    )


@dataclass(frozen=True)
class WindowMetrics:
    tp: int
    fn: int
    fp: int
    precision: float
    recall: float
    f1: float


def window_metrics(files: Sequence[ScoredFile], threshold: float) -> WindowMetrics:
    """Precision, recall and F1 by window: a window is found if any of its scored rows is a
    detection; every detection outside the windows (after probation) is a false positive."""
    profile = PROFILES["standard"]
    tp = fn = fp = 0
    for scored in files:
        result = score_file(scored, profile, threshold)
        tp, fn, fp = tp + result.tp, fn + result.fn, fp + result.fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return WindowMetrics(tp, fn, fp, precision, recall, f1)
