"""Several real processes on one SQLite file: SIGKILL in the middle of accepting alerts, and
four workers claiming runs at once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from unit.store.conftest import make_alert

from selfheal.store import SQLiteStore, open_store

_ACCEPTOR = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from selfheal.alerts import Alert, compute_fingerprint
    from selfheal.store import SQLiteStore, open_store

    store = SQLiteStore(sys.argv[1])
    prefix, i = sys.argv[2], 0
    while True:
        batch = []
        for _ in range(1 if i % 2 else 5):  # single-alert and batched transactions
            labels = {"alertname": "Load", "instance": f"{prefix}-{i % 37}"}
            batch.append(Alert(
                source="generic", status="firing" if i % 5 else "resolved", name="Load",
                labels=labels, annotations={"n": str(i)}, starts_at=None, ends_at=None,
                fingerprint=compute_fingerprint("generic", labels), generator_url="",
                received_at=datetime.now(UTC), raw={"n": i, "pad": "x" * 500},
            ))
            i += 1
        for result in store.accept(batch):
            print(result.alert_id, flush=True)  # only after the commit returned
    """
)


def _run_until_killed(db, prefix: str, min_lines: int) -> list[int]:
    child = subprocess.Popen(
        [sys.executable, "-c", _ACCEPTOR, str(db), prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    reported = []
    try:
        while len(reported) < min_lines:
            line = child.stdout.readline()
            assert line, "the acceptor exited early"
            reported.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        # Lines already in the pipe were printed after their commit: they count too.
        rest = child.stdout.read()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    complete = rest.split("\n")[:-1]  # the last piece has no newline: possibly cut short
    return reported + [int(x) for x in complete]


def test_sigkill_loses_no_accepted_alert(tmp_path):
    db = tmp_path / "crash.db"
    all_reported: list[int] = []
    for round_ in range(3):  # kill, reopen, continue: three times on the same file
        all_reported += _run_until_killed(db, f"r{round_}", 150 + 40 * round_)
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {row[0] for row in conn.execute("SELECT id FROM alerts")}
        missing = set(all_reported) - stored
        assert not missing, f"accepted but lost after SIGKILL: {sorted(missing)[:10]}"
    with SQLiteStore(db) as store:  # and the store opens and works afterwards
        assert store.integrity_check() == "ok"
        assert store.accept([make_alert()])[0].decision == "new"
        with sqlite3.connect(db) as conn:
            # Every incident count matches the firing alerts stored for it.
            bad = conn.execute(
                "SELECT i.id FROM incidents i WHERE i.count != (SELECT COUNT(*) FROM alerts a"
                " WHERE a.incident_id = i.id AND a.status = 'firing')"
            ).fetchall()
        assert bad == []


_CLAIMER = textwrap.dedent(
    """
    import sys, time
    from selfheal.store import open_store

    store = open_store(sys.argv[1])
    worker = sys.argv[2]
    while time.time() < float(sys.argv[3]):  # start together
        time.sleep(0.005)
    while (run := store.claim_next_run(worker, 60)) is not None:
        print(run.id, flush=True)
        store.finish_run(run.id, "succeeded", rc=0, worker_id=worker)
        time.sleep(0.002)  # let the others in: claims interleave
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_four_processes_never_claim_the_same_run(tmp_path, request, backend):
    if backend == "sqlite":
        db = str(tmp_path / "claims.db")
    else:
        db = request.getfixturevalue("postgres_dsn")
    with open_store(db) as store:
        incident = store.accept([make_alert()])[0].incident_id
        expected = {store.enqueue_run(incident, "rb", f"h{i}").id for i in range(200)}
    start = time.time() + 1.5
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(db), f"w{n}", str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    claims: dict[str, list[int]] = {}
    for n, proc in enumerate(workers):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        claims[f"w{n}"] = [int(x) for x in out.split()]
    every = [run_id for ids in claims.values() for run_id in ids]
    assert len(every) == len(set(every)), "a run was claimed twice"
    assert set(every) == expected
    with open_store(db) as store:
        runs = store.list_runs(incident_id=incident)
        assert all(r.status == "succeeded" and r.attempts == 1 for r in runs)
        assert {r.worker_id for r in runs} <= set(claims)
    assert sum(1 for ids in claims.values() if ids) >= 2, claims  # they did compete


_DEDUPER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from selfheal.alerts import Alert, compute_fingerprint
    from selfheal.store import open_store

    store = open_store(sys.argv[1])
    while time.time() < float(sys.argv[2]):  # start together
        time.sleep(0.005)
    for i in range(60):
        batch = []
        for instance in (f"h{i % 5}-{i // 5}", f"h{(i + 1) % 5}-{i // 5}"):  # overlapping
            labels = {"alertname": "Down", "instance": instance}
            batch.append(Alert(
                source="generic", status="firing", name="Down", labels=labels,
                annotations={}, starts_at=None, ends_at=None,
                fingerprint=compute_fingerprint("generic", labels), generator_url="",
                received_at=datetime.now(UTC), raw={},
            ))
        for result in store.accept(batch):
            print(result.decision, flush=True)
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_replicas_accepting_the_same_alerts_open_one_incident_each(tmp_path, request, backend):
    """Four dispatcher processes deduplicating overlapping alerts at once."""
    if backend == "sqlite":
        db = str(tmp_path / "dedup.db")
    else:
        db = request.getfixturevalue("postgres_dsn")
    open_store(db).close()  # schema first, so the four do not all migrate
    start = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DEDUPER, db, start], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    decisions = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        decisions += out.split()
    assert len(decisions) == 4 * 60 * 2
    assert decisions.count("new") == 60  # 5 instances x 12 generations
    with open_store(db) as store:
        incidents = store.list_incidents(limit=1000)
        assert len(incidents) == 60 and all(i.status == "open" for i in incidents)
        assert sum(i.count for i in incidents) == 4 * 60 * 2
