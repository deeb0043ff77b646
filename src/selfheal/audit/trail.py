"""The append side of the audit trail: safe concurrent appends, group commit, rotation.

A trail is a directory of segments ``audit-<first seq, 12 digits>.jsonl`` (names sort in
chain order) plus a lock file ``.lock``. Every append, from any process, takes an exclusive
``flock`` on the lock file, learns the last record's seq and hash (from a cache it checks
against the segment's size and the lock file's rotation counter, else from the segment's
tail), writes one whole line with a single ``write`` on an ``O_APPEND`` descriptor and
releases the lock. The append returns once the line is fsync'ed — or, with group commit,
once the batch it belongs to is (``commit_every`` records or ``commit_ms`` milliseconds,
whichever first; `flush` and `close` force it).

Rotation (``rotate_bytes`` / ``rotate_seconds``) starts a new segment named after the next
seq; its first record's ``prev`` is the last hash of the previous segment, so the chain runs
across files.

A torn line left at a segment's end by a writer that crashed mid-append (never reported
done) is cut off by the next appender, which records an ``audit.repair`` event saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from selfheal.audit.keyring import Keyring
from selfheal.audit.record import (
    GENESIS,
    normalise_event,
    record_hash,
    seal,
    utc_timestamp,
)
from selfheal.errors import ConfigError

SEGMENT_RE = re.compile(r"^audit-(\d{12})\.jsonl$")
LOCK_NAME = ".lock"
DEFAULT_ROTATE_BYTES = 256 * 1024 * 1024


def segment_name(first_seq: int) -> str:
    return f"audit-{first_seq:012d}.jsonl"


def list_segments(path: str | os.PathLike) -> list[Path]:
    """The trail's segments in chain order."""
    root = Path(path)
    if root.is_file():
        return [root]
    try:
        names = [n for n in os.listdir(root) if SEGMENT_RE.match(n)]
    except FileNotFoundError:
        return []
    return [root / n for n in sorted(names)]


def segment_first_seq(path: Path) -> int | None:
    m = SEGMENT_RE.match(path.name)
    return int(m.group(1)) if m else None


def read_last_line(fd: int, size: int) -> tuple[bytes | None, int]:
    """The last complete line of an open file of `size` bytes, and the end offset of the
    last newline (bytes after it are a torn write)."""
    if size == 0:
        return None, 0
    chunk = 65536
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        end = data.rfind(b"\n")
        if end < 0:
            if start == 0:
                return None, 0
            chunk *= 4
            continue
        begin = data.rfind(b"\n", 0, end)
        if begin < 0 and start > 0:
            chunk *= 4
            continue
        return data[begin + 1 : end], start + end + 1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditTrail:
    """Append events to a trail directory. Thread-safe; safe across processes.

    ``AuditTrail(path, keyring).append(event) -> record`` (the record dict, with ``seq``,
    ``hmac``...; its hash is ``record_hash`` of its line). Use as a context manager or call
    `close` so a pending group commit is flushed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        keyring: Keyring,
        *,
        fsync: bool = True,
        commit_every: int | None = None,
        commit_ms: float | None = None,
        rotate_bytes: int | None = DEFAULT_ROTATE_BYTES,
        rotate_seconds: float | None = None,
        spool_dir: str | os.PathLike | None = None,
    ):
        self.path = Path(path)
        self.keyring = keyring
        self.fsync = fsync
        # group commit: fsync once per `commit_every` records and/or `commit_ms` ms;
        # neither given: fsync every record
        self.commit_every = max(1, int(commit_every)) if commit_every else None
        self.commit_ms = float(commit_ms) if commit_ms and commit_ms > 0 else None
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.spool_dir = Path(spool_dir) if spool_dir else None
        self.last_hash: str | None = None
        self.last_seq: int | None = None
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment: Path | None = None
        self._size = -1
        self._lock_gen = -1
        self._seg_start = 0.0
        self._repair: dict | None = None
        self._pending = 0
        self._timer: threading.Timer | None = None
        self._closed = False

    # -- public -----------------------------------------------------------------------

    def append(self, event: Mapping[str, Any]) -> dict:
        """Seal `event` as the next record and write it; returns the record.

        Raises OSError when the trail cannot be written, ConfigError for a bad event.
        """
        fields = normalise_event(event)
        with self._mutex:
            if self._closed:
                raise ConfigError("the audit trail is closed")
            if self.spool_dir is not None:
                self.drain_spool()
            return self._append_fields(fields)

    def append_or_spool(self, event: Mapping[str, Any]) -> tuple[dict | None, Exception | None]:
        """Append; if the trail cannot be written, keep the event in the spool directory
        (retried before the next append). Returns (record or None, the error or None)."""
        try:
            return self.append(event), None
        except OSError as exc:
            if self.spool_dir is None:
                return None, exc
            try:
                spool_event(self.spool_dir, event)
            except OSError as exc2:
                return None, exc2
            return None, exc

    def drain_spool(self) -> int:
        """Append the spooled events, oldest first; returns how many went in."""
        if self.spool_dir is None:
            return 0
        try:
            names = sorted(n for n in os.listdir(self.spool_dir) if n.endswith(".json"))
        except FileNotFoundError:
            return 0
        done = 0
        with self._mutex:
            for name in names:
                item = self.spool_dir / name
                try:
                    event = json.loads(item.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                self._append_fields(normalise_event(event))
                with contextlib.suppress(FileNotFoundError):
                    item.unlink()
                done += 1
        return done

    def flush(self) -> None:
        """Make every record appended so far durable (fsync)."""
        with self._mutex:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._pending and self._fd is not None and self.fsync:
                os.fsync(self._fd)
            self._pending = 0

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self.flush()
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._lock_fd = None
            self._closed = True

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- internals --------------------------------------------------------------------

    def _open_lock(self) -> int:
        if self._lock_fd is None:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._lock_fd = os.open(
                self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640
            )
        return self._lock_fd

    def _append_fields(self, fields: dict) -> dict:
        lock_fd = self._open_lock()
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            self._sync_state(lock_fd)
            if self._repair is not None:
                repair, self._repair = self._repair, None
                self._write(normalise_event(repair))
            now = time.time()
            if self._size > 0 and (
                (self.rotate_bytes and self._size >= self.rotate_bytes)
                or (self.rotate_seconds and now - self._seg_start >= self.rotate_seconds)
            ):
                self._rotate(lock_fd, now)
            record = self._write(fields, now)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
        self._committed()
        return record

    def _write(self, fields: dict, now: float | None = None) -> dict:
        seq = self.last_seq + 1
        record, line = seal(
            fields,
            seq,
            self.last_hash,
            self.keyring.active,
            self.keyring.secret,
            utc_timestamp(now),
        )
        data = line + b"\n"
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self.last_seq = seq
        self.last_hash = record_hash(line)
        self._pending += 1
        return record

    def _committed(self) -> None:
        if not self.fsync:
            self._pending = 0
            return
        if (self.commit_every is None and self.commit_ms is None) or (
            self.commit_every is not None and self._pending >= self.commit_every
        ):
            self.flush()
        elif self.commit_ms is not None and self._timer is None:
            self._timer = threading.Timer(self.commit_ms / 1000.0, self._timer_flush)
            self._timer.daemon = True
            self._timer.start()

    def _timer_flush(self) -> None:
        with contextlib.suppress(OSError), self._mutex:
            self._timer = None
            if not self._closed:
                self.flush()

    def _sync_state(self, lock_fd: int) -> None:
        """Under the lock: point at the last segment and learn the last seq/hash."""
        gen = os.fstat(lock_fd).st_size
        if (
            self._fd is not None
            and gen == self._lock_gen
            and os.fstat(self._fd).st_size == self._size
        ):
            return
        self._lock_gen = gen
        if self._fd is not None:
            if self._pending and self.fsync:
                os.fsync(self._fd)
                self._pending = 0
            os.close(self._fd)
            self._fd = None
        segments = list_segments(self.path)
        if not segments:
            self._open_segment(self.path / segment_name(1), create=True)
            self.last_seq, self.last_hash = 0, GENESIS
            self._seg_start = time.time()
            return
        self._open_segment(segments[-1])
        line, end = read_last_line(self._fd, self._size)
        if end != self._size:
            # a torn write: cut it off, and say so in the trail
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
            self._repair = {
                "action": "audit.repair",
                "outcome": "truncated",
                "target": segments[-1].name,
                "reasons": ["an incomplete last line (a write never reported done) was cut"],
                "data": {"discarded_bytes": self._size - end, "offset": end},
            }
            self._size = end
        if line is None:
            # an empty segment (a crash right after rotation): the chain goes on from
            # the previous segment
            first = segment_first_seq(segments[-1]) or 1
            prev_line = None
            for seg in reversed(segments[:-1]):
                fd = os.open(seg, os.O_RDONLY)
                try:
                    prev_line, _ = read_last_line(fd, os.fstat(fd).st_size)
                finally:
                    os.close(fd)
                if prev_line is not None:
                    break
            if prev_line is None:
                self.last_seq, self.last_hash = first - 1, GENESIS
            else:
                self.last_seq = int(json.loads(prev_line)["seq"])
                self.last_hash = record_hash(prev_line)
            self._seg_start = time.time()
            return
        last = json.loads(line)
        self.last_seq = int(last["seq"])
        self.last_hash = record_hash(line)
        first_line = os.pread(self._fd, min(self._size, 1 << 20), 0).split(b"\n", 1)[0]
        self._seg_start = _parse_ts(json.loads(first_line).get("ts"))

    def _open_segment(self, path: Path, create: bool = False) -> None:
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        self._fd = os.open(path, flags, 0o640)
        self._segment = path
        self._size = os.fstat(self._fd).st_size
        if create:
            _fsync_dir(self.path)

    def _rotate(self, lock_fd: int, now: float) -> None:
        if self.fsync:
            os.fsync(self._fd)
            self._pending = 0
        os.close(self._fd)
        self._open_segment(self.path / segment_name(self.last_seq + 1), create=True)
        self._seg_start = now
        os.write(lock_fd, b"r")  # rotation counter: other appenders re-read the state
        self._lock_gen = os.fstat(lock_fd).st_size


def _parse_ts(ts: Any) -> float:
    import calendar

    try:
        base, _, frac = str(ts).rstrip("Z").partition(".")
        return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")
    except ValueError:
        return time.time()


def spool_event(spool_dir: str | os.PathLike, event: Mapping[str, Any]) -> Path:
    """Keep an event that could not be appended, for a later `AuditTrail.drain_spool`."""
    spool = Path(spool_dir)
    spool.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = dict(event)
    data = dict(doc.get("data") or {})
    data.setdefault("spooled_at", utc_timestamp())
    doc["data"] = data
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    tmp = spool / f".{name}.tmp"
    payload = json.dumps(doc, default=str).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, spool / name)
    return spool / name


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[Path, int, bytes]]:
    """(segment, line number, raw line with its newline) for every line of the trail."""
    for seg in list_segments(path):
        with open(seg, "rb") as f:
            for number, line in enumerate(f, 1):
                yield seg, number, line


def iter_records(path: str | os.PathLike) -> Iterator[dict]:
    """Every parseable record of the trail, in order (no verification: see `verify`)."""
    for _seg, _n, line in iter_lines(path):
        if line.endswith(b"\n"):
            with contextlib.suppress(ValueError):
                yield json.loads(line)


def last_record(path: str | os.PathLike) -> tuple[dict, str] | None:
    """The trail's last complete record and its hash, or None if it is empty."""
    for seg in reversed(list_segments(path)):
        fd = os.open(seg, os.O_RDONLY)
        try:
            line, _ = read_last_line(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        if line is not None:
            return json.loads(line), record_hash(line)
    return None


ENV_TRAIL = "SELFHEAL_AUDIT_TRAIL"


def default_trail() -> Path:
    """``$SELFHEAL_AUDIT_TRAIL``, else ``$XDG_STATE_HOME/selfheal/audit``."""
    if os.environ.get(ENV_TRAIL):
        return Path(os.environ[ENV_TRAIL])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "selfheal" / "audit"
