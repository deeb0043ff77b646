"""`selfheal audit verify|show|checkpoint|keygen|forward`: output and exit codes."""

from __future__ import annotations

import json
import socket

import pytest

from selfheal.audit import AuditTrail, Keyring, list_segments
from selfheal.cli import main

KEYS = "k1:" + "61" * 32  # the fixture keyring's secret, b"a" * 32


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("SELFHEAL_AUDIT_KEYS", KEYS)


@pytest.fixture
def trail(trail_dir, keyring):
    with AuditTrail(trail_dir, keyring) as t:
        t.append({"action": "play.start", "target": "web", "incident_id": "INC-1", "actor": "bob"})
        t.append(
            {
                "action": "task",
                "target": "web1",
                "outcome": "changed",
                "incident_id": "INC-1",
                "actor": {"user": "bob", "awx_job_id": 77},
                "data": {"task": "restart nginx"},
            }
        )
        t.append(
            {
                "action": "task",
                "target": "web2",
                "outcome": "ok",
                "incident_id": "INC-2",
                "actor": "alice",
                "data": {"task": "check"},
            }
        )
    return trail_dir


def test_verify_intact(trail, capsys):
    assert main(["audit", "verify", str(trail)]) == 0
    out = capsys.readouterr().out
    assert "INTACT" in out and "3 records" in out and "k1 (3)" in out


def test_verify_json(trail, capsys):
    assert main(["audit", "verify", str(trail), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3


def test_verify_tampered_prints_first_bad_record(trail, capsys):
    seg = list_segments(trail)[0]
    seg.write_bytes(seg.read_bytes().replace(b'"outcome":"ok"', b'"outcome":"failed"'))
    assert main(["audit", "verify", str(trail)]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED" in out and "line 3 (seq 3)" in out and "HMAC mismatch" in out
    assert '"outcome":"failed"' in out


def test_verify_with_checkpoint(trail, tmp_path, capsys):
    cp = tmp_path / "cp.json"
    assert main(["audit", "checkpoint", str(trail), "-o", str(cp)]) == 0
    assert json.loads(cp.read_text())["seq"] == 3
    assert main(["audit", "verify", str(trail), "--checkpoint", str(cp)]) == 0
    seg = list_segments(trail)[0]
    seg.write_bytes(b"".join(seg.read_bytes().splitlines(keepends=True)[:-1]))
    assert main(["audit", "verify", str(trail), "--checkpoint", str(cp)]) == 1
    assert "deleted from the tail" in capsys.readouterr().out


def test_verify_usage_errors(trail, tmp_path, monkeypatch, capsys):
    assert main(["audit", "verify", str(tmp_path / "missing")]) == 2
    assert main(["audit", "verify", str(trail), "--checkpoint", str(tmp_path / "no.json")]) == 2
    monkeypatch.delenv("SELFHEAL_AUDIT_KEYS")
    assert main(["audit", "verify", str(trail), "--key-file", str(tmp_path / "nokey")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify", "--bogus"])
    assert exc.value.code == 2


def test_show_table_and_filters(trail, capsys):
    assert main(["audit", "show", str(trail)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["SEQ", "TIME", "(UTC)", "ACTOR"]
    assert len(out) == 4
    assert main(["audit", "show", str(trail), "--incident", "INC-1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["audit", "show", str(trail), "--actor", "77", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in rows] == [2]
    assert main(["audit", "show", str(trail), "--target", "web2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["actor"]["user"] == "alice"
    assert (
        main(["audit", "show", str(trail), "--since", "2000-01-01", "--until", "2000-01-02"]) == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["audit", "show", str(trail), "--since", "yesterday"]) == 2


def test_keygen_creates_then_rotates(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SELFHEAL_AUDIT_KEYS")
    path = tmp_path / "keys.json"
    assert main(["audit", "keygen", "--key-file", str(path), "--key-id", "one"]) == 0
    assert main(["audit", "keygen", "--key-file", str(path), "--key-id", "two"]) == 0
    ring = Keyring.load(path, env={})
    assert ring.active == "two" and set(ring.keys) == {"one", "two"}
    assert "created" in capsys.readouterr().out


def test_forward_to_a_dead_collector_fails_and_keeps(trail, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outbox = tmp_path / "ob.sqlite"
    code = main(
        [
            "audit",
            "forward",
            str(trail),
            "--to",
            f"syslog+tcp://127.0.0.1:{port}",
            "--outbox",
            str(outbox),
        ]
    )
    assert code == 3
    assert "0 sent, 3 pending" in capsys.readouterr().out
