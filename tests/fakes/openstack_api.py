"""A contract mock of the OpenStack APIs the openstack_* runbooks use, for tests only.

No OpenStack can run on a test machine, so this stands in for one. It follows the OpenStack
API references, implementing only what openstacksdk (through the openstack.cloud modules)
and the runbooks call:

- Identity v3: version discovery (`GET /identity`, `GET /identity/v3`), password
  authentication `POST /identity/v3/auth/tokens` (201, token in `X-Subject-Token`, the
  service catalog in the body) and `GET /identity/v3/auth/catalog`;
- Compute v2.1: version discovery at the compute root, `GET /servers/detail`,
  `GET /servers/{id}`, `POST /servers/{id}/action` with `reboot` (`SOFT`/`HARD`),
  `rebuild`, `os-migrateLive` and `evacuate`, and `GET /os-services`;
- Image v2: version discovery and `GET /v2/images/{id}` (a rebuild looks its image up).

Servers follow the compute API's state machine: an action answers 202 and moves the server
to its task status (`REBOOT`, `HARD_REBOOT`, `REBUILD`, `MIGRATING`), which it leaves for
`ACTIVE` after `settle_polls` reads of the server (reads, not time, so tests are
deterministic). A soft reboot of a server whose guest does not answer ACPI
(`Server.soft_reboot_works = False`) stays in `REBOOT`, as Nova does until its own timeout:
the runbook must escalate to a hard reboot. Every request is recorded in `requests`, so a
test can assert that check mode sent no write.

Outside the contract, for the tests' health checks: `GET /guest/{id}` answers 200 when the
server is `ACTIVE` and its guest is healthy, else 503. A reboot, rebuild or move makes the
guest healthy again (what the runbooks are there to achieve).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_EXPIRES = "2099-01-01T00:00:00.000000Z"
COMPUTE_MAX_VERSION = "2.79"
IMAGE_ID = "0c3b6f3e-6a3b-4c6c-9a55-7d7e0c1a2b3c"


@dataclass
class Server:
    name: str
    host: str
    image: str = IMAGE_ID
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "ACTIVE"
    guest_healthy: bool = True
    soft_reboot_works: bool = True
    # A pending transition: (polls left, status afterwards, host afterwards).
    pending: tuple[int, str, str] | None = None

    def body(self, base: str) -> dict[str, Any]:
        task = {"REBOOT": "rebooting", "HARD_REBOOT": "rebooting_hard", "REBUILD": "rebuilding",
                "MIGRATING": "migrating"}.get(self.status)  # fmt: skip
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "tenant_id": Fake.PROJECT_ID,
            "user_id": Fake.USER_ID,
            "metadata": {},
            "addresses": {},
            "accessIPv4": "",
            "accessIPv6": "",
            "hostId": "",
            "created": "2026-01-01T00:00:00Z",
            "updated": "2026-01-01T00:00:00Z",
            "progress": 0,
            "locked": False,
            "image": {"id": self.image, "links": []} if self.image else "",
            "flavor": {
                "original_name": "m1.small",
                "vcpus": 1,
                "ram": 2048,
                "disk": 20,
                "ephemeral": 0,
                "swap": 0,
                "extra_specs": {},
            },
            "OS-EXT-SRV-ATTR:host": self.host,
            "OS-EXT-SRV-ATTR:hypervisor_hostname": self.host,
            "OS-EXT-STS:task_state": task,
            "OS-EXT-STS:vm_state": "error" if self.status == "ERROR" else "active",
            "OS-EXT-STS:power_state": 1,
            "OS-EXT-AZ:availability_zone": "nova",
            "links": [{"rel": "self", "href": f"{base}/compute/v2.1/servers/{self.id}"}],
        }


@dataclass
class ComputeService:
    host: str
    status: str = "enabled"  # an operator disables a host to drain it
    state: str = "up"  # down: the host is dead (evacuate)


class Fake:
    PROJECT_ID = "b7d0e5f7c1a04e0c8d3b6a2f9e1c4d5a"
    USER_ID = "3f9a1c2b4d5e6f708192a3b4c5d6e7f8"
    USERNAME = "selfheal"
    PASSWORD = "secret"
    PROJECT = "ops"

    def __init__(self, settle_polls: int = 2) -> None:
        self.settle_polls = settle_polls
        self.servers: dict[str, Server] = {}
        self.services: dict[str, ComputeService] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.token = uuid.uuid4().hex
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # --- test controls --------------------------------------------------------------

    def start(self) -> Fake:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def add_host(self, host: str, **kw: str) -> ComputeService:
        self.services[host] = ComputeService(host, **kw)
        return self.services[host]

    def add_server(self, name: str, host: str, **kw: Any) -> Server:
        server = Server(name=name, host=host, **kw)
        self.servers[server.id] = server
        return server

    def writes(self) -> list[tuple[str, str, Any]]:
        """Requests that could change something (the token request only authenticates)."""
        return [r for r in self.requests if r[0] != "GET" and not r[1].endswith("/auth/tokens")]

    def actions(self, server_id: str) -> list[str]:
        """The actions requested for one server, e.g. ['reboot:SOFT', 'reboot:HARD']."""
        names = []
        for method, path, body in self.requests:
            if method == "POST" and path.endswith(f"/servers/{server_id}/action"):
                for name, args in body.items():
                    kind = args.get("type") if isinstance(args, dict) else None
                    names.append(f"{name}:{kind}" if kind else name)
        return names

    def clouds_yaml(self, name: str = "fake") -> dict[str, Any]:
        return {
            "clouds": {
                name: {
                    "auth_type": "password",
                    "auth": {
                        "auth_url": f"{self.base}/identity/v3",
                        "username": self.USERNAME,
                        "password": self.PASSWORD,
                        "project_name": self.PROJECT,
                        "user_domain_name": "Default",
                        "project_domain_name": "Default",
                    },
                    "region_name": "RegionOne",
                    "interface": "public",
                    "identity_api_version": 3,
                }
            }
        }

    # --- the state machine ----------------------------------------------------------

    def _begin(self, server: Server, status: str, then: str, host: str | None = None) -> None:
        server.status = status
        server.pending = (self.settle_polls, then, host or server.host)

    def _observe(self, server: Server) -> None:
        """One read of the server: a pending transition gets one poll closer."""
        if server.pending is None:
            return
        left, then, host = server.pending
        if left > 1:
            server.pending = (left - 1, then, host)
            return
        server.pending = None
        server.status, server.host = then, host
        if then == "ACTIVE":
            server.guest_healthy = True

    def _other_host(self, server: Server) -> str | None:
        for service in self.services.values():
            if (
                service.host != server.host
                and service.status == "enabled"
                and service.state == "up"
            ):
                return service.host
        return None

    def _action(self, server: Server, body: dict[str, Any]) -> tuple[int, Any]:
        (name, args), *_ = body.items()
        if server.pending is not None:
            return 409, _fault(
                409, f"Cannot '{name}' instance {server.id} while it is in task_state"
            )
        if name == "reboot":
            kind = (args or {}).get("type")
            if kind not in ("SOFT", "HARD"):
                return 400, _fault(400, "reboot type must be SOFT or HARD")
            if kind == "SOFT" and server.status != "ACTIVE":
                return 409, _fault(
                    409, f"Cannot 'reboot' instance {server.id} while it is in vm_state error"
                )
            if kind == "SOFT":
                server.status = "REBOOT"
                # A guest that ignores ACPI never comes back from a soft reboot.
                if server.soft_reboot_works:
                    self._begin(server, "REBOOT", "ACTIVE")
                return 202, None
            self._begin(server, "HARD_REBOOT", "ACTIVE")
            return 202, None
        if name == "rebuild":
            image = (args or {}).get("imageRef")
            if not image:
                return 400, _fault(400, "imageRef is required")
            server.image = image
            self._begin(server, "REBUILD", "ACTIVE")
            return 202, {"server": server.body(self.base)}
        if name == "os-migrateLive":
            if server.status != "ACTIVE":
                return 409, _fault(409, "live migration needs an ACTIVE server")
            target = (args or {}).get("host") or self._other_host(server)
            if not target:
                return 400, _fault(400, "No valid host was found.")
            self._begin(server, "MIGRATING", "ACTIVE", target)
            return 202, None
        if name == "evacuate":
            service = self.services.get(server.host)
            if service is None or service.state != "down":
                return 400, _fault(400, f"Compute service of {server.host} is still in use.")
            target = (args or {}).get("host") or self._other_host(server)
            if not target:
                return 400, _fault(400, "No valid host was found.")
            self._begin(server, "REBUILD", "ACTIVE", target)
            return 200, None
        return 400, _fault(400, f"action {name} is not supported by this contract mock")

    # --- HTTP -----------------------------------------------------------------------

    def _catalog(self) -> list[dict[str, Any]]:
        def entry(kind: str, name: str, url: str) -> dict[str, Any]:
            return {
                "type": kind,
                "name": name,
                "id": uuid.uuid5(uuid.NAMESPACE_URL, kind).hex,
                "endpoints": [
                    {
                        "id": uuid.uuid5(uuid.NAMESPACE_URL, url + i).hex,
                        "interface": i,
                        "region": "RegionOne",
                        "region_id": "RegionOne",
                        "url": url,
                    }
                    for i in ("public", "internal")
                ],
            }

        return [
            entry("identity", "keystone", f"{self.base}/identity"),
            entry("compute", "nova", f"{self.base}/compute/v2.1"),
            entry("image", "glance", f"{self.base}/image"),
        ]

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any, dict]:
        base = self.base
        parts = [p for p in path.split("/") if p]
        headers: dict[str, str] = {}
        # Identity
        if parts == ["identity"]:
            return 300, {"versions": {"values": [_identity_version(base)]}}, headers
        if parts == ["identity", "v3"]:
            return 200, {"version": _identity_version(base)}, headers
        if parts == ["identity", "v3", "auth", "tokens"] and method == "POST":
            password = (body or {}).get("auth", {}).get("identity", {}).get("password", {})
            user = password.get("user", {})
            if user.get("name") != self.USERNAME or user.get("password") != self.PASSWORD:
                return 401, _fault(401, "The request you have made requires authentication."), {}
            headers["X-Subject-Token"] = self.token
            return 201, {"token": self._token_body()}, headers
        if parts[:3] == ["identity", "v3", "auth"] and parts[3:] == ["catalog"]:
            return 200, {"catalog": self._catalog(), "links": {}}, headers
        # Compute
        if parts == ["compute"]:
            return 200, {"versions": [_compute_version(base)]}, headers
        if parts == ["compute", "v2.1"]:
            return 200, {"version": _compute_version(base)}, headers
        if parts[:2] == ["compute", "v2.1"]:
            return self._compute(method, parts[2:], query, body)
        # Image
        if parts == ["image"]:
            return 300, {"versions": [_image_version(base)]}, headers
        if parts == ["image", "v2", "images"]:
            images = (
                [_image(IMAGE_ID)]
                if query.get("name", [IMAGE_ID])[0] in (IMAGE_ID, "cirros")
                else []
            )
            return 200, {"images": images}, headers
        if parts[:3] == ["image", "v2", "images"] and len(parts) == 4:
            if parts[3] == IMAGE_ID:
                return 200, _image(IMAGE_ID), headers
            return 404, _fault(404, "image not found"), headers
        return 404, _fault(404, f"not part of this contract mock: {method} {path}"), headers

    def _compute(
        self, method: str, rest: list[str], query: dict, body: Any
    ) -> tuple[int, Any, dict]:
        if rest == ["servers", "detail"] and method == "GET":
            servers = list(self.servers.values())
            for key in ("name", "id"):
                if key in query:
                    servers = [s for s in servers if getattr(s, key) == query[key][0]]
            for s in servers:
                self._observe(s)
            return 200, {"servers": [s.body(self.base) for s in servers]}, {}
        if len(rest) >= 2 and rest[0] == "servers":
            server = self.servers.get(rest[1])
            if server is None:
                return 404, _fault(404, f"Instance {rest[1]} could not be found."), {}
            if len(rest) == 2 and method == "GET":
                self._observe(server)
                return 200, {"server": server.body(self.base)}, {}
            if rest[2:] == ["os-security-groups"] and method == "GET":
                return 200, {"security_groups": []}, {}
            if rest[2:] == ["action"] and method == "POST" and isinstance(body, dict) and body:
                status, reply = self._action(server, body)
                return status, reply, {}
        if rest == ["os-services"] and method == "GET":
            services = [
                {
                    "id": i,
                    "binary": "nova-compute",
                    "host": s.host,
                    "zone": "nova",
                    "status": s.status,
                    "state": s.state,
                    "forced_down": s.state == "down",
                    "disabled_reason": None,
                    "updated_at": "2026-01-01T00:00:00.000000",
                }
                for i, s in enumerate(self.services.values(), 1)
            ]
            for key in ("host", "binary"):
                if key in query:
                    services = [s for s in services if s[key] == query[key][0]]
            return 200, {"services": services}, {}
        if rest == ["flavors", "detail"] and method == "GET":
            return 200, {"flavors": [_flavor()]}, {}
        if rest[:1] == ["flavors"] and len(rest) >= 2 and method == "GET":
            if rest[1] not in ("1", "m1.small"):
                return 404, _fault(404, f"Flavor {rest[1]} could not be found."), {}
            if rest[2:] == ["os-extra_specs"]:
                return 200, {"extra_specs": {}}, {}
            return 200, {"flavor": _flavor()}, {}
        return 404, _fault(404, f"not part of this contract mock: {method} /{'/'.join(rest)}"), {}

    def _token_body(self) -> dict[str, Any]:
        domain = {"id": "default", "name": "Default"}
        return {
            "methods": ["password"],
            "expires_at": TOKEN_EXPIRES,
            "issued_at": "2026-01-01T00:00:00.000000Z",
            "user": {"id": self.USER_ID, "name": self.USERNAME, "domain": domain},
            "project": {"id": self.PROJECT_ID, "name": self.PROJECT, "domain": domain},
            "roles": [{"id": "admin", "name": "admin"}],
            "catalog": self._catalog(),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("latin-1")
                path = url.path.rstrip("/") or "/"
                open_paths = (
                    "/identity",
                    "/identity/v3",
                    "/identity/v3/auth/tokens",
                    "/compute",
                    "/image",
                )
                with fake.lock:
                    fake.requests.append((self.command, path, body))
                    if path.startswith("/guest/"):
                        server = fake.servers.get(path.split("/")[2])
                        ok = (
                            server is not None
                            and server.status == "ACTIVE"
                            and server.guest_healthy
                        )
                        status, reply, headers = (200 if ok else 503), {"ok": ok}, {}
                    elif path not in open_paths and self.headers.get("X-Auth-Token") != fake.token:
                        status, reply, headers = 401, _fault(401, "authentication required"), {}
                    else:
                        status, reply, headers = fake._route(
                            self.command, path, parse_qs(url.query), body
                        )
                data = b"" if reply is None else json.dumps(reply).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("OpenStack-API-Version", f"compute {COMPUTE_MAX_VERSION}")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _fault(code: int, message: str) -> dict[str, Any]:
    return {"error" if code == 401 else "badRequest": {"code": code, "message": message}}


def _identity_version(base: str) -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
        ],
    }


def _compute_version(base: str) -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": COMPUTE_MAX_VERSION,
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}],
    }


def _image_version(base: str) -> dict[str, Any]:
    return {
        "id": "v2.15",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": f"{base}/image/v2/"}],
    }


def _flavor() -> dict[str, Any]:
    return {"id": "1", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20,
            "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0,
            "os-flavor-access:is_public": True, "description": None, "extra_specs": {},
            "links": []}  # fmt: skip


def _image(image_id: str) -> dict[str, Any]:
    return {
        "id": image_id,
        "name": "cirros",
        "status": "active",
        "visibility": "public",
        "disk_format": "qcow2",
        "container_format": "bare",
        "min_disk": 0,
        "min_ram": 0,
        "size": 21430272,
        "tags": [],
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "self": f"/v2/images/{image_id}",
        "file": f"/v2/images/{image_id}/file",
        "schema": "/v2/schemas/image",
    }
