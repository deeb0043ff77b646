"""The console's endpoints in the dispatcher's OpenAPI description."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def console_paths(
    auth: list, id_param: dict, json_: Callable[..., dict], err: Callable[[str], dict]
) -> dict[str, Any]:
    obj = {"type": "object"}
    html = {"content": {"text/html": {}}}
    return {
        "/whoami": {
            "get": {
                "summary": "The token's identity, console role, scopes and groups",
                "security": auth,
                "responses": {"200": json_(obj, "who you are"), "401": err("no valid token")},
            }
        },
        "/incidents/{id}/timeline": {
            "get": {
                "summary": "An incident's timeline: alert, dedup, decisions, votes, runs,"
                " verification, escalation, resolution",
                "security": auth,
                "parameters": [id_param],
                "responses": {"200": json_(obj, "events, oldest first"), "404": err("unknown")},
            }
        },
        "/runs": {
            "get": {
                "summary": "Recent runs, newest first",
                "security": auth,
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 50}}
                ],
                "responses": {"200": json_(obj, "runs"), "400": err("bad limit")},
            }
        },
        "/runs/{id}/log": {
            "get": {
                "summary": "A run's output (ansible-runner stdout), secrets redacted",
                "security": auth,
                "parameters": [id_param],
                "responses": {"200": json_(obj, "the log"), "404": err("no such run")},
            }
        },
        "/freeze": {
            "get": {
                "summary": "The policy's freeze windows: open now, closing, opening next",
                "security": auth,
                "responses": {"200": json_(obj, "windows")},
            }
        },
        "/ui/": {
            "get": {
                "summary": "The operator console (static files under /ui/)",
                "responses": {"200": {"description": "the console", **html}},
            }
        },
        "/ui/report-ticket": {
            "post": {
                "summary": "A one-time URL (one minute) that opens the report page",
                "security": auth,
                "responses": {"200": json_(obj, "{url, ttl_s}")},
            }
        },
        "/ui/report": {
            "get": {
                "summary": "The HTML report with charts (a ticket or a bearer token)",
                "parameters": [{"name": "ticket", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the report", **html}},
            }
        },
    }
