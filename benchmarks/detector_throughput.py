"""How fast is the KPI detector, and how much does a series cost? Points/s and bytes/series.

Feeds synthetic 5-minute series (daily pattern, noise, spikes, missing points) through
`KpiDetector.update` on one core, then measures the memory a series' detector holds (traced
allocations per detector, after it has learned a long series) and its saved state (JSON).

    python benchmarks/detector_throughput.py [--points 300000] [--series 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from selfheal.baseline import KpiDetector

T0 = 1_772_409_600.0
STEP = 300.0


def series(n: int, seed: int) -> list[tuple[float, float | None]]:
    rng = random.Random(seed)
    out: list[tuple[float, float | None]] = []
    for i in range(n):
        value: float | None = 100 + 30 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 3)
        if rng.random() < 0.001:
            value = value * 4
        if rng.random() < 0.01:
            value = None
        out.append((T0 + i * STEP, value))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=300_000, help="points to time")
    parser.add_argument("--series", type=int, default=200, help="detectors for the memory test")
    parser.add_argument("--length", type=int, default=5000, help="points per series (memory)")
    args = parser.parse_args(argv)

    data = series(args.points, seed=1)
    detector = KpiDetector()
    update = detector.update
    gc.collect()
    begin = time.perf_counter()
    for t, x in data:
        update(t, x)
    elapsed = time.perf_counter() - begin
    print(f"throughput: {args.points / elapsed:,.0f} points/s on one core")
    print(f"time per point: {elapsed / args.points * 1e6:.2f} us")

    feed = series(args.length, seed=2)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    detectors = []
    for _ in range(args.series):
        d = KpiDetector(detector.config)
        for t, x in feed:
            d.update(t, x)
        detectors.append(d)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per_series = used / args.series
    state = len(json.dumps(detectors[0].to_state()))
    long = KpiDetector(detector.config)
    for t, x in data:
        long.update(t, x)
    state_long = len(json.dumps(long.to_state()))
    print(f"memory per series: {per_series:,.0f} bytes (after {args.length} points)")
    print(
        f"state per series: {state:,} bytes JSON after {args.length} points, "
        f"{state_long:,} bytes after {args.points} points"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
