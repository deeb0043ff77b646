"""A small real web shop on 127.0.0.1 for journey tests: login -> search -> checkout.

Tests break it on purpose: ``broken`` steps answer 500, ``delay`` slows a step down,
``search_item`` sets the item id search returns (a test can make it hostile). Every request
is recorded (path, headers, parsed body) so a test can see what a journey really sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PASSWORD = "s3cret"


class _Handler(BaseHTTPRequestHandler):
    server: ShopServer

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode()

    def _authorised(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server.token}"

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._body() if method == "POST" else None
        step = url.path.strip("/").split("/")[0]
        self.server.seen.append(
            {"method": method, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        time.sleep(self.server.delay.get(step, 0.0))
        if step in self.server.broken:
            self._reply(500, {"error": f"{step} is broken"})
        elif step == "login" and method == "POST":
            if isinstance(body, dict) and body.get("password") == PASSWORD:
                self._reply(200, {"ok": True, "token": self.server.token, "user": body.get("user")})
            else:
                self._reply(401, {"ok": False})
        elif not self._authorised():
            self._reply(401, {"error": "no or wrong token"})
        elif step == "search" and method == "GET":
            query = parse_qs(url.query).get("q", [""])[0]
            self._reply(200, {"query": query, "results": [{"id": self.server.search_item}]})
        elif step == "checkout" and method == "POST":
            item = body.get("item") if isinstance(body, dict) else None
            self._reply(200, {"status": "placed", "order": "ord-1", "item": item})
        elif step == "orders" and method == "GET":
            self._reply(200, {"order": url.path.split("/", 2)[-1]})
        else:
            self._reply(404, {"error": "not found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def log_message(self, format, *args) -> None:
        pass


class ShopServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = "tok-7f3a9c"
        self.search_item = "sku-42"
        self.broken: set[str] = set()
        self.delay: dict[str, float] = {}
        self.seen: list[dict] = []
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> ShopServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


JOURNEY = """\
name: shop
base_url: {base}
timeout: 5s
variables:
  user: alice
  password: s3cret
steps:
  - name: login
    method: POST
    url: /login
    json: {{user: "${{user}}", password: "${{password}}"}}
    extract:
      token: {{json: $.token}}
    expect:
      status: 200
      json: {{$.ok: true}}
  - name: search
    url: /search?q=widget
    headers: {{Authorization: "Bearer ${{token}}"}}
    extract:
      item: {{json: "$.results[0].id"}}
    expect:
      status: [200]
      body_regex: '"results"'
      max_latency_ms: {search_max_ms}
  - name: checkout
    method: POST
    url: /checkout
    headers: {{Authorization: "Bearer ${{token}}"}}
    json: {{item: "${{item}}", quantity: 1}}
    extract:
      order: {{regex: '"order": "([^"]+)"'}}
    expect:
      status: 200
      json: {{$.status: placed}}
"""


def write_journey(path, base: str, search_max_ms: int = 2000) -> str:
    path.write_text(JOURNEY.format(base=base, search_max_ms=search_max_ms))
    return str(path)
