"""A header timeout for uvicorn's httptools protocol.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``), but that timer is only
armed after a response: a connection that opens and never completes its request headers (a
half request line, headers a byte a minute) stays open for good, one file descriptor and one
slot of ``limit_concurrency`` each. This protocol arms a timer when the connection opens and
when a new request begins, and disarms it once the headers are complete; when it fires, the
connection is closed. The body has its own bound (`selfheal.dispatcher.app._read_body`).

    uvicorn.Config(app, http=header_timeout_protocol(10.0), ...)
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout_s: float = 10.0

    _header_timer: asyncio.TimerHandle | None = None
    headers_timed_out = 0  # connections closed for slow headers (class-wide count)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # the next request on a kept-alive connection
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            type(self).headers_timed_out += 1
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this header timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})
