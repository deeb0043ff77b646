"""The syslog forwarder against a real rsyslog on loopback (imtcp on an ephemeral port,
omfile to a temp file): RFC 5424 messages with octet-counting framing arrive intact; with
the collector stopped nothing is lost — the outbox keeps the records, backs off, and after
the collector is restarted a flush delivers every record exactly once."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO, run_playbook

from selfheal.audit import AuditTrail, Keyring, iter_records, record_hash
from selfheal.audit.forward import Forwarder, Outbox, SyslogSink, sink_from_url

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None
)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        RSYSLOGD is None, reason="rsyslog is not installed (apt-get install rsyslog)"
    ),
]

KEYS = "k1:" + "cd" * 32
PLAYBOOK = REPO / "tests/integration/playbooks/audit_tasks.yml"
LINE = re.compile(r'^\[selfheal@32473 seq="(\d+)" hash="([0-9a-f]{64})"\] ?(.*)$')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rsyslog:
    """rsyslogd -n with a test config: imtcp on 127.0.0.1:port -> omfile."""

    def __init__(self, base: Path, port: int):
        self.base, self.port = base, port
        self.out = base / "received.log"
        self.pidfile = base / "rsyslogd.pid"
        self.conf = base / "rsyslog.conf"
        (base / "work").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"""
global(workDirectory="{base / "work"}" maxMessageSize="256k")
module(load="imtcp")
template(name="audit" type="list") {{
  property(name="structured-data")
  constant(value=" ")
  property(name="msg")
  constant(value="\\n")
}}
ruleset(name="audit") {{
  action(type="omfile" file="{self.out}" template="audit" flushOnTXEnd="on")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="audit")
"""
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {self.proc.stdout.read().decode()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("rsyslogd did not listen in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def received(self) -> list[tuple[int, str, str]]:
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text(encoding="utf-8").splitlines():
            m = LINE.match(line)
            assert m, f"unexpected line in the collector's file: {line[:200]}"
            out.append((int(m.group(1)), m.group(2), m.group(3)))
        return out


@pytest.fixture
def rsyslog(tmp_path):
    daemon = Rsyslog(tmp_path / "rsyslog", _free_port())
    daemon.start()
    yield daemon
    daemon.stop()


def _keyring() -> Keyring:
    return Keyring.from_env_value(KEYS)


def _play(tmp_path: Path, trail: Path, run_id: str):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"[audit_hosts]\nh1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    proc = run_playbook(
        PLAYBOOK,
        "-i",
        str(inventory),
        extra_vars={"audit_scratch": str(scratch)},
        env={
            "ANSIBLE_CALLBACKS_ENABLED": "selfheal.core.audit",
            "SELFHEAL_AUDIT_TRAIL": str(trail),
            "SELFHEAL_AUDIT_KEYS": KEYS,
            "SELFHEAL_RUN_ID": run_id,
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_records_arrive_as_rfc5424_octet_counted(tmp_path, rsyslog):
    trail = tmp_path / "trail"
    with AuditTrail(trail, _keyring()) as t:
        for i in range(20):
            t.append({"action": "task", "target": f"web{i}", "data": {"msg": 'ünïcode ] " \\'}})
    sink = SyslogSink("127.0.0.1", rsyslog.port, hostname="ctl")
    outbox = Outbox(tmp_path / "outbox.sqlite")
    result = Forwarder(trail, sink, outbox, batch_size=7).flush()
    assert result.sent == 20 and result.pending == 0 and result.error is None
    rsyslog.stop()
    got = rsyslog.received()
    records = list(iter_records(trail))
    assert [seq for seq, _h, _m in got] == list(range(1, 21))
    lines = sorted(trail.glob("audit-*.jsonl"))[0].read_bytes().splitlines()
    for (_seq, digest, msg), line in zip(got, lines, strict=True):
        assert digest == record_hash(line)
        assert msg.encode() == line  # the record line, byte for byte
    assert records[0]["data"]["msg"] == 'ünïcode ] " \\'


def test_frame_format():
    """RFC 6587 octet counting: 'MSG-LEN SP SYSLOG-MSG', MSG-LEN in bytes (UTF-8)."""
    from selfheal.audit.forward import Item

    line = b'{"action":"x","seq":3,"ts":"2026-01-02T03:04:05.000006Z","v":1}'
    item = Item(3, "ab" * 32, line)
    sink = SyslogSink("127.0.0.1", 1, hostname="ctl.example.org")
    msg = sink.format(item)
    assert msg.startswith(b"<110>1 2026-01-02T03:04:05.000006Z ctl selfheal-audit - audit ")
    assert f'[selfheal@32473 seq="3" hash="{"ab" * 32}"] '.encode() in msg
    assert sink.frame(item) == str(len(msg)).encode() + b" " + msg
    assert isinstance(sink_from_url("syslog+tcp://127.0.0.1:6514"), SyslogSink)


def test_collector_down_then_back_every_record_exactly_once(tmp_path, rsyslog):
    trail = tmp_path / "trail"
    outbox = Outbox(tmp_path / "outbox.sqlite")
    sink = SyslogSink("127.0.0.1", rsyslog.port)
    forwarder = Forwarder(trail, sink, outbox, batch_size=10, backoff_base=30)

    _play(tmp_path, trail, "before")
    first = forwarder.flush()
    assert first.error is None and first.sent > 0

    rsyslog.stop()
    _play(tmp_path, trail, "while-down")
    down = forwarder.flush()
    assert down.error is not None and down.sent == 0 and down.pending > 0
    assert down.retry_at is not None and down.retry_at > time.time() + 20
    again = forwarder.flush()  # within the backoff: not even tried
    assert again.error == "backing off" and again.pending == down.pending
    assert outbox.state(sink.name)["attempts"] == 1

    rsyslog.start()
    back = forwarder.flush(force=True)
    assert back.error is None and back.sent == down.pending and back.pending == 0
    assert forwarder.flush().sent == 0  # nothing left, nothing re-sent
    rsyslog.stop()

    got = rsyslog.received()
    trail_lines = [
        line
        for seg in sorted(trail.glob("audit-*.jsonl"))
        for line in seg.read_bytes().splitlines()
    ]
    seqs = [seq for seq, _h, _m in got]
    assert sorted(seqs) == list(range(1, len(trail_lines) + 1))  # all, and each once
    assert len(seqs) == len(set(seqs))
    for seq, digest, msg in got:
        assert digest == record_hash(trail_lines[seq - 1])
        assert msg.encode() == trail_lines[seq - 1]
    runs = {r["run_id"] for r in iter_records(trail)}
    assert runs == {"before", "while-down"}
    outbox.close()


def test_outbox_survives_a_restart_of_the_forwarder(tmp_path, rsyslog):
    trail = tmp_path / "trail"
    with AuditTrail(trail, _keyring()) as t:
        for i in range(5):
            t.append({"action": "x", "data": {"i": i}})
    rsyslog.stop()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    assert Forwarder(trail, SyslogSink("127.0.0.1", rsyslog.port), outbox).flush().pending == 5
    outbox.close()
    rsyslog.start()
    outbox = Outbox(tmp_path / "outbox.sqlite")  # a new process would open it like this
    result = Forwarder(trail, SyslogSink("127.0.0.1", rsyslog.port), outbox).flush(force=True)
    assert result.sent == 5
    rsyslog.stop()
    assert [s for s, _h, _m in rsyslog.received()] == [1, 2, 3, 4, 5]
    outbox.close()
