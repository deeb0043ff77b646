"""Secrets kept in files that `credential_rotate` rotates with an overlap.

``FILE`` holds the current secret (one line). After a rotation, ``FILE.previous`` holds the
secret it replaced as JSON, ``{"secret": "...", "valid_until": EPOCH_SECONDS}``; until then
both are accepted, so senders switch at their own pace. The files are re-read when they
change (checked at most once a second), so a rotation needs no restart of the dispatcher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("selfheal.dispatcher.secrets")

RECHECK_S = 1.0


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class RotatingSecret:
    """The secrets a file-backed credential accepts now: the current one, and the previous
    one until its ``valid_until``. A file that cannot be read keeps the last good secrets."""

    def __init__(self, path: Path, initial: str):
        self.path = path
        self.previous_path = path.with_name(path.name + ".previous")
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamps: tuple = ()
        self._current = initial
        self._previous: tuple[str, float] | None = None
        self._accepted: tuple[bytes, ...] = (initial.encode(),)
        self._digests: tuple[bytes, ...] = (hashlib.sha256(initial.encode()).digest(),)
        self._refresh(time.time())

    def accepted(self, now: float | None = None) -> tuple[bytes, ...]:
        """The secrets valid now, current first."""
        self._maybe_refresh(time.time() if now is None else now)
        return self._accepted

    def digests(self, now: float | None = None) -> tuple[bytes, ...]:
        """SHA-256 digests of `accepted()` (what bearer tokens are compared against)."""
        self._maybe_refresh(time.time() if now is None else now)
        return self._digests

    def _maybe_refresh(self, now: float) -> None:
        expired = self._previous is not None and now >= self._previous[1]
        if not expired and time.monotonic() - self._checked < RECHECK_S:
            return
        with self._lock:
            self._refresh(now)

    def _refresh(self, now: float) -> None:
        self._checked = time.monotonic()
        stamps = (_stamp(self.path), _stamp(self.previous_path))
        if stamps != self._stamps:
            current = self._read_current()
            if current is not None:
                self._current = current
                self._previous = self._read_previous()
                self._stamps = stamps
        secrets = [self._current]
        previous = self._previous
        if previous is not None and now < previous[1] and previous[0] != self._current:
            secrets.append(previous[0])
        accepted = tuple(s.encode() for s in secrets)
        if accepted != self._accepted:
            self._accepted = accepted
            self._digests = tuple(hashlib.sha256(s).digest() for s in accepted)

    def _read_current(self) -> str | None:
        try:
            text = self.path.read_text().strip()
        except OSError as exc:
            log.error("cannot read secret file; keeping the last one", extra={"error": str(exc)})
            return None
        if not text:
            log.error("secret file is empty; keeping the last secret")
            return None
        return text

    def _read_previous(self) -> tuple[str, float] | None:
        try:
            data = json.loads(self.previous_path.read_text())
            secret, until = data["secret"], float(data["valid_until"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring a malformed previous-secret file", extra={"error": str(exc)})
            return None
        if not isinstance(secret, str) or not secret:
            return None
        return secret, until
