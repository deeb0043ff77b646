"""Appends: canonical lines, the chain, group commit, rotation, concurrency, spool, repair."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat

import pytest

from selfheal.audit import (
    GENESIS,
    AuditTrail,
    Keyring,
    canonical,
    iter_records,
    list_segments,
    record_hash,
    verify,
)
from selfheal.audit.record import mac
from selfheal.errors import ConfigError


def _lines(trail_dir):
    return [line for seg in list_segments(trail_dir) for line in seg.read_bytes().splitlines()]


def test_record_is_canonical_and_chained(trail_dir, keyring):
    with AuditTrail(trail_dir, keyring) as trail:
        first = trail.append({"action": "play.start", "target": "all", "run_id": "r1"})
        second = trail.append({"action": "task", "target": "web1", "outcome": "changed"})
    lines = _lines(trail_dir)
    assert lines == [canonical(first), canonical(second)]
    assert json.loads(lines[0]) == first
    assert first["seq"] == 1 and second["seq"] == 2
    assert first["prev"] == GENESIS
    assert second["prev"] == record_hash(lines[0])
    assert first["ts"].endswith("Z") and first["kid"] == "k1"
    content = {k: v for k, v in first.items() if k != "hmac"}
    assert first["hmac"] == mac(b"a" * 32, canonical(content))
    assert set(first["actor"]) == {"user", "dispatcher", "awx_job_id"}
    assert list(json.loads(lines[0])) == sorted(json.loads(lines[0]))
    assert b", " not in lines[0] and b": " not in lines[0]


def test_non_ascii_is_utf8(trail_dir, keyring):
    with AuditTrail(trail_dir, keyring) as trail:
        trail.append({"action": "note", "target": "sérveur-Ω"})
    assert "sérveur-Ω".encode() in _lines(trail_dir)[0]
    assert verify(trail_dir, keyring).ok


def test_bad_event_is_refused(trail_dir, keyring):
    with AuditTrail(trail_dir, keyring) as trail, pytest.raises(ConfigError):
        trail.append({"target": "x"})


def test_unknown_fields_go_to_data(trail_dir, keyring):
    with AuditTrail(trail_dir, keyring) as trail:
        rec = trail.append({"action": "x", "host_count": 3})
    assert rec["data"] == {"host_count": 3}


def test_reopen_continues_the_chain(trail_dir, keyring):
    for n in range(3):
        with AuditTrail(trail_dir, keyring) as trail:
            rec = trail.append({"action": "x", "data": {"n": n}})
    assert rec["seq"] == 3
    assert verify(trail_dir, keyring).ok


def test_rotation_by_size_keeps_the_chain(filled, keyring):
    segments = list_segments(filled)
    assert len(segments) > 2
    assert [s.name for s in segments] == sorted(s.name for s in segments)
    seqs = [r["seq"] for r in iter_records(filled)]
    assert seqs == list(range(1, 11))
    for seg in segments:
        first = json.loads(seg.read_bytes().splitlines()[0])
        assert seg.name == f"audit-{first['seq']:012d}.jsonl"
    report = verify(filled, keyring)
    assert report.ok and report.records == 10 and report.segments == len(segments)


def test_rotation_by_time(trail_dir, keyring, monkeypatch):
    import selfheal.audit.trail as trail_mod

    clock = [1_800_000_000.0]
    monkeypatch.setattr(trail_mod.time, "time", lambda: clock[0])
    with AuditTrail(trail_dir, keyring, rotate_seconds=60) as trail:
        trail.append({"action": "a"})
        clock[0] += 30
        trail.append({"action": "b"})
        clock[0] += 31
        trail.append({"action": "c"})
    assert [s.name for s in list_segments(trail_dir)] == [
        "audit-000000000001.jsonl",
        "audit-000000000003.jsonl",
    ]
    assert verify(trail_dir, keyring).ok


def test_group_commit_counts_fsyncs(trail_dir, keyring, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    trail = AuditTrail(trail_dir, keyring, commit_every=5, rotate_bytes=None)
    trail.append({"action": "x"})  # first append creates the segment (fsyncs the directory)
    calls.clear()
    for _ in range(9):
        trail.append({"action": "x"})
    assert len(calls) == 2  # at 5 and 10 pending records
    trail.append({"action": "x"})
    trail.close()  # flushes the pending one
    assert len(calls) == 3


def test_group_commit_timer_flushes(trail_dir, keyring, monkeypatch):
    import time

    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    trail = AuditTrail(trail_dir, keyring, commit_every=1000, commit_ms=20)
    trail.append({"action": "x"})
    calls.clear()
    trail.append({"action": "y"})
    assert calls == []
    deadline = time.time() + 5
    while not calls and time.time() < deadline:
        time.sleep(0.01)
    assert calls
    trail.close()


def test_fsync_per_record_by_default(trail_dir, keyring, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    with AuditTrail(trail_dir, keyring) as trail:
        trail.append({"action": "x"})
        calls.clear()
        trail.append({"action": "x"})
        assert len(calls) == 1


def _worker(args):
    path, n, wid = args
    ring = Keyring({"k1": b"a" * 32}, "k1")
    with AuditTrail(path, ring, rotate_bytes=20_000, commit_every=7) as trail:
        for i in range(n):
            trail.append({"action": "task", "target": f"w{wid}", "data": {"i": i}})


def test_concurrent_processes_never_interleave(trail_dir, keyring):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        pool.map(_worker, [(str(trail_dir), 150, w) for w in range(4)])
    report = verify(trail_dir, keyring)
    assert report.ok, report.problem
    assert report.records == 600
    seen = {(r["target"], r["data"]["i"]) for r in iter_records(trail_dir)}
    assert len(seen) == 600
    assert len(list_segments(trail_dir)) > 1


def test_threads_share_one_trail(trail_dir, keyring):
    import threading

    trail = AuditTrail(trail_dir, keyring, commit_every=10, commit_ms=5)
    threads = [
        threading.Thread(target=lambda: [trail.append({"action": "t"}) for _ in range(50)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trail.close()
    assert verify(trail_dir, keyring).records == 200


def test_torn_write_is_cut_and_recorded(filled, keyring):
    last = list_segments(filled)[-1]
    with open(last, "ab") as f:
        f.write(b'{"action":"half-writ')
    assert not verify(filled, keyring).ok
    with AuditTrail(filled, keyring) as trail:
        rec = trail.append({"action": "after"})
    records = list(iter_records(filled))
    assert records[-2]["action"] == "audit.repair"
    assert records[-2]["data"]["discarded_bytes"] == len(b'{"action":"half-writ')
    assert rec["seq"] == 12
    assert verify(filled, keyring).ok


def test_spool_when_trail_unwritable_then_drained(tmp_path, keyring):
    trail_dir = tmp_path / "trail"
    spool = tmp_path / "spool"
    trail = AuditTrail(trail_dir, keyring, spool_dir=spool)
    trail.append({"action": "first"})
    trail.close()
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    bad = AuditTrail(blocked, keyring, spool_dir=spool)
    record, error = bad.append_or_spool({"action": "lost?", "target": "web1"})
    assert record is None and isinstance(error, OSError)
    assert len(list(spool.glob("*.json"))) == 1
    assert stat.S_IMODE(next(spool.glob("*.json")).stat().st_mode) == 0o600
    with AuditTrail(trail_dir, keyring, spool_dir=spool) as trail:
        trail.append({"action": "next"})
    actions = [r["action"] for r in iter_records(trail_dir)]
    assert actions == ["first", "lost?", "next"]
    assert list(spool.glob("*.json")) == []
    assert "spooled_at" in list(iter_records(trail_dir))[1]["data"]
    assert verify(trail_dir, keyring).ok


def test_closed_trail_refuses(trail_dir, keyring):
    trail = AuditTrail(trail_dir, keyring)
    trail.close()
    with pytest.raises(ConfigError):
        trail.append({"action": "x"})
