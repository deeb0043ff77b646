"""NAB score of the KPI baselining detector, in sample and leave-one-category-out.

Runs `selfheal.baseline.KpiDetector` (one configuration for every file) over each CSV of a
directory in NAB's layout (``<category>/<file>.csv`` plus ``combined_windows.json``), then
scores it with `selfheal.nab` for the three NAB profiles.

Leave-one-category-out (printed first, the number to trust): for each category, the
threshold is the one that maximises the total score of the *other* categories, and the
held-out category is scored at it. The table gives each category's held-out score and
their mean (categories with no anomaly window have no normalised score: their raw score,
which is minus the cost of their false positives, is shown instead), and the pooled
held-out score: every category scored at its own fold's threshold, normalised over the
whole corpus, the held-out counterpart of NAB's corpus score. With ``--choose`` each fold
also chooses the configuration among the candidates, again without its category.

In sample (NAB's own procedure, for comparison only): one threshold chosen on every file.

    python benchmarks/nab_score.py [--data DIR] [--set KEY=VALUE ...] [--choose KEY=V1,V2 ...]
                                   [--per-file]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from selfheal.baseline import DetectorConfig, KpiDetector, parse_time, read_csv
from selfheal.nab import (
    PROFILES,
    ScoredFile,
    normalise,
    optimise_threshold,
    score_file,
    window_metrics,
)

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


def category(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else "."


def leave_one_category_out(variants: list[tuple[str, list[ScoredFile]]]) -> dict:
    """Per profile: ({category: (threshold, raw, normalised or None, fp, found, windows,
    variant)}, mean of the normalised scores, pooled normalised score).

    ``variants`` are the same files scored by different configurations (one is the usual
    case): for each held-out category, the configuration and the threshold are the pair
    that maximises the total score of the other categories.
    """
    files = variants[0][1]
    categories = sorted({category(f.name) for f in files})
    out = {}
    for profile in PROFILES.values():
        rows = {}
        pooled = 0.0
        for held in categories:
            best = None
            for label, scored in variants:
                train = [f for f in scored if category(f.name) != held]
                sweep = optimise_threshold(train, profile) if train else None
                total = sweep.score if sweep else 0.0
                if best is None or total > best[0] + 1e-9:
                    best = (total, label, scored, sweep.threshold if sweep else 1.0)
            _, label, scored, threshold = best
            test = [f for f in scored if category(f.name) == held]
            results = [score_file(f, profile, threshold) for f in test]
            raw = sum(r.score for r in results)
            pooled += raw
            has_windows = any(f.windows for f in test)
            rows[held] = (
                threshold,
                raw,
                normalise(raw, test, profile) if has_windows else None,
                sum(r.fp for r in results),
                sum(r.tp for r in results),
                sum(r.tp + r.fn for r in results),
                label,
            )
        scored_rows = [v[2] for v in rows.values() if v[2] is not None]
        mean = sum(scored_rows) / len(scored_rows) if scored_rows else 0.0
        out[profile.name] = (rows, mean, normalise(pooled, files, profile))
    return out


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    defaults = DetectorConfig().as_dict()
    for pair in pairs:
        key, _, text = pair.partition("=")
        if key not in defaults:
            raise SystemExit(f"unknown parameter {key!r}")
        out[key] = type(defaults[key])(text)
    return out


def parse_choices(pairs: list[str]) -> list[dict]:
    """``KEY=V1,V2`` options -> every combination of the values (one empty dict if none)."""
    combos: list[dict] = [{}]
    for pair in pairs:
        key, _, text = pair.partition("=")
        values = [parse_overrides([f"{key}={v}"])[key] for v in text.split(",") if v]
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB data directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--choose",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="candidate values: each fold chooses the configuration too, without its category",
    )
    parser.add_argument("--per-file", action="store_true", help="standard-profile detail")
    args = parser.parse_args(argv)
    if not (args.data / "combined_windows.json").is_file():
        raise SystemExit(f"{args.data}: no combined_windows.json (not a NAB-layout directory)")
    base = parse_overrides(args.set)
    config = DetectorConfig(**base)
    corpus = load_corpus(args.data)
    files, per_point, state_bytes = run(corpus, config)
    n_windows = sum(len(f.windows) for f in files)
    print(f"files {len(files)}, windows {n_windows}, points {sum(len(f.scores) for f in files)}")

    variants = [("", files)]
    choices = parse_choices(args.choose)
    if args.choose:
        variants = [
            (
                " ".join(f"{k}={v}" for k, v in combo.items()),
                run(corpus, config.replace(**combo))[0],
            )
            for combo in choices
        ]
    loco = leave_one_category_out(variants)
    categories = list(loco["standard"][0])
    what = "configuration and threshold" if args.choose else "threshold"
    print(f"\nleave-one-category-out: each category scored at the {what} of the other ones")
    print(
        f"{'held-out category':<24} {'standard':>9} {'low FP':>9} {'low FN':>9}"
        f" {'threshold':>9} {'windows':>8} {'FP':>4}"
    )
    for held in categories:
        cells = []
        for name in PROFILES:
            _, raw, norm, *_ = loco[name][0][held]
            cells.append(f"{norm:9.1f}" if norm is not None else f"{f'raw {raw:.2f}':>9}")
        threshold, _, _, fp, found, total, label = loco["standard"][0][held]
        print(
            f"{held:<24} {' '.join(cells)} {threshold:9.4f} {f'{found}/{total}':>8} {fp:4d}"
            + (f"  [{label}]" if args.choose else "")
        )
    print(f"{'mean of categories':<24} " + " ".join(f"{loco[p][1]:9.1f}" for p in PROFILES))
    print(f"{'pooled held-out':<24} " + " ".join(f"{loco[p][2]:9.1f}" for p in PROFILES))

    print("\nin sample (one threshold chosen on every file; for comparison only)")
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
    print(f"\ntime per point {per_point * 1e6:.2f} us; state per series {state_bytes} bytes (JSON)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
