"""Forward the audit trail to collectors through a durable outbox.

The outbox is a SQLite database (WAL, ``synchronous=FULL``). `Forwarder.flush` first copies
records the trail has gained since the last flush into the outbox (a per-sink cursor), then
sends what is pending, oldest first, in batches; a batch is marked sent only after the
collector acknowledged it. A failed send leaves everything pending and backs off
exponentially (``backoff_base * 2**attempts``, capped at ``backoff_max`` seconds); nothing
is dropped while the collector is down. Every message carries the record's seq and hash, so
a collector (or whoever reads it) can drop the duplicates an at-least-once retry may make.

Sinks:

* `SyslogSink` — RFC 5424 messages over TCP with octet-counting framing (RFC 6587),
  ``[selfheal@32473 seq="..." hash="..."]`` structured data, the record line as MSG. A batch
  counts as delivered when the collector has read the whole stream (half-close, then the
  collector's EOF), not merely when the kernel took the bytes.
* `ElasticsearchSink` — ``POST /_bulk`` NDJSON; ``create`` actions with ``_id`` = the record
  hash, so a re-sent record is a 409 conflict, not a duplicate document.
* `SplunkHecSink` — ``POST /services/collector/event`` with ``Authorization: Splunk <token>``,
  one event object per record.
* `LokiSink` — ``POST /loki/api/v1/push``: one stream with fixed labels, values
  ``[<ns timestamp string>, <record line>]``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from selfheal.audit.record import record_hash
from selfheal.audit.trail import list_segments, segment_first_seq
from selfheal.errors import ConfigError

SD_ID = "selfheal@32473"  # enterprise number 32473 is reserved for documentation (RFC 5612)


class SendError(Exception):
    """The collector did not take the batch."""


@dataclass(frozen=True)
class Item:
    seq: int
    hash: str
    line: bytes  # the record's canonical line, no newline

    @property
    def record(self) -> dict:
        return json.loads(self.line)


@dataclass
class FlushResult:
    sent: int
    pending: int
    error: str | None = None
    retry_at: float | None = None


# -- the outbox --------------------------------------------------------------------------


class Outbox:
    """Durable per-sink queue of records to send."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS outbox (
                sink TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
                line BLOB NOT NULL, sent_at REAL, PRIMARY KEY (sink, seq));
            CREATE TABLE IF NOT EXISTS cursor (
                sink TEXT PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,
                last_error TEXT);
            CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, sent_at, seq);
            """
        )

    def close(self) -> None:
        self.db.close()

    def _cursor(self, sink: str) -> tuple[int, int, float, str | None]:
        row = self.db.execute(
            "SELECT last_seq, attempts, next_try, last_error FROM cursor WHERE sink=?", (sink,)
        ).fetchone()
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO cursor (sink) VALUES (?)", (sink,))
            return 0, 0, 0.0, None
        return row

    def enqueue(self, sink: str, items: Sequence[Item]) -> int:
        if not items:
            return 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            last = self._cursor(sink)[0]
            rows = [(sink, i.seq, i.hash, i.line) for i in items if i.seq > last]
            self.db.executemany(
                "INSERT OR IGNORE INTO outbox (sink, seq, hash, line) VALUES (?,?,?,?)", rows
            )
            if rows:
                self.db.execute(
                    "UPDATE cursor SET last_seq=? WHERE sink=?", (max(r[1] for r in rows), sink)
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(rows)

    def enqueue_from_trail(self, trail: str | os.PathLike, sink: str) -> int:
        """Copy the trail's records after this sink's cursor into the outbox."""
        last = self._cursor(sink)[0]
        segments = list_segments(trail)
        total = 0
        for i, seg in enumerate(segments):
            nxt = segment_first_seq(segments[i + 1]) if i + 1 < len(segments) else None
            if nxt is not None and nxt <= last + 1:
                continue  # every record of this segment is already queued
            batch: list[Item] = []
            with open(seg, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # an append in progress (or torn): next time
                    raw = line[:-1]
                    try:
                        seq = int(json.loads(raw)["seq"])
                    except (ValueError, KeyError, TypeError):
                        continue
                    if seq > last:
                        batch.append(Item(seq, record_hash(raw), raw))
                    if len(batch) >= 5000:
                        total += self.enqueue(sink, batch)
                        batch = []
            total += self.enqueue(sink, batch)
        return total

    def pending(self, sink: str, limit: int = 500) -> list[Item]:
        rows = self.db.execute(
            "SELECT seq, hash, line FROM outbox WHERE sink=? AND sent_at IS NULL "
            "ORDER BY seq LIMIT ?",
            (sink, limit),
        ).fetchall()
        return [Item(int(s), h, bytes(line)) for s, h, line in rows]

    def pending_count(self, sink: str) -> int:
        return self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sink=? AND sent_at IS NULL", (sink,)
        ).fetchone()[0]

    def mark_sent(self, sink: str, items: Sequence[Item], now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(
            "UPDATE outbox SET sent_at=? WHERE sink=? AND seq=?",
            [(now, sink, i.seq) for i in items],
        )
        self.db.execute(
            "UPDATE cursor SET attempts=0, next_try=0, last_error=NULL WHERE sink=?", (sink,)
        )
        self.db.execute("COMMIT")

    def note_failure(self, sink: str, error: str, base: float, cap: float, now: float) -> float:
        """Record a failed send; returns when the next try is due."""
        attempts = self._cursor(sink)[1] + 1
        delay = min(cap, base * (2 ** (attempts - 1)))
        self.db.execute(
            "UPDATE cursor SET attempts=?, next_try=?, last_error=? WHERE sink=?",
            (attempts, now + delay, error[:500], sink),
        )
        return now + delay

    def state(self, sink: str) -> dict:
        last, attempts, next_try, error = self._cursor(sink)
        return {
            "last_enqueued_seq": last,
            "attempts": attempts,
            "next_try": next_try,
            "last_error": error,
            "pending": self.pending_count(sink),
        }

    def prune(self, sink: str, older_than: float) -> int:
        """Forget records sent before `older_than` (epoch seconds)."""
        cur = self.db.execute(
            "DELETE FROM outbox WHERE sink=? AND sent_at IS NOT NULL AND sent_at < ?",
            (sink, older_than),
        )
        return cur.rowcount


class Forwarder:
    """Trail -> outbox -> sink, with exponential backoff between failed sends."""

    def __init__(
        self,
        trail: str | os.PathLike,
        sink,
        outbox: Outbox,
        batch_size: int = 500,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        keep_sent_seconds: float = 7 * 86400,
        clock=time.time,
    ):
        self.trail = Path(trail)
        self.sink = sink
        self.outbox = outbox
        self.batch_size = batch_size
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.keep_sent_seconds = keep_sent_seconds
        self.clock = clock

    def flush(self, force: bool = False) -> FlushResult:
        """Queue new records and send everything pending (unless backing off)."""
        name = self.sink.name
        self.outbox.enqueue_from_trail(self.trail, name)
        state = self.outbox.state(name)
        now = self.clock()
        if not force and state["next_try"] > now:
            return FlushResult(0, state["pending"], "backing off", state["next_try"])
        sent = 0
        while True:
            batch = self.outbox.pending(name, self.batch_size)
            if not batch:
                break
            try:
                self.sink.send(batch)
            except Exception as exc:  # any failure: keep the batch, back off
                error = f"{exc.__class__.__name__}: {exc}"
                retry = self.outbox.note_failure(
                    name, error, self.backoff_base, self.backoff_max, self.clock()
                )
                return FlushResult(sent, self.outbox.pending_count(name), error, retry)
            self.outbox.mark_sent(name, batch, self.clock())
            sent += len(batch)
        self.outbox.prune(name, self.clock() - self.keep_sent_seconds)
        return FlushResult(sent, 0)

    def run(self, stop, interval: float = 2.0) -> None:
        """Flush until `stop` (a threading.Event) is set."""
        while not stop.is_set():
            result = self.flush()
            wait = interval
            if result.retry_at is not None:
                wait = max(0.05, min(interval * 10, result.retry_at - self.clock()))
            stop.wait(wait)


# -- sinks -------------------------------------------------------------------------------


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


class SyslogSink:
    """RFC 5424 over TCP, octet-counted (RFC 6587 section 3.4.1)."""

    def __init__(
        self,
        host: str,
        port: int,
        app_name: str = "selfheal-audit",
        hostname: str | None = None,
        facility: int = 13,  # log audit
        severity: int = 6,  # informational
        timeout: float = 10.0,
    ):
        self.host, self.port = host, int(port)
        self.name = f"syslog+tcp://{host}:{port}"
        self.app_name = app_name
        self.hostname = (hostname or socket.gethostname() or "-").split(".")[0][:255]
        self.pri = facility * 8 + severity
        self.timeout = timeout

    def format(self, item: Item) -> bytes:
        rec = item.record
        ts = str(rec.get("ts") or "-")
        sd = f'[{SD_ID} seq="{item.seq}" hash="{_sd_escape(item.hash)}"]'
        header = f"<{self.pri}>1 {ts} {self.hostname} {self.app_name} - audit {sd} "
        return header.encode("utf-8") + item.line

    def frame(self, item: Item) -> bytes:
        msg = self.format(item)
        return str(len(msg)).encode() + b" " + msg

    def send(self, batch: Sequence[Item]) -> None:
        payload = b"".join(self.frame(i) for i in batch)
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                # the collector closes its side once it has read everything we sent
                while s.recv(4096):
                    pass
        except OSError as exc:
            raise SendError(f"syslog {self.host}:{self.port}: {exc}") from exc


class _HttpSink:
    def __init__(self, url: str, timeout: float = 10.0, headers: dict | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})

    def _post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.url + path,
            data=body,
            method="POST",
            headers={"Content-Type": content_type, **self.headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            raise SendError(f"{self.url}{path}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SendError(f"{self.url}{path}: {exc}") from exc


class ElasticsearchSink(_HttpSink):
    def __init__(self, url: str, index: str = "selfheal-audit", api_key: str | None = None, **kw):
        headers = {"Authorization": f"ApiKey {api_key}"} if api_key else {}
        super().__init__(url, headers=headers, **kw)
        self.index = index
        self.name = f"elasticsearch+{self.url}/{index}"

    def body(self, batch: Sequence[Item]) -> bytes:
        out = []
        for item in batch:
            action = {"create": {"_index": self.index, "_id": item.hash}}
            out.append(json.dumps(action, separators=(",", ":")).encode())
            out.append(item.line)
        return b"\n".join(out) + b"\n"

    def send(self, batch: Sequence[Item]) -> None:
        _status, raw = self._post("/_bulk", self.body(batch), "application/x-ndjson")
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise SendError("Elasticsearch _bulk: response is not JSON") from exc
        if doc.get("errors"):
            for entry in doc.get("items", []):
                result = next(iter(entry.values()), {})
                status = result.get("status", 0)
                if status not in (200, 201, 409):  # 409: this _id (hash) is already indexed
                    raise SendError(f"Elasticsearch _bulk item failed: {result}")


class SplunkHecSink(_HttpSink):
    def __init__(
        self,
        url: str,
        token: str,
        index: str | None = None,
        source: str = "selfheal-audit",
        sourcetype: str = "selfheal:audit",
        host: str | None = None,
        **kw,
    ):
        if not token:
            raise ConfigError("the Splunk HEC sink needs a token")
        super().__init__(url, headers={"Authorization": f"Splunk {token}"}, **kw)
        self.index, self.source, self.sourcetype = index, source, sourcetype
        self.host = host or socket.gethostname()
        self.name = f"splunk+{self.url}"

    def body(self, batch: Sequence[Item]) -> bytes:
        out = []
        for item in batch:
            rec = item.record
            event = {
                "time": round(_epoch(rec.get("ts")), 6),
                "host": self.host,
                "source": self.source,
                "sourcetype": self.sourcetype,
                "event": rec,
                "fields": {"seq": item.seq, "hash": item.hash},
            }
            if self.index:
                event["index"] = self.index
            out.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())
        return b"\n".join(out)

    def send(self, batch: Sequence[Item]) -> None:
        _status, raw = self._post("/services/collector/event", self.body(batch), "application/json")
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise SendError("Splunk HEC: response is not JSON") from exc
        if doc.get("code", 0) != 0:
            raise SendError(f"Splunk HEC: {doc}")


class LokiSink(_HttpSink):
    def __init__(self, url: str, labels: dict | None = None, tenant: str | None = None, **kw):
        headers = {"X-Scope-OrgID": tenant} if tenant else {}
        super().__init__(url, headers=headers, **kw)
        self.labels = labels or {"job": "selfheal-audit", "source": socket.gethostname()}
        self.name = f"loki+{self.url}"

    def body(self, batch: Sequence[Item]) -> bytes:
        values = [
            [str(_epoch_ns(item.record.get("ts"))), item.line.decode("utf-8")] for item in batch
        ]
        doc = {"streams": [{"stream": self.labels, "values": values}]}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    def send(self, batch: Sequence[Item]) -> None:
        self._post("/loki/api/v1/push", self.body(batch), "application/json")


def _epoch(ts) -> float:
    return _epoch_ns(ts) / 1e9


def _epoch_ns(ts) -> int:
    import calendar

    base, _, frac = str(ts or "").rstrip("Z").partition(".")
    try:
        secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return time.time_ns()
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def sink_from_url(url: str):
    """A sink from ``syslog+tcp://``, ``elasticsearch+http(s)://``, ``splunk+http(s)://``
    or ``loki+http(s)://`` URLs (Splunk token from ``$SELFHEAL_SPLUNK_HEC_TOKEN``,
    Elasticsearch API key from ``$SELFHEAL_ES_API_KEY``)."""
    kind, sep, rest = url.partition("+")
    if not sep:
        raise ConfigError(f"unknown collector URL {url!r}")
    parsed = urllib.parse.urlsplit(rest)
    if kind == "syslog" and parsed.scheme == "tcp" and parsed.hostname and parsed.port:
        return SyslogSink(parsed.hostname, parsed.port)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"unknown collector URL {url!r}")
    base = f"{parsed.scheme}://{parsed.netloc}"
    if kind == "elasticsearch":
        index = parsed.path.strip("/") or "selfheal-audit"
        return ElasticsearchSink(base, index, api_key=os.environ.get("SELFHEAL_ES_API_KEY"))
    if kind == "splunk":
        return SplunkHecSink(base, os.environ.get("SELFHEAL_SPLUNK_HEC_TOKEN", ""))
    if kind == "loki":
        return LokiSink(base)
    raise ConfigError(f"unknown collector URL {url!r}")
