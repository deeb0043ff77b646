"""WSGI adapter: `/livez` and `/readyz` in front of any WSGI application."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._http import LIVEZ_PATH, READYZ_PATH, not_found, respond, routes, status_line
from .registry import HealthRegistry

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_wsgi_app(
    registry: HealthRegistry,
    app: WSGIApp | None = None,
    *,
    livez_path: str = LIVEZ_PATH,
    readyz_path: str = READYZ_PATH,
) -> WSGIApp:
    """A WSGI app serving the two health paths and handing every other path to `app`
    (404 without one). Checks run in the registry's worker threads with their timeouts."""
    table = routes(livez_path, readyz_path)

    def health_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        kind = table.get(environ.get("PATH_INFO") or "/")
        if kind is None:
            if app is not None:
                return app(environ, start_response)
            status, headers, body = not_found()
        else:
            method = str(environ.get("REQUEST_METHOD", "GET")).upper()
            status, headers, body = respond(registry, kind, method, environ.get("QUERY_STRING", ""))
        start_response(status_line(status), headers)
        return [body]

    return health_app
