"""NAB score of the KPI baselining detector on the NAB data shipped with the project.

Runs `selfheal.baseline.KpiDetector` (one configuration for every file) over each CSV,
then scores it with `selfheal.nab` for the three NAB profiles: the corpus-wide optimal
threshold, raw and normalised score, and precision/recall/F1 by window. Also prints the time
per point and the size of a series' state.

    python benchmarks/nab_score.py [--data DIR] [--set key=value ...] [--per-file]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from selfheal.baseline import DetectorConfig, KpiDetector, parse_time, read_csv
from selfheal.nab import PROFILES, ScoredFile, optimise_threshold, score_file, window_metrics

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nab"


def load_corpus(data: Path) -> list[tuple[str, list[tuple[float, float | None]], list]]:
    windows = json.loads((data / "combined_windows.json").read_text())
    corpus = []
    for name in sorted(windows):
        path = data / name
        if not path.exists():
            continue  # a file of the full corpus not shipped here
        spans = [(parse_time(a), parse_time(b)) for a, b in windows[name]]
        corpus.append((name, read_csv(path), spans))
    return corpus


def run(corpus, config: DetectorConfig) -> tuple[list[ScoredFile], float, int]:
    files = []
    points = 0
    elapsed = 0.0
    state_bytes = 0
    for name, rows, spans in corpus:
        detector = KpiDetector(config)
        update = detector.update
        begin = time.perf_counter()
        scores = [update(t, x) for t, x in rows]
        elapsed += time.perf_counter() - begin
        points += len(rows)
        state_bytes = max(state_bytes, len(json.dumps(detector.to_state())))
        times = [t for t, _ in rows]
        files.append(ScoredFile.from_timestamps(name, times, scores, spans))
    return files, elapsed / max(points, 1), state_bytes


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    defaults = DetectorConfig().as_dict()
    for pair in pairs:
        key, _, text = pair.partition("=")
        if key not in defaults:
            raise SystemExit(f"unknown parameter {key!r}")
        out[key] = type(defaults[key])(text)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB data directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--per-file", action="store_true", help="standard-profile detail")
    args = parser.parse_args(argv)
    config = DetectorConfig(**parse_overrides(args.set))
    corpus = load_corpus(args.data)
    files, per_point, state_bytes = run(corpus, config)
    n_windows = sum(len(f.windows) for f in files)
    print(f"files {len(files)}, windows {n_windows}, points {sum(len(f.scores) for f in files)}")
    print(f"{'profile':<20} {'threshold':>9} {'raw':>8} {'NAB':>6} {'P':>5} {'R':>5} {'F1':>5} FP")
    for profile in PROFILES.values():
        sweep = optimise_threshold(files, profile)
        m = window_metrics(files, sweep.threshold)
        print(
            f"{profile.name:<20} {sweep.threshold:9.4f} {sweep.score:8.3f} "
            f"{sweep.normalised:6.1f} {m.precision:5.2f} {m.recall:5.2f} {m.f1:5.2f} {m.fp}"
        )
        if args.per_file and profile.name == "standard":
            for f in files:
                r = score_file(f, profile, sweep.threshold)
                print(f"    {f.name:<55} {r.score:7.3f} tp={r.tp} fn={r.fn} fp={r.fp}")
    print(f"time per point {per_point * 1e6:.2f} us; state per series {state_bytes} bytes (JSON)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
