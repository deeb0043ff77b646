"""Tamper with the trail in every way the issue names; verify catches each one."""

from __future__ import annotations

import json

import pytest

from selfheal.audit import (
    AuditTrail,
    Keyring,
    canonical,
    list_segments,
    load_checkpoint,
    make_checkpoint,
    record_hash,
    verify,
)
from selfheal.audit.record import mac
from selfheal.errors import ConfigError


def _all_lines(trail_dir):
    """[(segment, [lines])] with newlines kept."""
    return [(seg, seg.read_bytes().splitlines(keepends=True)) for seg in list_segments(trail_dir)]


def _segment_with_lines(trail_dir, minimum=3):
    for seg, lines in _all_lines(trail_dir):
        if len(lines) >= minimum:
            return seg, lines
    raise AssertionError("no segment long enough")


def test_untouched_trail_verifies(filled, keyring):
    report = verify(filled, keyring)
    assert report.ok and report.problem is None
    assert report.records == 10 and report.last_seq == 10
    assert report.keys_used == {"k1": 10}


def test_empty_trail_verifies(tmp_path, keyring):
    (tmp_path / "t").mkdir()
    assert verify(tmp_path / "t", keyring).ok


def test_missing_trail_is_a_usage_error(tmp_path, keyring):
    with pytest.raises(ConfigError):
        verify(tmp_path / "nope", keyring)


def test_edited_field_is_caught(filled, keyring):
    seg, lines = _segment_with_lines(filled)
    lines[1] = lines[1].replace(b'"outcome":"ok"', b'"outcome":"failed"')
    seg.write_bytes(b"".join(lines))
    report = verify(filled, keyring)
    assert not report.ok
    assert "HMAC mismatch" in report.problem.reason
    assert report.problem.line == 2 and report.problem.segment == seg.name


def test_edited_field_with_rehashed_chain_is_caught(filled, keyring):
    """Editing and re-serialising canonically (without the key) still fails the HMAC."""
    seg, lines = _segment_with_lines(filled)
    rec = json.loads(lines[0])
    rec["target"] = "elsewhere"
    lines[0] = canonical(rec) + b"\n"
    seg.write_bytes(b"".join(lines))
    assert "HMAC mismatch" in verify(filled, keyring).problem.reason


def test_deleted_middle_line_is_caught(filled, keyring):
    seg, lines = _segment_with_lines(filled)
    seq = json.loads(lines[1])["seq"]
    del lines[1]
    seg.write_bytes(b"".join(lines))
    report = verify(filled, keyring)
    assert not report.ok
    assert "sequence gap" in report.problem.reason
    assert report.problem.seq == seq + 1


def test_swapped_lines_are_caught(filled, keyring):
    seg, lines = _segment_with_lines(filled)
    lines[0], lines[1] = lines[1], lines[0]
    seg.write_bytes(b"".join(lines))
    report = verify(filled, keyring)
    assert not report.ok
    assert "segment should start" in report.problem.reason or "gap" in report.problem.reason


def test_swapped_lines_inside_a_segment_are_caught(filled, keyring):
    seg, lines = _segment_with_lines(filled)
    lines[1], lines[2] = lines[2], lines[1]
    seg.write_bytes(b"".join(lines))
    report = verify(filled, keyring)
    assert not report.ok and "sequence gap" in report.problem.reason


def test_resequenced_deletion_is_caught(filled, keyring):
    """Deleting a line and renumbering the rest breaks the HMACs/the chain."""
    seg, lines = _segment_with_lines(filled)
    del lines[1]
    rec = json.loads(lines[1])
    rec["seq"] -= 1
    lines[1] = canonical(rec) + b"\n"
    seg.write_bytes(b"".join(lines))
    report = verify(filled, keyring)
    assert not report.ok


def test_truncated_last_line_is_caught(filled, keyring):
    seg = list_segments(filled)[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[:-40])
    report = verify(filled, keyring)
    assert not report.ok and report.problem.reason.startswith("truncated")


def test_truncated_middle_segment_is_caught(filled, keyring):
    seg = list_segments(filled)[0]
    seg.write_bytes(seg.read_bytes()[:-10])
    assert not verify(filled, keyring).ok


def test_deleted_segment_is_caught(filled, keyring):
    segments = list_segments(filled)
    segments[1].unlink()
    report = verify(filled, keyring)
    assert not report.ok and "gap" in report.problem.reason


def test_deleted_first_segment_is_caught(filled, keyring):
    list_segments(filled)[0].unlink()
    report = verify(filled, keyring)
    assert not report.ok and "gap" in report.problem.reason


def test_dropped_last_record_is_caught_by_checkpoint(filled, keyring, tmp_path):
    checkpoint = make_checkpoint(filled)
    assert checkpoint["seq"] == 10
    assert verify(filled, keyring, checkpoint).ok
    seg, lines = _all_lines(filled)[-1]
    seg.write_bytes(b"".join(lines[:-1]))
    assert verify(filled, keyring).ok  # without the checkpoint a clean cut is invisible
    report = verify(filled, keyring, checkpoint)
    assert not report.ok and "deleted from the tail" in report.problem.reason


def test_dropped_tail_then_new_records_is_caught_by_checkpoint(filled, keyring):
    checkpoint = make_checkpoint(filled)
    seg, lines = _all_lines(filled)[-1]
    seg.write_bytes(b"".join(lines[:-1]))
    with AuditTrail(filled, keyring) as trail:
        trail.append({"action": "forged replacement"})
    report = verify(filled, keyring, checkpoint)
    assert not report.ok and "checkpoint" in report.problem.reason


def test_checkpoint_file_round_trip(filled, tmp_path):
    path = tmp_path / "cp.json"
    path.write_text(json.dumps(make_checkpoint(filled)))
    assert load_checkpoint(path)["seq"] == 10
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError):
        load_checkpoint(tmp_path / "bad.json")


def test_replaced_key_is_caught(filled, keyring):
    """An attacker re-seals a whole segment with a key of their own under the same id."""
    seg, lines = _segment_with_lines(filled)
    evil = b"e" * 32
    prev = json.loads(lines[0])["prev"]
    forged = []
    for line in lines:
        rec = json.loads(line)
        rec["outcome"] = "ok-forged"
        rec["prev"] = prev
        rec.pop("hmac")
        rec["hmac"] = mac(evil, canonical(rec))
        raw = canonical(rec)
        prev = record_hash(raw)
        forged.append(raw + b"\n")
    seg.write_bytes(b"".join(forged))
    report = verify(filled, keyring)
    assert not report.ok and "HMAC mismatch" in report.problem.reason


def test_unknown_key_id_is_caught(filled, keyring):
    seg, lines = _segment_with_lines(filled)
    rec = json.loads(lines[0])
    rec["kid"] = "attacker"
    rec.pop("hmac")
    rec["hmac"] = mac(b"e" * 32, canonical(rec))
    lines[0] = canonical(rec) + b"\n"
    seg.write_bytes(b"".join(lines))
    report = verify(filled, keyring)
    assert not report.ok and "unknown key id" in report.problem.reason


def test_wrong_keyring_fails(filled):
    other = Keyring({"k1": b"b" * 32}, "k1")
    assert not verify(filled, other).ok


def test_rotated_key_keeps_old_records_verifiable(trail_dir):
    ring = Keyring({"old": b"o" * 32}, "old")
    with AuditTrail(trail_dir, ring) as trail:
        trail.append({"action": "before rotation"})
    ring.rotate("new")
    with AuditTrail(trail_dir, ring) as trail:
        trail.append({"action": "after rotation"})
    report = verify(trail_dir, ring)
    assert report.ok and report.keys_used == {"old": 1, "new": 1}
    # the old key removed from the keyring: its records no longer verify
    del ring.keys["old"]
    assert "unknown key id" in verify(trail_dir, ring).problem.reason


def test_garbage_line_is_caught(filled, keyring):
    seg, lines = _segment_with_lines(filled)
    lines.insert(1, b"hello\n")
    seg.write_bytes(b"".join(lines))
    assert "not a record" in verify(filled, keyring).problem.reason


def test_single_segment_file_verifies(filled, keyring):
    seg = list_segments(filled)[1]
    assert verify(seg, keyring).ok
