"""Chunked verification in worker processes reports exactly what a sequential run does,
including tampering that falls on a chunk boundary."""

from __future__ import annotations

import json

import pytest

from selfheal.audit import AuditTrail, canonical, list_segments, make_checkpoint, verify


@pytest.fixture
def big(trail_dir, keyring):
    with AuditTrail(trail_dir, keyring, rotate_bytes=30_000, commit_every=100) as t:
        for i in range(300):
            t.append({"action": "task", "target": f"web{i % 9}", "outcome": "ok", "data": {"i": i}})
    return trail_dir


def _lines(seg):
    return seg.read_bytes().splitlines(keepends=True)


def _edit(lines, i):
    lines[i] = lines[i].replace(b'"outcome":"ok"', b'"outcome":"no"')


def _delete(lines, i):
    del lines[i]


def _swap(lines, i):
    lines[i], lines[i + 1] = lines[i + 1], lines[i]


def _reseq(lines, i):
    rec = json.loads(lines[i])
    rec["seq"] += 1
    lines[i] = canonical(rec) + b"\n"


def _garbage(lines, i):
    lines.insert(i, b"{}\n")


def _truncate(lines, i):
    del lines[i + 1 :]
    lines[i] = lines[i][:-20]


TAMPERS = [_edit, _delete, _swap, _reseq, _garbage, _truncate]


def _compare(trail, keyring, checkpoint=None):
    seq = verify(trail, keyring, checkpoint, workers=1)
    par = verify(trail, keyring, checkpoint, workers=2, chunk_bytes=2500)
    assert par.ok == seq.ok
    assert par.problem == seq.problem
    assert (par.records, par.bytes, par.last_seq, par.last_hash, par.keys_used) == (
        seq.records,
        seq.bytes,
        seq.last_seq,
        seq.last_hash,
        seq.keys_used,
    ) or not seq.ok
    return par


def test_intact_trail_same_report(big, keyring):
    report = _compare(big, keyring)
    assert report.ok and report.records == 300 and report.segments == len(list_segments(big))


@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("where", [1, 9, 10, 11, 25])
def test_tampering_same_first_bad_record(big, keyring, tamper, where):
    seg = list_segments(big)[1]
    lines = _lines(seg)
    tamper(lines, where)
    seg.write_bytes(b"".join(lines))
    report = _compare(big, keyring)
    assert not report.ok


def test_dropped_tail_same_with_checkpoint(big, keyring):
    checkpoint = make_checkpoint(big)
    seg = list_segments(big)[-1]
    seg.write_bytes(b"".join(_lines(seg)[:-3]))
    report = _compare(big, keyring, checkpoint)
    assert not report.ok and "tail" in report.problem.reason
