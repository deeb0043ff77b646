"""One audit record: its canonical JSON line, its hash and its HMAC.

A record is a JSON object serialised canonically (sorted keys, ``,``/``:`` separators, UTF-8,
no NaN) on one line. Fields:

``v``            record format version (1)
``seq``          1, 2, 3, ... across every segment of the trail
``ts``           UTC time of the append, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
``actor``        ``{"user", "dispatcher", "awx_job_id"}`` (who or what acted; nulls allowed)
``action``       what was done (``task``, ``play.start``, ``approval.granted``, ...)
``target``       on what (a host, a service, ``host/service``)
``decision``     the decision that led to it (``auto``, ``approved``, ``denied``, ...)
``reasons``      list of strings: why
``run_id``       the run (playbook run, runner job) it belongs to
``incident_id``  the incident it remediates
``outcome``      the result (``ok``, ``changed``, ``failed``, ``unreachable``, ``skipped``, ...)
``data``         any further (redacted) detail: task name, diff, module result summary
``prev``         SHA-256 (hex) of the previous record's line; 64 zeros for the first
``kid``          id of the key the HMAC was made with
``hmac``         HMAC-SHA256 (hex) over the canonical line of every other field

A record's hash is SHA-256 over its whole line (``hmac`` included, newline excluded).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from selfheal.audit.redact import redact
from selfheal.errors import ConfigError

VERSION = 1
GENESIS = "0" * 64
ACTOR_FIELDS = ("user", "dispatcher", "awx_job_id")
EVENT_FIELDS = (
    "action",
    "target",
    "decision",
    "reasons",
    "run_id",
    "incident_id",
    "outcome",
    "actor",
    "data",
)
RECORD_FIELDS = frozenset((*EVENT_FIELDS, "v", "seq", "ts", "prev", "kid", "hmac"))

_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical(obj: Any) -> bytes:
    """The canonical serialisation: sorted keys, compact separators, UTF-8."""
    return _dumps(obj).encode("utf-8")


def utc_timestamp(now: float | None = None) -> str:
    now = time.time() if now is None else now
    secs = int(now)
    micros = round((now - secs) * 1_000_000)
    if micros == 1_000_000:
        secs, micros = secs + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{micros:06d}Z"


def record_hash(line: bytes) -> str:
    """SHA-256 of a record's line (without its newline)."""
    return hashlib.sha256(line).hexdigest()


_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=64)
def _pads(secret: bytes):
    if len(secret) > 64:
        secret = hashlib.sha256(secret).digest()
    secret = secret.ljust(64, b"\0")
    return hashlib.sha256(secret.translate(_TRANS_36)), hashlib.sha256(secret.translate(_TRANS_5C))


def mac(secret: bytes, content: bytes) -> str:
    """HMAC-SHA256(secret, content) in hex (RFC 2104, with the key pads hashed once)."""
    inner, outer = _pads(secret)
    i = inner.copy()
    i.update(content)
    o = outer.copy()
    o.update(i.digest())
    return o.hexdigest()


def _actor(value: Any) -> dict:
    if value is None:
        return dict.fromkeys(ACTOR_FIELDS)
    if isinstance(value, str):
        return {"user": value, "dispatcher": None, "awx_job_id": None}
    if isinstance(value, Mapping):
        actor = {k: value.get(k) for k in ACTOR_FIELDS}
        actor.update({str(k): v for k, v in value.items() if k not in ACTOR_FIELDS})
        if actor["awx_job_id"] is not None:
            actor["awx_job_id"] = str(actor["awx_job_id"])
        return actor
    raise ConfigError(f"actor must be a string or a mapping, not {type(value).__name__}")


def normalise_event(event: Mapping[str, Any]) -> dict:
    """The event's fields, redacted and shaped as a record's (unknown keys go into data)."""
    if not isinstance(event, Mapping):
        raise ConfigError("an audit event must be a mapping")
    action = event.get("action")
    if not isinstance(action, str) or not action:
        raise ConfigError("an audit event needs a non-empty string 'action'")
    data = dict(event.get("data") or {})
    for key, value in event.items():
        if key not in EVENT_FIELDS and key != "no_log":
            data[key] = value
    reasons = event.get("reasons") or []
    if isinstance(reasons, str):
        reasons = [reasons]
    no_log = bool(event.get("no_log"))  # the whole data is secret
    out = {
        "action": action,
        "actor": redact(_actor(event.get("actor"))),
        "target": redact(event.get("target")),
        "decision": redact(event.get("decision")),
        "reasons": [redact(str(r)) for r in reasons],
        "run_id": redact(event.get("run_id")),
        "incident_id": redact(event.get("incident_id")),
        "outcome": redact(event.get("outcome")),
        "data": redact(data, no_log=no_log) if data else {},
    }
    return out


def seal(fields: dict, seq: int, prev: str, kid: str, secret: bytes, ts: str) -> tuple[dict, bytes]:
    """Complete a normalised event into a record; returns (record, line without newline)."""
    fields["v"] = VERSION
    fields["seq"] = seq
    fields["ts"] = ts
    fields["prev"] = prev
    fields["kid"] = kid
    fields.pop("hmac", None)
    # one serialisation: the members sorting before "hmac", and those after it
    head = canonical({k: v for k, v in fields.items() if k < "hmac"})
    tail = canonical({k: v for k, v in fields.items() if k > "hmac"})
    if head == b"{}" or tail == b"{}":  # not with normalised events; kept correct anyway
        fields["hmac"] = mac(secret, canonical(fields))
        return fields, canonical(fields)
    digest = mac(secret, head[:-1] + b"," + tail[1:])
    fields["hmac"] = digest
    return fields, head[:-1] + b',"hmac":"' + digest.encode() + b'",' + tail[1:]


def unsealed_content(line: bytes, record: Mapping[str, Any]) -> bytes | None:
    """The bytes the record's HMAC covers: its line without the ``"hmac"`` member.

    For a record written by `seal` this equals the canonical form of the other fields, so
    verifying needs no re-serialisation. None if the member is missing.
    """
    value = record.get("hmac")
    if not isinstance(value, str):
        return None
    needle = b',"hmac":"' + value.encode("ascii", "replace") + b'"'
    i = line.find(needle)
    if i < 0:
        return None
    return line[:i] + line[i + len(needle) :]
