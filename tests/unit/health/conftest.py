"""Fixtures of the selfheal.health tests: real servers on 127.0.0.1, stopped by the test."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from selfheal.health.demo import ThreadingWSGIServer


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def get(url: str, method: str = "GET", timeout: float = 10.0) -> Response:
    """One HTTP request with the standard library; any status is returned, never raised."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target or "/")
        response = conn.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Response(response.status, headers, body)
    finally:
        conn.close()


@pytest.fixture
def http_get() -> Callable[..., Response]:
    """http_get(url, method="GET") -> Response (status, lower-case headers, body)."""
    return get


@pytest.fixture
def serve_wsgi() -> Iterator[Callable[[Any], str]]:
    """serve_wsgi(app) -> base URL of a threaded wsgiref server on an ephemeral port."""
    running: list[tuple[Any, threading.Thread]] = []

    def start(app: Any) -> str:
        server = make_server(
            "127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler
        )
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A local port that accepts TCP connections for the test's duration."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]
