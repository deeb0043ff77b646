"""The outbox and forwarder with an in-memory sink: no loss, ordering, backoff, cursors."""

from __future__ import annotations

import pytest

from selfheal.audit import AuditTrail, list_segments
from selfheal.audit.forward import (
    ElasticsearchSink,
    Forwarder,
    LokiSink,
    Outbox,
    SplunkHecSink,
    SyslogSink,
    sink_from_url,
)
from selfheal.errors import ConfigError


class FakeSink:
    name = "fake"

    def __init__(self):
        self.got: list[int] = []
        self.down = False
        self.calls = 0

    def send(self, batch):
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError("down")
        self.got.extend(i.seq for i in batch)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _fill(trail_dir, keyring, n, start=0):
    with AuditTrail(trail_dir, keyring, rotate_bytes=2000) as t:
        for i in range(n):
            t.append({"action": "x", "data": {"i": start + i}})


def test_sends_everything_in_order_once(tmp_path, trail_dir, keyring):
    _fill(trail_dir, keyring, 30)
    assert len(list_segments(trail_dir)) > 2
    sink, outbox = FakeSink(), Outbox(tmp_path / "o.sqlite")
    fwd = Forwarder(trail_dir, sink, outbox, batch_size=7)
    assert fwd.flush().sent == 30
    _fill(trail_dir, keyring, 5, 30)
    assert fwd.flush().sent == 5
    assert fwd.flush().sent == 0
    assert sink.got == list(range(1, 36))


def test_backoff_grows_and_caps_and_nothing_is_lost(tmp_path, trail_dir, keyring):
    _fill(trail_dir, keyring, 10)
    sink, outbox, clock = FakeSink(), Outbox(tmp_path / "o.sqlite"), Clock()
    fwd = Forwarder(trail_dir, sink, outbox, backoff_base=2, backoff_max=10, clock=clock)
    sink.down = True
    delays = []
    for _ in range(5):
        result = fwd.flush()
        assert result.sent == 0 and result.pending == 10
        delays.append(result.retry_at - clock.now)
        # inside the backoff window no send is attempted
        calls = sink.calls
        assert fwd.flush().error == "backing off" and sink.calls == calls
        clock.now = result.retry_at
    assert delays == [2, 4, 8, 10, 10]
    sink.down = False
    assert fwd.flush().sent == 10
    assert outbox.state("fake")["attempts"] == 0
    assert sink.got == list(range(1, 11))


def test_partial_progress_is_kept(tmp_path, trail_dir, keyring):
    _fill(trail_dir, keyring, 10)

    class Flaky(FakeSink):
        def send(self, batch):
            if self.calls == 1:
                self.calls += 1
                raise TimeoutError("mid-way")
            super().send(batch)

    sink, outbox = Flaky(), Outbox(tmp_path / "o.sqlite")
    fwd = Forwarder(trail_dir, sink, outbox, batch_size=4)
    first = fwd.flush()
    assert first.sent == 4 and first.pending == 6
    assert fwd.flush(force=True).sent == 6
    assert sink.got == list(range(1, 11))


def test_incomplete_last_line_waits(tmp_path, trail_dir, keyring):
    _fill(trail_dir, keyring, 3)
    with open(list_segments(trail_dir)[-1], "ab") as f:
        f.write(b'{"seq":4')
    outbox = Outbox(tmp_path / "o.sqlite")
    assert outbox.enqueue_from_trail(trail_dir, "s") == 3


def test_sinks_from_urls(monkeypatch):
    assert isinstance(sink_from_url("syslog+tcp://127.0.0.1:514"), SyslogSink)
    assert isinstance(sink_from_url("elasticsearch+http://es:9200/idx"), ElasticsearchSink)
    assert sink_from_url("elasticsearch+http://es:9200/idx").index == "idx"
    assert isinstance(sink_from_url("loki+https://loki:3100"), LokiSink)
    monkeypatch.setenv("SELFHEAL_SPLUNK_HEC_TOKEN", "t")
    assert isinstance(sink_from_url("splunk+https://hec:8088"), SplunkHecSink)
    monkeypatch.delenv("SELFHEAL_SPLUNK_HEC_TOKEN")
    for bad in ("splunk+https://hec:8088", "ftp://x", "syslog+udp://h:1", "nope+http://h"):
        with pytest.raises(ConfigError):
            sink_from_url(bad)
