"""Built-in checks.

Readiness (dependency) probes: `tcp()`, `http()`, `postgres()`. They return
`DependencyProbe` objects, which `HealthRegistry.add_liveness()` refuses: a dependency must
never decide whether a process is restarted.

Liveness helpers: `thread_alive()`, `event_loop_responsive()`. They only look at the
process's own state.

Standard library only; the postgres probe uses psycopg or psycopg2 when one is importable
and otherwise fails with a clear reason (nothing is imported before the first check).
"""

from __future__ import annotations

import asyncio
import base64
import http.client as http_client
import importlib
import math
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from urllib.parse import unquote, urlsplit

from .redact import clean_reason, redact

POSTGRES_DRIVER_MISSING = "postgres driver not installed (psycopg or psycopg2)"
_BODY_LIMIT = 64 * 1024


class CheckFailed(Exception):
    """Raised by a check to fail with exactly this (already human) reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DependencyProbe:
    """A readiness check of something outside the process (database, service, port).

    `check(timeout)` returns None when the dependency is usable and raises `CheckFailed`
    otherwise; the registry passes each check's own timeout so sockets give up in time.
    """

    kind = "dependency"

    def __init__(self, target: str, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.target = redact(target, self.secrets)

    def check(self, timeout: float) -> None:
        raise NotImplementedError

    def __call__(self) -> bool:
        self.check(1.0)
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


def _network_reason(exc: BaseException, what: str) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {what}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {what}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed for {what}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({what})"
    return f"{type(exc).__name__} talking to {what}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TCPProbe(DependencyProbe):
    kind = "tcp"

    def __init__(self, host: str, port: int) -> None:
        port = int(port)
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        self.host = host
        self.port = port
        super().__init__(_hostport(host, port))

    def check(self, timeout: float) -> None:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                pass
        except OSError as exc:
            raise CheckFailed(_network_reason(exc, self.target)) from None


class HTTPProbe(DependencyProbe):
    kind = "http"

    def __init__(
        self,
        url: str,
        expect_status: Iterable[int] = (200,),
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("http() needs an http:// or https:// URL with a host")
        self.url = url
        self.expect_status = tuple(int(s) for s in expect_status)
        if not self.expect_status:
            raise ValueError("expect_status must name at least one status")
        self.method = method.upper()
        self.headers = dict(headers or {})
        self.verify_tls = verify_tls
        secrets = [unquote(parts.password)] if parts.password else []
        secrets += [v for k, v in self.headers.items() if k.lower() == "authorization"]
        super().__init__(url, secrets)

    def check(self, timeout: float) -> None:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if not self.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            conn: http_client.HTTPConnection = http_client.HTTPSConnection(
                host, parts.port, timeout=timeout, context=context
            )
        else:
            conn = http_client.HTTPConnection(host, parts.port, timeout=timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": "selfheal-health", **self.headers}
        if parts.username is not None and "Authorization" not in headers:
            raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        what = _hostport(host, parts.port or (443 if parts.scheme == "https" else 80))
        try:
            try:
                conn.request(self.method, target, headers=headers)
                response = conn.getresponse()
                response.read(_BODY_LIMIT)
            finally:
                conn.close()
        except (OSError, http_client.HTTPException) as exc:
            if isinstance(exc, OSError):
                raise CheckFailed(_network_reason(exc, what)) from None
            raise CheckFailed(f"bad HTTP response from {what}") from None
        if response.status not in self.expect_status:
            expected = ", ".join(str(s) for s in self.expect_status)
            raise CheckFailed(f"HTTP {response.status} from {what}, expected {expected}")


def load_postgres_driver() -> ModuleType | None:
    """psycopg (3) or psycopg2, whichever is importable first; None without a driver."""
    for name in ("psycopg", "psycopg2"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


_DSN_KV_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def dsn_secrets(dsn: str) -> list[str]:
    """The password(s) written in a postgres DSN (URL or key=value form)."""
    found: list[str] = []
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    for match in _DSN_KV_PASSWORD.finditer(dsn):
        value = match.group(1)
        found += [value, value.strip("'")]
    return [s for s in found if s]


class PostgresProbe(DependencyProbe):
    kind = "postgres"

    def __init__(self, dsn: str, *, query: str = "SELECT 1") -> None:
        self.dsn = dsn
        self.query = query
        super().__init__(dsn, dsn_secrets(dsn))

    def check(self, timeout: float) -> None:
        driver = load_postgres_driver()
        if driver is None:
            raise CheckFailed(POSTGRES_DRIVER_MISSING)
        try:
            # libpq counts connect_timeout in whole seconds, 2 at least.
            conn = driver.connect(self.dsn, connect_timeout=max(2, math.ceil(timeout)))
            try:
                cursor = conn.cursor()
                try:
                    cursor.execute(self.query)
                    if cursor.description is not None:
                        cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                conn.close()
        except Exception as exc:  # the drivers' errors share no importable base class
            raise CheckFailed("postgres: " + clean_reason(str(exc), self.secrets)) from None


def tcp(host: str, port: int) -> TCPProbe:
    """Readiness: a TCP connection to host:port can be opened."""
    return TCPProbe(host, port)


def http(
    url: str,
    expect_status: Iterable[int] = (200,),
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    verify_tls: bool = True,
) -> HTTPProbe:
    """Readiness: `method url` answers one of `expect_status` (redirects are not followed)."""
    return HTTPProbe(url, expect_status, method=method, headers=headers, verify_tls=verify_tls)


def postgres(dsn: str, *, query: str = "SELECT 1") -> PostgresProbe:
    """Readiness: connect with psycopg/psycopg2 and run `query`; the password is redacted."""
    return PostgresProbe(dsn, query=query)


# --- liveness helpers: the process's own state only -----------------------------------


def thread_alive(thread: threading.Thread) -> Callable[[], bool]:
    """Liveness: the given worker thread is still running."""

    def check() -> bool:
        if not thread.is_alive():
            raise CheckFailed(f"thread {thread.name} is not alive")
        return True

    return check


def event_loop_responsive(
    loop: asyncio.AbstractEventLoop, max_delay: float = 0.5
) -> Callable[[], bool]:
    """Liveness: `loop` runs a callback within `max_delay` seconds (not blocked or stuck).

    Call the returned function from another thread (the registry runs checks in its own
    worker threads, so this holds for both the WSGI and the ASGI adapters).
    """

    def check() -> bool:
        done = threading.Event()
        try:
            loop.call_soon_threadsafe(done.set)
        except RuntimeError:
            raise CheckFailed("event loop is closed") from None
        if not done.wait(max_delay):
            raise CheckFailed(f"event loop did not respond within {max_delay:g} s")
        return True

    return check
