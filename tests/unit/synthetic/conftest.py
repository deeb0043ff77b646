from __future__ import annotations

import pytest
from unit.synthetic.shop_app import ShopServer


@pytest.fixture
def shop():
    server = ShopServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
