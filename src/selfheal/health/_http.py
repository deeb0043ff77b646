"""The HTTP side shared by the WSGI and ASGI adapters: routing, query, headers, body."""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs

from .registry import LIVENESS, READINESS, HealthRegistry

LIVEZ_PATH = "/livez"
READYZ_PATH = "/readyz"
_FALSE = {"0", "false", "no", "off"}


def routes(livez_path: str, readyz_path: str) -> dict[str, str]:
    if livez_path == readyz_path:
        raise ValueError("livez_path and readyz_path must differ")
    return {livez_path: LIVENESS, readyz_path: READINESS}


def _headers(body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
        ("Content-Length", str(len(body))),
        *extra,
    ]


def verbose_from_query(query: str) -> bool:
    values = parse_qs(query, keep_blank_values=True).get("verbose")
    return not (values and values[-1].strip().lower() in _FALSE)


def respond(
    registry: HealthRegistry, kind: str, method: str, query: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of a health request; runs the checks (blocking)."""
    if method not in ("GET", "HEAD"):
        body = b'{"status":"fail","reason":"method not allowed"}'
        return 405, _headers(body, (("Allow", "GET, HEAD"),)), body
    report = registry.run(kind)
    body = report.to_json(verbose=verbose_from_query(query))
    headers = _headers(body)
    return report.http_status, headers, b"" if method == "HEAD" else body


def not_found() -> tuple[int, list[tuple[str, str]], bytes]:
    body = b'{"status":"fail","reason":"not found"}'
    return 404, _headers(body), body


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"
