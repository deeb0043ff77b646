"""Soak of the dispatcher pipeline model (tests/unit/dispatcher/test_pipeline_model.py): the
rule-based state machine in rounds, many more examples and longer sequences than CI runs.

    python benchmarks/pipeline_model_soak.py                       # 10 rounds x 50 examples
    python benchmarks/pipeline_model_soak.py --rounds 2 --examples 20 --steps 30
    python benchmarks/pipeline_model_soak.py --all                 # inputs of open bugs too

Each round is one hypothesis run with a fresh random seed; a round that finds an invariant
violation stops there (after shrinking it, unless --no-shrink) and the next round goes on.
Prints the examples and steps run, and every violation with its shrunk sequence.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]


def _describe(exc: BaseException) -> str:
    """The violation and the (shrunk) sequence of rules that led to it."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    notes = [n for n in getattr(exc, "__notes__", []) if not n.startswith("state.")]
    steps = [n for n in getattr(exc, "__notes__", []) if n.startswith("state.")]
    rules = [n for n in steps if not n.split("(")[0].endswith(INVARIANTS)]
    return "\n".join([text, *rules, *notes[-1:]])


INVARIANTS = (
    "budgets_hold",
    "decided_once",
    "folds_only_under_trusted_roots",
    "incidents_match_the_model",
    "no_run_without_an_allowing_decision",
    "no_slot_is_leaked",
    "nothing_raised",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--examples", type=int, default=50, help="examples per round")
    parser.add_argument("--steps", type=int, default=50, help="most rules per example")
    parser.add_argument("--all", action="store_true", help="also inputs of open bugs")
    parser.add_argument("--no-shrink", action="store_true")
    args = parser.parse_args()
    if args.all:
        os.environ["SELFHEAL_MODEL_ALL"] = "1"

    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test
    from unit.dispatcher import test_pipeline_model as model

    phases = [Phase.generate] + ([] if args.no_shrink else [Phase.shrink])
    config = settings(
        max_examples=args.examples,
        stateful_step_count=args.steps,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    print(f"open bugs left out of the inputs: {sorted(model.OPEN_BUGS) if not args.all else []}")
    violations: list[str] = []
    started = time.monotonic()
    for n in range(1, args.rounds + 1):
        before = model.STATS["examples"]
        try:
            run_state_machine_as_test(model.PipelineModel, settings=config)
            outcome = "ok"
        except BaseException as exc:  # an invariant violation, shrunk: report and go on
            if isinstance(exc, KeyboardInterrupt):
                raise
            found = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]
            texts = [_describe(e) for e in found]
            violations += texts
            outcome = f"{len(texts)} violation(s)\n" + "\n\n".join(texts)
        print(f"round {n}: {model.STATS['examples'] - before} examples: {outcome}", flush=True)
    elapsed = time.monotonic() - started
    stats = model.STATS
    print(
        f"examples {stats['examples']} (incl. shrinking), steps {stats['steps']},"
        f" restarts {stats['restarts']}, incidents {stats['incidents']},"
        f" runs executed {stats['runs executed']}, violations {len(violations)},"
        f" {elapsed:.0f} s"
    )
    rules = {k[5:]: v for k, v in sorted(stats.items()) if k.startswith("rule ")}
    print("rules:", ", ".join(f"{k} {v}" for k, v in rules.items()))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
