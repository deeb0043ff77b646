"""The OpenAPI 3.1 description of the dispatcher's HTTP API (written by hand)."""

from __future__ import annotations

from typing import Any

from selfheal import __version__
from selfheal.alerts import SOURCES


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


def openapi() -> dict[str, Any]:
    from selfheal.console.openapi import console_paths

    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    auth = [{"bearer": []}]
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "selfheal dispatcher",
            "version": __version__,
            "description": "Alert intake, policy-gated remediation, approvals. See docs/dispatcher.md.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Selfheal-Signature",
                    "description": "[sha256=]<hex HMAC-SHA256 of '<timestamp>:<body>'>, the"
                    " timestamp (Unix seconds) in the source's timestamp header (Grafana's"
                    " X-Grafana-Alerting-Timestamp); header names per source",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": "string", "description": "path of the bad field"},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "accepted": {"type": "integer"},
                        "results": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "alert_id": {"type": "integer"},
                                    "incident_id": {"type": ["integer", "null"]},
                                    "decision": {
                                        "enum": [
                                            "new",
                                            "duplicate",
                                            "resolved",
                                            "reopened",
                                            "unmatched",
                                        ]
                                    },
                                    "fingerprint": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Incident": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "fingerprint": {"type": "string"},
                        "source": {"type": "string"},
                        "name": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "status": {"enum": ["open", "resolved"]},
                        "count": {"type": "integer"},
                        "opened_at": {"type": "string", "format": "date-time"},
                        "last_seen": {"type": "string", "format": "date-time"},
                        "resolved_at": {"type": ["string", "null"], "format": "date-time"},
                        "parent_id": {"type": ["integer", "null"]},
                        "fold_reason": {"type": ["string", "null"]},
                        "requester": {
                            "type": ["string", "null"],
                            "description": "who delivered the alert that opened it",
                        },
                        "quarantined_at": {"type": ["string", "null"], "format": "date-time"},
                        "quarantine_reason": {"type": ["string", "null"]},
                        "dedup": {"type": "object"},
                        "decisions": {"type": "array", "items": {"type": "object"}},
                        "runs": {"type": "array", "items": ref("Run")},
                    },
                },
                "Run": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "incident_id": {"type": "integer"},
                        "runbook": {"type": "string"},
                        "target": {"type": "string"},
                        "status": {
                            "enum": [
                                "queued",
                                "running",
                                "succeeded",
                                "failed",
                                "canceled",
                                "interrupted",
                            ]
                        },
                        "attempts": {"type": "integer"},
                        "rc": {"type": ["integer", "null"]},
                        "reason": {"type": ["string", "null"]},
                    },
                },
                "Approval": {"type": "object", "description": "the pending approval record"},
            },
        },
        "paths": {
            "/alerts/{source}": {
                "post": {
                    "summary": "Accept a webhook body; committed to the store before the 2xx",
                    "security": [{"bearer": []}, {"signature": []}],
                    "parameters": [
                        {
                            "name": "source",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": list(SOURCES)},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "description": "application/json or application/*+json (cloudwatch_sns"
                        " also text/plain, as SNS sends); any other or no Content-Type is 415",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "202": _json(ref("Accepted"), "stored (or an SNS handshake recorded)"),
                        "200": _json({"type": "object"}, "SNS subscription confirmed"),
                        "400": _err("not JSON, or the body as a whole is wrong"),
                        "401": _err("no or bad credentials, or no signature timestamp"),
                        "403": _err(
                            "bad signature (HMAC, or SNS Signature/SigningCertURL), a signature"
                            " timestamp outside the tolerance, a replayed signed delivery, or"
                            " the token lacks the intake scope"
                        ),
                        "404": _err("unknown or disabled source"),
                        "408": _err("the body did not arrive in time"),
                        "413": _err("body too large"),
                        "415": _err("Content-Type missing or not JSON"),
                        "422": _err(
                            "a field is wrong (a timestamp out of range too); `field` names it"
                        ),
                        "502": _err("the SNS signing certificate could not be fetched: retry"),
                        "503": _err("the store is unavailable: retry"),
                    },
                }
            },
            "/admin/reload": {
                "post": {
                    "summary": "Load and validate the policy file again, then swap it in",
                    "description": "Same as SIGHUP. Decisions in flight finish on the old policy;"
                    " a file that does not validate is refused and the old policy stays.",
                    "security": auth,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "status": {"const": "reloaded"},
                                    "old_digest": {"type": "string"},
                                    "new_digest": {"type": "string"},
                                    "changed": {"type": "boolean"},
                                },
                            },
                            "reloaded (sha256 digests of the old and new file)",
                        ),
                        "400": _err("the policy file does not validate; `field` names where"),
                        "401": _err("no or bad token"),
                        "403": _err("the token lacks the admin scope"),
                        "503": _err("the pipeline is busy: the new policy applies after its step"),
                    },
                }
            },
            "/incidents": {
                "get": {
                    "summary": "Incidents, newest first",
                    "security": auth,
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"enum": ["open", "resolved"]}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "incidents": {"type": "array", "items": ref("Incident")}
                                },
                            },
                            "incidents",
                        ),
                        "400": _err("bad query parameter"),
                        "401": _err("no or bad token"),
                    },
                }
            },
            "/incidents/{id}": {
                "get": {
                    "summary": "One incident with its dedup count, decisions and runs",
                    "security": auth,
                    "parameters": [id_param],
                    "responses": {
                        "200": _json(ref("Incident"), "the incident"),
                        "404": _err("no such incident"),
                    },
                }
            },
            "/incidents/{id}/root-cause": {
                "post": {
                    "summary": "Attach root-cause candidates (e.g. from trace isolation)",
                    "description": "Kept as a `root_cause` decision of the incident: shown in its"
                    " timeline and postmortem draft; never changes what is run. Needs the intake"
                    " scope.",
                    "security": auth,
                    "parameters": [id_param],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["candidates"],
                                    "properties": {
                                        "source": {"type": "string", "maxLength": 100},
                                        "candidates": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": 10,
                                            "items": {
                                                "type": "object",
                                                "additionalProperties": False,
                                                "required": ["service"],
                                                "properties": {
                                                    "service": {"type": "string"},
                                                    "operation": {"type": "string"},
                                                    "trace_id": {"type": "string"},
                                                    "reason": {"type": "string"},
                                                    "count": {"type": "integer", "minimum": 1},
                                                    "share": {
                                                        "type": "number",
                                                        "minimum": 0,
                                                        "maximum": 1,
                                                    },
                                                },
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"type": "object"}, "attached"),
                        "401": _err("no or bad token"),
                        "403": _err("the token lacks the intake scope"),
                        "404": _err("no such incident"),
                        "422": _err("bad candidates; `field` names which"),
                    },
                }
            },
            "/incidents/{id}/release": {
                "post": {
                    "summary": "Put a quarantined incident through the pipeline again",
                    "description": "An incident is quarantined when a pipeline step failed on"
                    " it; once the cause is fixed, an operator releases it. Needs the operate"
                    " scope.",
                    "security": auth,
                    "parameters": [id_param],
                    "responses": {
                        "200": _json({"type": "object"}, "released"),
                        "401": _err("no or bad token"),
                        "403": _err("the token lacks the operate scope"),
                        "409": _err("not quarantined, or no such incident"),
                    },
                }
            },
            "/runs/{id}": {
                "get": {
                    "summary": "One run",
                    "security": auth,
                    "parameters": [id_param],
                    "responses": {"200": _json(ref("Run"), "the run"), "404": _err("no such run")},
                }
            },
            "/runs/{id}/cancel": {
                "post": {
                    "summary": "Cancel a run (operate scope): a queued one at once, a running "
                    "one is stopped; no retry, no escalation",
                    "security": auth,
                    "parameters": [id_param],
                    "requestBody": _json(
                        {
                            "type": "object",
                            "required": ["reason"],
                            "properties": {"reason": {"type": "string"}},
                        },
                        "why (required)",
                    ),
                    "responses": {
                        "200": _json({"type": "object"}, "canceled (it was queued)"),
                        "202": _json({"type": "object"}, "canceling (it is running here)"),
                        "400": _err("no reason"),
                        "403": _err("no operate scope, or no identity"),
                        "404": _err("no such run"),
                        "409": _err("already finished, or running on another dispatcher"),
                    },
                }
            },
            **console_paths(auth, id_param, _json, _err),
            "/approvals": {
                "get": {
                    "summary": "Pending approvals",
                    "security": auth,
                    "responses": {"200": _json({"type": "object"}, "pending approval records")},
                }
            },
            "/approvals/{request_id}": {
                "get": {
                    "summary": "One approval record",
                    "security": auth,
                    "parameters": [
                        {
                            "name": "request_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(ref("Approval"), "the record"),
                        "404": _err("unknown"),
                    },
                }
            },
            **{
                f"/approvals/{{request_id}}/{verdict}": {
                    "post": {
                        "summary": f"{verdict.capitalize()} as the token's identity and roles",
                        "security": auth,
                        "parameters": [
                            {
                                "name": "request_id",
                                "in": "path",
                                "required": True,
                                "schema": {"type": "string"},
                            }
                        ],
                        "requestBody": _json(
                            {"type": "object", "properties": {"reason": {"type": "string"}}},
                            "why; required from tokens with a console_role",
                        ),
                        "responses": {
                            "200": _json({"type": "object"}, "vote recorded"),
                            "400": _err("no reason from a console identity"),
                            "403": _err("not an approver, self-approval, or no approve scope"),
                            "404": _err("unknown request"),
                            "409": _err("already closed, or a second vote"),
                        },
                    }
                }
                for verdict in ("approve", "deny")
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/livez": {
                "get": {
                    "summary": "Liveness: the event loop and every dispatcher thread",
                    "responses": {"200": {"description": "alive"}, "503": {"description": "not"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the store answers (and liveness)",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not"}},
                }
            },
        },
    }
