"""The ASGI adapter, driven through the ASGI contract (receive/send) and, with uvicorn, over
a real socket."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time

import pytest

from selfheal.health import HealthRegistry, make_asgi_app, tcp


async def _call(app, scope: dict, incoming: list[dict] | None = None) -> list[dict]:
    """Run one ASGI call with hand-written receive/send; returns the messages sent."""
    queue: asyncio.Queue = asyncio.Queue()
    for message in incoming or [{"type": "http.request", "body": b"", "more_body": False}]:
        queue.put_nowait(message)
    sent: list[dict] = []

    async def receive() -> dict:
        return await queue.get()

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


def _http_scope(path: str, query: bytes = b"", method: str = "GET") -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [],
    }


def _response(sent: list[dict]) -> tuple[int, dict[bytes, bytes], bytes]:
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    body = b"".join(m.get("body", b"") for m in bodies)
    return start["status"], dict(start["headers"]), body


async def _hello(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete", "app": "wrapped"})
            if kind == "shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


def test_livez_and_readyz(closed_port) -> None:
    registry = HealthRegistry()
    registry.add_liveness("loop", lambda: True)
    registry.add_readiness("db", tcp("127.0.0.1", closed_port))
    app = make_asgi_app(registry)
    status, headers, body = _response(asyncio.run(_call(app, _http_scope("/livez"))))
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"cache-control"] == b"no-store"
    assert json.loads(body)["status"] == "ok"
    status, _, body = _response(asyncio.run(_call(app, _http_scope("/readyz"))))
    doc = json.loads(body)
    assert status == 503 and doc["status"] == "fail"
    assert doc["checks"]["db"]["reason"] == f"connection refused by 127.0.0.1:{closed_port}"
    status, _, body = _response(asyncio.run(_call(app, _http_scope("/readyz", b"verbose=0"))))
    assert (status, json.loads(body)) == (503, {"status": "fail"})


def test_checks_never_block_the_event_loop() -> None:
    registry = HealthRegistry()
    registry.add_readiness("slow", lambda: time.sleep(2) or True, timeout=0.3)
    app = make_asgi_app(registry)

    async def main() -> tuple[list[dict], int, float]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        start = time.monotonic()
        sent = await _call(app, _http_scope("/readyz"))
        elapsed = time.monotonic() - start
        stop.set()
        await task
        return sent, ticks, elapsed

    sent, ticks, elapsed = asyncio.run(main())
    status, _, body = _response(sent)
    assert status == 503 and json.loads(body)["checks"]["slow"]["reason"] == "timeout"
    assert elapsed < 5.0  # the check itself would take 10 s
    assert ticks >= 5  # the loop kept running while the checks did


def test_delegation_and_lifespan_pass_through() -> None:
    app = make_asgi_app(HealthRegistry(), _hello)
    status, _, body = _response(asyncio.run(_call(app, _http_scope("/api/x"))))
    assert (status, body) == (200, b"hello /api/x")
    lifespan = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = asyncio.run(_call(app, {"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan))
    assert sent == [
        {"type": "lifespan.startup.complete", "app": "wrapped"},
        {"type": "lifespan.shutdown.complete", "app": "wrapped"},
    ]


def test_without_wrapped_app() -> None:
    app = make_asgi_app(HealthRegistry())
    status, _, _ = _response(asyncio.run(_call(app, _http_scope("/"))))
    assert status == 404
    lifespan = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = asyncio.run(_call(app, {"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan))
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    ws = {"type": "websocket", "path": "/livez", "asgi": {"version": "3.0"}}
    sent = asyncio.run(_call(app, ws, [{"type": "websocket.connect"}]))
    assert sent == [{"type": "websocket.close", "code": 1000}]
    status, _, _ = _response(asyncio.run(_call(app, _http_scope("/livez", method="POST"))))
    assert status == 405


@pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="uvicorn not installed")
def test_served_by_uvicorn(closed_port, http_get) -> None:
    import uvicorn

    registry = HealthRegistry()
    registry.add_liveness("loop", lambda: True)
    registry.add_readiness("db", tcp("127.0.0.1", closed_port))
    app = make_asgi_app(registry, _hello)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        assert http_get(base + "/livez").status == 200
        ready = http_get(base + "/readyz")
        assert ready.status == 503 and ready.json()["checks"]["db"]["status"] == "fail"
        assert http_get(base + "/other").body == b"hello /other"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
