"""Verify a trail: every segment, every record's HMAC, the hash chain, the sequence, and
(with a checkpoint) that no tail was deleted. Stops at the first bad record."""

from __future__ import annotations

import hashlib
import hmac as _hmac
import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from selfheal.audit.keyring import Keyring
from selfheal.audit.record import GENESIS, VERSION, mac
from selfheal.audit.trail import last_record, list_segments, segment_first_seq
from selfheal.errors import ConfigError

_REQUIRED = ("seq", "prev", "kid", "hmac", "ts", "action")


@dataclass
class Problem:
    segment: str
    line: int
    seq: int | None
    reason: str
    record: str | None = None  # the offending line (cut to 500 characters)


@dataclass
class VerifyReport:
    ok: bool
    path: str
    segments: int = 0
    records: int = 0
    bytes: int = 0
    seconds: float = 0.0
    last_seq: int = 0
    last_hash: str = GENESIS
    keys_used: dict[str, int] = field(default_factory=dict)
    checkpoint: dict | None = None
    problem: Problem | None = None

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mb_per_s"] = round(self.mb_per_s, 1)
        return out


def load_checkpoint(path: str | os.PathLike) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        seq, digest = int(doc["seq"]), str(doc["hash"])
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint ({exc.strerror})", str(path)) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"not a checkpoint ({exc})", str(path)) from exc
    return {**doc, "seq": seq, "hash": digest}


def make_checkpoint(trail: str | os.PathLike) -> dict:
    """The last record's seq and hash (save it off-host: it proves what the tail was)."""
    last = last_record(trail)
    if last is None:
        return {"seq": 0, "hash": GENESIS, "ts": None}
    record, digest = last
    return {"seq": int(record["seq"]), "hash": digest, "ts": record.get("ts")}


def _check_chunk(
    seg: str,
    start: int,
    end: int | None,
    keys: dict[str, bytes],
    checkpoint: dict | None,
    expected: int | None,
    prev: str | None,
    segment_start_seq: int | None,
) -> dict:
    """Verify the lines of `seg` in [start, end) (whole lines; end None = to EOF).

    With `expected`/`prev` None the chunk adopts them from its first record and reports
    ``first_seq``/``first_prev`` for the caller to stitch to the chunk before it.
    """
    loads = json.loads
    compare = _hmac.compare_digest
    sha256 = hashlib.sha256
    out = {
        "lines": 0,
        "bytes": 0,
        "records": 0,
        "first_seq": None,
        "first_prev": None,
        "first_line": None,
        "last_seq": None,
        "last_hash": None,
        "keys_used": {},
        "checkpoint_seen": False,
        "problem": None,
    }
    keys_used = out["keys_used"]
    limit = None if end is None else end - start
    consumed = 0
    n = 0
    last_seq = last_hash = None
    records = 0

    def fail(seq, reason: str, line: bytes | None) -> dict:
        text = line.decode("utf-8", "replace").rstrip("\n")[:500] if line else None
        out.update(lines=n, bytes=consumed, records=records, last_seq=last_seq)
        out["last_hash"] = last_hash
        out["problem"] = (n, seq, reason, text)
        return out

    with open(seg, "rb") as f:
        f.seek(start)
        for line in f:
            if limit is not None and consumed >= limit:
                break
            n += 1
            consumed += len(line)
            if not line.endswith(b"\n"):
                return fail(
                    None,
                    "truncated: the last line is incomplete (partial write or the file was cut)",
                    line,
                )
            raw = line[:-1]
            try:
                rec = loads(raw.decode("utf-8"))
                seq = rec["seq"]
                for name in _REQUIRED:
                    rec[name]
            except (ValueError, KeyError, TypeError) as exc:
                return fail(None, f"not a record ({exc.__class__.__name__})", line)
            if not isinstance(seq, int) or isinstance(seq, bool):
                return fail(None, "seq is not an integer", line)
            if rec.get("v") != VERSION:
                return fail(seq, f"unknown record version {rec.get('v')!r}", line)
            if n == 1:
                if segment_start_seq is not None and seq != segment_start_seq:
                    return fail(
                        seq,
                        f"segment should start at seq {segment_start_seq}, starts at {seq}",
                        line,
                    )
                out["first_seq"], out["first_prev"] = seq, rec["prev"]
                out["first_line"] = line.decode("utf-8", "replace").rstrip("\n")[:500]
                if expected is None:
                    expected = seq
                    prev = GENESIS if seq == 1 else rec["prev"]
            if seq != expected:
                if seq > expected:
                    why = f"sequence gap: expected seq {expected}, found {seq} (records removed)"
                else:
                    why = (
                        f"out of order: expected seq {expected}, found {seq} "
                        "(reordered or duplicated)"
                    )
                return fail(seq, why, line)
            if rec["prev"] != prev:
                return fail(
                    seq,
                    "chain broken: prev does not match the previous record's hash (a record "
                    "before it was changed, removed or reordered)",
                    line,
                )
            kid = rec["kid"]
            secret = keys.get(kid) if isinstance(kid, str) else None
            if secret is None:
                return fail(seq, f"unknown key id {kid!r}", line)
            seal = str(rec["hmac"])
            needle = b',"hmac":"' + seal.encode("ascii", "replace") + b'"'
            i = raw.find(needle)
            if i < 0 or not compare(mac(secret, raw[:i] + raw[i + len(needle) :]), seal):
                return fail(seq, f"HMAC mismatch (key {kid!r}): the record was edited", line)
            prev = sha256(raw).hexdigest()
            keys_used[kid] = keys_used.get(kid, 0) + 1
            records += 1
            last_seq, last_hash = seq, prev
            expected = seq + 1
            if checkpoint is not None and seq == checkpoint["seq"]:
                out["checkpoint_seen"] = True
                if prev != checkpoint["hash"]:
                    return fail(seq, "differs from the checkpoint's hash for this seq", line)
    out.update(lines=n, bytes=consumed, records=records, last_seq=last_seq, last_hash=last_hash)
    return out


def _check_chunk_args(args: tuple) -> dict:
    return _check_chunk(*args)


def _line_start_after(fd: int, pos: int, size: int) -> int | None:
    """Offset of the first line that starts at or after `pos` (None: no such line)."""
    while pos < size:
        block = os.pread(fd, min(1 << 16, size - pos), pos - 1)
        i = block.find(b"\n")
        if i >= 0:
            start = pos - 1 + i + 1
            return start if start < size else None
        pos += len(block)
    return None


def _plan(segments: list[Path], chunk_bytes: int) -> list[tuple[Path, int, int | None]]:
    chunks: list[tuple[Path, int, int | None]] = []
    for seg in segments:
        fd = os.open(seg, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            start = 0
            while True:
                cut = _line_start_after(fd, start + chunk_bytes, size)
                chunks.append((seg, start, cut))
                if cut is None:
                    break
                start = cut
        finally:
            os.close(fd)
    return chunks


def verify(
    path: str | os.PathLike,
    keyring: Keyring | None = None,
    checkpoint: dict | None = None,
    workers: int | None = None,
    chunk_bytes: int = 16 << 20,
) -> VerifyReport:
    """Check the trail at `path` (a trail directory or one segment file).

    `keyring` defaults to `Keyring.load(create=False)` (env, else the default key file).
    Large trails are checked in chunks by `workers` processes (default: one per CPU, at
    most 4, for trails over 32 MB); the chunks are stitched back in order, so the report
    (first bad record included) is the same as a sequential run's.
    """
    started = time.perf_counter()
    if keyring is None:
        keyring = Keyring.load(create=False)
    report = VerifyReport(ok=True, path=str(path), checkpoint=checkpoint)
    segments = list_segments(path)
    if not segments and not Path(path).exists():
        raise ConfigError("no such audit trail", str(path))
    whole_trail = Path(path).is_dir()
    total = sum(seg.stat().st_size for seg in segments)
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if total > (32 << 20) else 1
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 1
    keys = dict(keyring.keys)

    def fail(seg: Path, n: int, seq, reason: str, text: str | None = None) -> VerifyReport:
        report.ok = False
        report.problem = Problem(seg.name, n, seq, reason, text)
        report.seconds = time.perf_counter() - started
        return report

    expected: int | None = 1 if whole_trail else None
    prev: str | None = GENESIS if whole_trail else None
    checkpoint_seen = False
    parallel = workers > 1
    chunks = _plan(segments, chunk_bytes) if parallel else [(s, 0, None) for s in segments]
    if parallel and len(chunks) < 2:
        parallel = False

    def args_for(chunk, exp, prv):
        seg, start, end = chunk
        first = segment_first_seq(seg) if whole_trail and start == 0 else None
        return (str(seg), start, end, keys, checkpoint, exp, prv, first)

    pool = None
    if parallel:
        pool = multiprocessing.get_context("fork").Pool(workers)
        results = pool.imap(_check_chunk_args, [args_for(c, None, None) for c in chunks])
    try:
        seen_segments: set[Path] = set()
        lines_before = 0
        segment_lines = 0
        current = None
        for chunk in chunks:
            seg = chunk[0]
            if seg != current:
                if current is not None and segment_lines == 0 and whole_trail:
                    return fail(current, 0, None, "empty segment in the middle of the trail")
                current, lines_before, segment_lines = seg, 0, 0
            seen_segments.add(seg)
            res = next(results) if parallel else _check_chunk(*args_for(chunk, expected, prev))
            if parallel and res["first_seq"] is not None and expected is not None:
                # stitch: the chunk's first record must follow the previous chunk's last
                first_seq = res["first_seq"]
                if first_seq != expected:
                    why = (
                        f"sequence gap: expected seq {expected}, found {first_seq} "
                        "(records removed)"
                        if first_seq > expected
                        else f"out of order: expected seq {expected}, found {first_seq} "
                        "(reordered or duplicated)"
                    )
                    return fail(seg, lines_before + 1, first_seq, why, res["first_line"])
                if res["first_prev"] != prev:
                    return fail(
                        seg,
                        lines_before + 1,
                        first_seq,
                        "chain broken: prev does not match the previous record's hash (a "
                        "record before it was changed, removed or reordered)",
                        res["first_line"],
                    )
            report.bytes += res["bytes"]
            report.records += res["records"]
            for kid, count in res["keys_used"].items():
                report.keys_used[kid] = report.keys_used.get(kid, 0) + count
            checkpoint_seen = checkpoint_seen or res["checkpoint_seen"]
            if res["last_seq"] is not None:
                report.last_seq, report.last_hash = res["last_seq"], res["last_hash"]
                expected, prev = res["last_seq"] + 1, res["last_hash"]
            if res["problem"] is not None:
                n, seq, reason, text = res["problem"]
                report.segments = len(seen_segments)
                return fail(seg, lines_before + n, seq, reason, text)
            lines_before += res["lines"]
            segment_lines += res["lines"]
        report.segments = len(seen_segments)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    if checkpoint is not None and not checkpoint_seen and checkpoint["seq"] > 0:
        seg = segments[-1] if segments else Path(path)
        return fail(
            seg,
            0,
            report.last_seq,
            f"the trail ends at seq {report.last_seq} but the checkpoint saw seq "
            f"{checkpoint['seq']}: records were deleted from the tail",
        )
    report.seconds = time.perf_counter() - started
    return report
