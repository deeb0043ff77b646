"""ASGI 3 adapter: `/livez` and `/readyz` in front of any ASGI application.

Pure ASGI, no framework. Checks are blocking (sockets, drivers), so they are evaluated in
a worker thread (`asyncio.to_thread`): the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._http import LIVEZ_PATH, READYZ_PATH, not_found, respond, routes
from .registry import HealthRegistry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def make_asgi_app(
    registry: HealthRegistry,
    app: ASGIApp | None = None,
    *,
    livez_path: str = LIVEZ_PATH,
    readyz_path: str = READYZ_PATH,
) -> ASGIApp:
    """An ASGI 3 app serving the two health paths over `http` and handing everything
    else (other paths, websockets, lifespan) to `app`. Without `app`: other paths get
    404, websockets are closed and lifespan events are acknowledged."""
    table = routes(livez_path, readyz_path)

    async def health_app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = table.get(scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None:
            if app is not None:
                await app(scope, receive, send)
            else:
                await _fallback(scope, receive, send)
            return
        method = str(scope.get("method", "GET")).upper()
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        status, headers, body = await asyncio.to_thread(respond, registry, kind, method, query)
        await _send_response(send, status, headers, body)

    return health_app


async def _send_response(
    send: Send, status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _fallback(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await _send_response(send, *not_found())
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1000})
