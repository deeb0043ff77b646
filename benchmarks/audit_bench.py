"""Audit trail benchmark: appends/s with an fsync per record and with group commit, and
verify speed in MB/s.

    python benchmarks/audit_bench.py                 # 1,000,000 records (a few minutes)
    python benchmarks/audit_bench.py --records 20000 # a quick run

fsync-per-record costs one disk flush per append, so it is measured on a sample
(``--fsync-records``, default 20,000) and reported as a rate; group commit and verify run on
the full ``--records``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from selfheal.audit import AuditTrail, Keyring, verify


def _event(i: int) -> dict:
    return {
        "action": "task",
        "target": f"web{i % 50:02d}.example.org",
        "outcome": "changed" if i % 7 == 0 else "ok",
        "decision": "auto",
        "reasons": ["disk usage above 90%"],
        "incident_id": f"INC-{i // 1000}",
        "run_id": f"run-{i // 100}",
        "actor": {"user": "sre-bot", "dispatcher": "selfheal-dispatcher", "awx_job_id": 1234},
        "data": {"task": "Restart nginx", "module": "ansible.builtin.service", "changed": True},
    }


def _append(path: Path, keyring: Keyring, n: int, **options) -> float:
    started = time.perf_counter()
    with AuditTrail(path, keyring, **options) as trail:
        for i in range(n):
            trail.append(_event(i))
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--fsync-records", type=int, default=20_000)
    parser.add_argument("--commit-every", type=int, default=1000)
    parser.add_argument("--commit-ms", type=float, default=50)
    parser.add_argument("--dir", help="where to write the trails (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    keyring = Keyring({"bench": b"b" * 32}, "bench")
    base = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=args.dir))
    try:
        n_sync = min(args.records, args.fsync_records)
        t_sync = _append(base / "fsync", keyring, n_sync)
        t_group = _append(
            base / "group",
            keyring,
            args.records,
            commit_every=args.commit_every,
            commit_ms=args.commit_ms,
        )
        report = verify(base / "group", keyring)
        assert report.ok and report.records == args.records, report.problem
        result = {
            "records": args.records,
            "fsync_per_record": {"records": n_sync, "appends_per_s": round(n_sync / t_sync)},
            "group_commit": {
                "records": args.records,
                "commit_every": args.commit_every,
                "commit_ms": args.commit_ms,
                "seconds": round(t_group, 1),
                "appends_per_s": round(args.records / t_group),
            },
            "verify": {
                "records": report.records,
                "segments": report.segments,
                "mb": round(report.bytes / 1e6, 1),
                "seconds": round(report.seconds, 1),
                "mb_per_s": round(report.mb_per_s, 1),
                "records_per_s": round(report.records / report.seconds),
            },
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        fs, gc, vf = result["fsync_per_record"], result["group_commit"], result["verify"]
        print(f"fsync per record : {fs['appends_per_s']:>9,} appends/s ({fs['records']:,} records)")
        print(
            f"group commit     : {gc['appends_per_s']:>9,} appends/s ({gc['records']:,} records, "
            f"fsync per {gc['commit_every']} records or {gc['commit_ms']:g} ms, {gc['seconds']} s)"
        )
        print(
            f"verify           : {vf['mb_per_s']:>9} MB/s ({vf['records_per_s']:,} records/s, "
            f"{vf['mb']} MB in {vf['segments']} segment(s), {vf['seconds']} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
