"""A real `selfheal serve` closes connections whose request headers never complete, and
answers 408 to a body that never completes (header_timeout_s, body_timeout_s)."""

from __future__ import annotations

import socket

import pytest
import yaml
from unit.dispatcher.helpers import INVENTORY, TOKEN, Server, free_port, policy_data

WAIT_S = 30.0  # the socket's own bound: the test fails (not hangs) if nothing closes it


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("timeouts")
    (tmp / "policy.yml").write_text(yaml.safe_dump(policy_data(str(tmp / "heal.yml"))))
    (tmp / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "store": str(tmp / "state/selfheal.db"),
        "policy": str(tmp / "policy.yml"),
        "inventory": str(tmp / "inventory.yml"),
        "workers": 0,
        "instance": "timeouts",
        "header_timeout_s": 1,
        "body_timeout_s": 1,
        "tokens": [{"name": "alertmanager", "token": TOKEN, "scopes": ["intake", "read"]}],
    }
    (tmp / "dispatcher.yml").write_text(yaml.safe_dump(config))
    srv = Server(tmp / "dispatcher.yml", port, tmp / "serve.log")
    srv.start()
    yield srv
    srv.stop()


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if not)."""
    sock.settimeout(WAIT_S)
    data = b""
    for _ in range(1000):  # bounded: each recv returns data, b"" (closed) or times out
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the server kept sending")


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /alerts/alertmanager HT", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a"],
    ids=["nothing", "half-request-line", "half-headers"],
)
def test_incomplete_headers_are_closed(server, sent) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if sent:
            sock.sendall(sent)
        assert _read_until_closed(sock) == b""  # closed, nothing answered


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (headers, then Content-Length bytes of body)."""
    sock.settimeout(WAIT_S)
    data = b""
    for _ in range(1000):  # bounded
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole response"
        data += chunk
    raise AssertionError("no whole response")


def test_half_headers_on_a_kept_alive_connection_are_closed(server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /no-such-path HTTP/1.1\r\nHost: x\r\n\r\n")
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 404")  # answered, and the connection kept alive
        sock.sendall(b"GET /no-such-path HTTP/1.1\r\nHo")
        assert _read_until_closed(sock) == b""


def test_a_body_that_never_completes_is_408(server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /alerts/alertmanager HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"version":'
        )
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request body not received" in answer
