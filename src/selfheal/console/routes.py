"""The console's HTTP routes, hooked into the dispatcher's ASGI app (`API._route`).

Static files under ``/ui/`` carry a strict Content-Security-Policy (scripts, styles and
frames from this origin only, no inline code); the data endpoints use the API's bearer
tokens and scopes like every other endpoint.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from selfheal.console import views
from selfheal.console.roles import console_role_of
from selfheal.console.tickets import Tickets
from selfheal.dispatcher.app import HTTPError, _allow, _int_id, run_json

STATIC = {
    "": ("index.html", b"text/html; charset=utf-8"),
    "index.html": ("index.html", b"text/html; charset=utf-8"),
    "console.js": ("console.js", b"text/javascript; charset=utf-8"),
    "console.css": ("console.css", b"text/css; charset=utf-8"),
}
CONSOLE_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    b" frame-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none';"
    b" form-action 'self'; frame-ancestors 'none'"
)
# the report: inline styles and SVG of its own, no script at all, only inside the console
REPORT_CSP = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
    b" form-action 'none'; frame-ancestors 'self'"
)
MAX_RUNS = 500


def _headers(content_type: bytes, csp: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", content_type),
        (b"content-security-policy", csp),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    ]


def _query(scope) -> dict[str, list[str]]:
    return parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))


class ConsoleRoutes:
    def __init__(self, api):
        self.api = api
        self.d = api.d
        self.tickets = Tickets()
        self._files: dict[str, bytes] = {}

    async def route(self, scope, method: str, parts: list[str]) -> tuple[int, Any, list] | None:
        """The answer for a console path, or None when `parts` is not one."""
        if parts[:1] == ["ui"]:
            return await self._ui(scope, method, parts[1:])
        if parts == ["whoami"]:
            _allow(method, "GET")
            return self._whoami(scope)
        if parts == ["freeze"]:
            _allow(method, "GET")
            self.api._require(scope, "read")
            body = await asyncio.to_thread(views.freeze_status, self.d.policy, datetime.now(UTC))
            return 200, body, []
        if parts == ["runs"]:
            _allow(method, "GET")
            self.api._require(scope, "read")
            return await self._runs(scope)
        if len(parts) == 3 and parts[0] == "runs" and parts[2] == "log":
            _allow(method, "GET")
            self.api._require(scope, "read")
            return await self._run_log(parts[1])
        if len(parts) == 3 and parts[0] == "incidents" and parts[2] == "timeline":
            _allow(method, "GET")
            self.api._require(scope, "read")
            return await self._timeline(parts[1])
        return None

    # -- identity -------------------------------------------------------------------------

    def _whoami(self, scope) -> tuple[int, Any, list]:
        open_api = not self.d.config.tokens and self.d.config.allow_unauthenticated
        token = None if open_api else self.api._token(scope)
        if token is None and not open_api:
            err = HTTPError(401, "missing or invalid bearer token")
            err.headers.append((b"www-authenticate", b'Bearer realm="selfheal"'))
            raise err
        role = console_role_of(token)
        return (
            200,
            {
                "name": token.name if token else None,
                "console_role": role,
                "scopes": sorted(token.scopes) if token else ["read"],
                "groups": sorted(token.roles) if token else [],
                "can_vote": token is not None and "approve" in token.scopes,
                "can_operate": token is not None and "operate" in token.scopes,
                # the API's rule (votes.parse_reason); the console asks for one from everyone
                "reason_required": token is not None and token.console_role is not None,
            },
            [],
        )

    # -- data -----------------------------------------------------------------------------

    async def _runs(self, scope) -> tuple[int, Any, list]:
        raw = _query(scope).get("limit", ["50"])[0]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_RUNS:
            raise HTTPError(400, f"must be an integer from 1 to {MAX_RUNS}", "limit")
        limit = int(raw)

        def load() -> list[dict[str, Any]]:
            out = []
            names: dict[int, str | None] = {}
            for run in views.recent_runs(self.d.store, limit):
                if run.incident_id not in names:
                    incident = self.d.store.get_incident(run.incident_id)
                    names[run.incident_id] = incident.name if incident else None
                out.append({**run_json(run), "incident_name": names[run.incident_id]})
            return out

        return 200, {"runs": await asyncio.to_thread(load)}, []

    async def _run_log(self, raw_id: str) -> tuple[int, Any, list]:
        run_id = _int_id(raw_id, "id")
        run = await asyncio.to_thread(self.d.store.get_run, run_id)
        if run is None:
            raise HTTPError(404, f"no run {run_id}")
        text = await asyncio.to_thread(views.run_log, run)
        return 200, {"run_id": run_id, "status": run.status, "log": text}, []

    async def _timeline(self, raw_id: str) -> tuple[int, Any, list]:
        incident_id = _int_id(raw_id, "id")

        def load() -> dict[str, Any] | None:
            incident = self.d.store.get_incident(incident_id)
            if incident is None:
                return None
            events = views.timeline(self.d.store, self.d.state, incident)
            return {"incident_id": incident_id, "status": incident.status, "events": events}

        body = await asyncio.to_thread(load)
        if body is None:
            raise HTTPError(404, f"no incident {incident_id}")
        return 200, body, []

    # -- static files and the report --------------------------------------------------------

    async def _ui(self, scope, method: str, rest: list[str]) -> tuple[int, Any, list]:
        if rest == ["report-ticket"]:
            _allow(method, "POST")
            self.api._require(scope, "read")
            ticket = self.tickets.issue()
            return 200, {"url": f"/ui/report?ticket={ticket}", "ttl_s": self.tickets.ttl_s}, []
        if rest == ["report"]:
            _allow(method, "GET")
            return await self._report(scope)
        _allow(method, "GET")
        name = "/".join(rest)
        if name not in STATIC:
            raise HTTPError(404, "not found")
        filename, content_type = STATIC[name]
        if filename not in self._files:
            path = resources.files("selfheal.console").joinpath("static", filename)
            self._files[filename] = path.read_bytes()
        return 200, self._files[filename], _headers(content_type, CONSOLE_CSP)

    async def _report(self, scope) -> tuple[int, Any, list]:
        ticket = _query(scope).get("ticket", [""])[0]
        if not (ticket and self.tickets.redeem(ticket)):
            self.api._require(scope, "read")  # no valid ticket: a bearer token then
        runbooks = sorted(self.d.policy.runbooks)
        available, page = await asyncio.to_thread(views.report_html, self.d.store, runbooks)
        headers = _headers(b"text/html; charset=utf-8", REPORT_CSP)
        headers.append((b"x-report-available", b"true" if available else b"false"))
        return 200, page.encode(), headers
