"""Tamper-evident audit trail: hash-chained, HMAC-sealed JSON lines.

Entry points::

    keyring = Keyring.load(key_file)                  # env SELFHEAL_AUDIT_KEYS or a 0600 file
    with AuditTrail(trail_dir, keyring) as trail:
        record = trail.append({"action": "task", "target": "web1", "outcome": "ok"})
    report = verify(trail_dir, keyring, checkpoint=None)   # report.ok, report.problem

See docs/audit.md for the record format, key rotation and the forwarders.
"""

from selfheal.audit.keyring import Keyring
from selfheal.audit.record import GENESIS, canonical, record_hash
from selfheal.audit.redact import redact, redact_text
from selfheal.audit.trail import AuditTrail, iter_records, last_record, list_segments, spool_event
from selfheal.audit.verify import Problem, VerifyReport, load_checkpoint, make_checkpoint, verify

__all__ = [
    "GENESIS",
    "AuditTrail",
    "Keyring",
    "Problem",
    "VerifyReport",
    "canonical",
    "iter_records",
    "last_record",
    "list_segments",
    "load_checkpoint",
    "make_checkpoint",
    "record_hash",
    "redact",
    "redact_text",
    "spool_event",
    "verify",
]
