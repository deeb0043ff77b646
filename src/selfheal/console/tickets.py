"""Short-lived, single-use tickets for the report page.

The report is HTML with inline styles, shown in an iframe: a frame navigation cannot send the
bearer token, and the console's own Content-Security-Policy (inherited by srcdoc and blob
frames) forbids inline styles. So the console trades its token for a ticket that opens the
report once, within a minute, under the report's own, script-free policy.
"""

from __future__ import annotations

import secrets
import threading
import time

TTL_S = 60.0
MAX_OPEN = 256


class Tickets:
    def __init__(self, ttl_s: float = TTL_S):
        self.ttl_s = ttl_s
        self._open: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        ticket = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._open = {t: exp for t, exp in self._open.items() if exp > now}
            if len(self._open) >= MAX_OPEN:  # never grows without bound
                self._open.pop(min(self._open, key=self._open.__getitem__))
            self._open[ticket] = now + self.ttl_s
        return ticket

    def redeem(self, ticket: str) -> bool:
        with self._lock:
            expires = self._open.pop(ticket, None)
        return expires is not None and expires > time.monotonic()
