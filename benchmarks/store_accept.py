"""Store benchmark: alerts accepted per second by the SQLite store (WAL, synchronous=FULL),
one alert per transaction and in batches, plus run claims per second; ``--dsn`` measures
the PostgreSQL store instead.

    python benchmarks/store_accept.py                  # 2,000 single, 20,000 batched
    python benchmarks/store_accept.py --single 500 --batched 5000 --batch 50

Every transaction is fsynced before accept() returns, so the single-alert rate is bounded
by the disk's flush latency; batches share one flush.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from selfheal.alerts import Alert, compute_fingerprint
from selfheal.store import PostgresStore, SQLiteStore, Store


def _alert(i: int, distinct: int) -> Alert:
    labels = {"alertname": "ServiceDown", "instance": f"web{i % distinct:04d}", "job": "web"}
    return Alert(
        source="alertmanager",
        status="firing",
        name="ServiceDown",
        labels=labels,
        annotations={"summary": "web is down", "description": "x" * 200},
        starts_at=datetime(2026, 11, 20, tzinfo=UTC),
        ends_at=None,
        fingerprint=compute_fingerprint("alertmanager", labels),
        generator_url="http://prometheus.example/graph",
        received_at=datetime.now(UTC),
        raw={"labels": labels, "i": i},
    )


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=2000, help="single-alert transactions")
    parser.add_argument("--batched", type=int, default=20000, help="alerts accepted in batches")
    parser.add_argument("--batch", type=int, default=100, help="alerts per batch")
    parser.add_argument("--distinct", type=int, default=500, help="distinct fingerprints")
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--dir", help="where to put the database (default: a temp dir)")
    parser.add_argument(
        "--dsn", help="benchmark a PostgresStore at this DSN instead (its tables must be empty)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    try:
        results = {}
        label = "PostgreSQL store" if args.dsn else "SQLite store, WAL, synchronous=FULL"

        def opened(name: str) -> Store:
            return PostgresStore(args.dsn) if args.dsn else SQLiteStore(base / name)

        with opened("single.db") as store:
            alerts = [_alert(i, args.distinct) for i in range(args.single)]
            started = time.perf_counter()
            for alert in alerts:
                store.accept([alert])
            results["single_alerts_per_s"] = _rate(args.single, time.perf_counter() - started)
        with opened("batched.db") as store:
            alerts = [_alert(i, args.distinct) for i in range(args.batched)]
            started = time.perf_counter()
            for start in range(0, len(alerts), args.batch):
                store.accept(alerts[start : start + args.batch])
            elapsed = time.perf_counter() - started
            results[f"batch_{args.batch}_alerts_per_s"] = _rate(args.batched, elapsed)
            results[f"batch_{args.batch}_transactions_per_s"] = _rate(
                -(-args.batched // args.batch), elapsed
            )
            incident = store.list_incidents(limit=1)[0].id
            for i in range(args.claims):
                store.enqueue_run(incident, "bench", f"h{i}")
            started = time.perf_counter()
            while (run := store.claim_next_run("bench", 60)) is not None:
                store.finish_run(run.id, "succeeded", rc=0)
            results["claim_and_finish_per_s"] = _rate(args.claims, time.perf_counter() - started)
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print(label)
            for key, value in results.items():
                print(f"  {key:32s} {value:10.0f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
