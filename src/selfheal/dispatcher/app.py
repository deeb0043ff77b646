"""The dispatcher's HTTP API as a plain ASGI 3 application (no framework).

Every answer is JSON (``/metrics`` excepted). Bad input gets a 4xx naming the field; a 5xx
means the dispatcher itself could not do the job (the store is down), never bad input.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from selfheal.alerts import (
    SOURCES,
    PayloadError,
    SubscriptionConfirmation,
    normalise,
    parse_json,
)
from selfheal.alerts.https_url import URLError, fetch_https
from selfheal.alerts.normalise import check_subscribe_url
from selfheal.alerts.sns_verify import SignatureError, SNSVerifier
from selfheal.console.votes import ReasonError, note_reason, parse_reason
from selfheal.dispatcher.config import SourceConfig, Token
from selfheal.dispatcher.core import Dispatcher
from selfheal.dispatcher.openapi import openapi
from selfheal.dispatcher.rootcause import MODE as ROOT_CAUSE
from selfheal.dispatcher.rootcause import CandidateError, parse_candidates
from selfheal.errors import ConfigError, SelfhealError
from selfheal.health import HealthRegistry, event_loop_responsive, make_asgi_app, thread_alive
from selfheal.store import Incident, Run

log = logging.getLogger("selfheal.dispatcher.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_ID = re.compile(r"^[0-9]{1,18}$")
# one encoder for every answer: json.dumps with options builds a new one per call
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class HTTPError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message}
        if field is not None:
            self.body["field"] = field
        self.body.update(extra)
        self.headers: list[tuple[bytes, bytes]] = []


def _ts(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "fingerprint": incident.fingerprint,
        "source": incident.source,
        "name": incident.name,
        "labels": dict(incident.labels),
        "status": incident.status,
        "count": incident.count,
        "opened_at": _ts(incident.opened_at),
        "last_seen": _ts(incident.last_seen),
        "starts_at": _ts(incident.starts_at),
        "resolved_at": _ts(incident.resolved_at),
        "reopened_from": incident.reopened_from,
        "parent_id": incident.parent_id,
        "fold_reason": incident.fold_reason,
        "requester": incident.requester,
        "quarantined_at": _ts(incident.quarantined_at),
        "quarantine_reason": incident.quarantine_reason,
    }


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "incident_id": run.incident_id,
        "runbook": run.runbook,
        "target": run.target,
        "status": run.status,
        "attempts": run.attempts,
        "created_at": _ts(run.created_at),
        "not_before": _ts(run.not_before),
        "started_at": _ts(run.started_at),
        "finished_at": _ts(run.finished_at),
        "rc": run.rc,
        "worker_id": run.worker_id,
        "reason": run.reason,
    }


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


class API:
    def __init__(self, dispatcher: Dispatcher, *, manage_lifecycle: bool = True):
        self.d = dispatcher
        self.config = dispatcher.config
        self.manage_lifecycle = manage_lifecycle
        self._tokens = [(_digest(t.secret), t) for t in self.config.tokens]
        self.health = HealthRegistry()
        self.health.add_readiness("store", dispatcher.ready, timeout=2.0, ttl=1.0)
        self.health.add_readiness("pipeline", dispatcher.pipeline_ready, timeout=2.0, ttl=1.0)
        self._health_threads: set[str] = set()
        self.app = make_asgi_app(self.health, self._app)
        self.sns = SNSVerifier(self.config.source("cloudwatch_sns").signing_cert_hosts)
        self.refusals = RefusalRecorder(dispatcher)
        from selfheal.console.routes import ConsoleRoutes  # imports this module: late

        self.console = ConsoleRoutes(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    # -- health wiring (needs the running loop and the started threads) -----------------

    def _register_liveness(self) -> None:
        if "event_loop" not in self._health_threads:
            self.health.add_liveness(
                "event_loop", event_loop_responsive(asyncio.get_running_loop(), 1.0)
            )
            self._health_threads.add("event_loop")
        for thread in self.d.threads:
            if thread.name not in self._health_threads:
                self.health.add_liveness(thread.name, thread_alive(thread))
                self._health_threads.add(thread.name)

    # -- auth -----------------------------------------------------------------------------

    def _token(self, scope: Scope) -> Token | None:
        header = _header(scope, b"authorization")
        if header is None:
            return None
        kind, _, value = header.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            return None
        given = _digest(value.strip())
        found = None
        for digest, token in self._tokens:  # every token compared: no early exit
            digests = token.rotating.digests() if token.rotating is not None else (digest,)
            for candidate in digests:
                if hmac.compare_digest(given, candidate) and found is None:
                    found = token
        return found

    def _require(self, scope: Scope, scope_name: str) -> Token | None:
        """The caller's token, which must carry `scope_name` (None when the API is open)."""
        if not self.config.tokens and self.config.allow_unauthenticated:
            return None
        token = self._token(scope)
        if token is None:
            err = HTTPError(401, "missing or invalid bearer token")
            err.headers.append((b"www-authenticate", b'Bearer realm="selfheal"'))
            raise err
        if scope_name not in token.scopes:
            raise HTTPError(403, f"token {token.name!r} lacks the {scope_name!r} scope")
        return token

    def _authenticate(self, scope: Scope, source: str) -> tuple[str, Token | None]:
        """Before the body: the bearer token of a token source. Returns the sender recorded
        on the alerts (the token's name, or "source:<name>" for signed and open sources)
        and the token."""
        cfg = self.config.source(source)
        if cfg.auth == "token":
            token = self._require(scope, "intake")
            if token is not None:
                return token.name, token
        return f"source:{source}", None

    async def _check_signature(self, scope: Scope, cfg: SourceConfig, body: bytes) -> None:
        """An hmac source: HMAC-SHA256 (hex, "sha256=" prefix optional) over
        "<timestamp>:<body>" (Grafana's format), the timestamp (Unix seconds, its own header)
        within hmac_tolerance_s of now, and each signed delivery accepted once: its digest is
        kept in the store until the timestamp leaves the tolerance, shared by every replica.
        Body-only signatures only with hmac_require_timestamp: false (no replay guard)."""
        header = _header(scope, cfg.hmac_header.lower().encode())
        if header is None:
            raise HTTPError(401, f"missing signature header {cfg.hmac_header}")
        stamp_header = cfg.timestamp_header()
        stamp = _header(scope, stamp_header.lower().encode())
        if stamp is None and cfg.hmac_require_timestamp:
            raise HTTPError(401, f"missing signature timestamp header {stamp_header}")
        if stamp is not None:
            stamp = stamp.strip()
            if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
                raise HTTPError(401, f"{stamp_header} must be Unix seconds")
            signed = stamp.encode() + b":" + body
        else:
            signed = body
        given = header.strip()
        if given.lower().startswith("sha256="):
            given = given[7:]
        given_bytes = given.lower().encode("latin-1")
        matched = False
        for secret in cfg.hmac_secrets():  # current secret, and the previous during its overlap
            expected = hmac.new(secret, signed, hashlib.sha256).hexdigest().encode()
            matched |= hmac.compare_digest(given_bytes, expected)
        if not matched:
            raise HTTPError(403, f"bad signature in {cfg.hmac_header}")
        if stamp is None:
            return
        at = int(stamp)
        if abs(time.time() - at) > cfg.hmac_tolerance_s:
            raise HTTPError(
                403,
                f"signature timestamp outside the {cfg.hmac_tolerance_s:g} s tolerance"
                " (a replay, or a clock that is off)",
                stamp_header,
            )
        digest = hashlib.sha256(given_bytes + b"\n" + body).hexdigest()
        expires = datetime.fromtimestamp(at + cfg.hmac_tolerance_s, UTC)
        try:
            fresh = await asyncio.to_thread(
                self.d.store.remember_delivery, digest, cfg.name, expires
            )
        except SelfhealError as exc:
            raise HTTPError(503, f"store unavailable: {exc}") from None
        if not fresh:
            raise HTTPError(403, "this signed delivery was already received (a replay)")

    # -- dispatch -------------------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if len(self._health_threads) <= len(self.d.threads):  # wired once all threads are
            self._register_liveness()
        try:
            status, body, headers = await self._route(scope, receive)
        except HTTPError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
            source = _source_of(scope)
            if source:
                self.d.metrics.rejected.inc(source=source, status=str(status))
        except Exception:
            log.exception("request failed", extra={"path": scope.get("path")})
            status, body, headers = 500, {"error": "internal error"}, []
        if isinstance(body, bytes):
            payload = body
        else:
            payload = _JSON(body).encode()
            headers = [(b"content-type", b"application/json"), *headers]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.manage_lifecycle:
                        await asyncio.to_thread(self.d.start)
                    self._register_liveness()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.manage_lifecycle:
                    await asyncio.to_thread(self.d.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, Any, list]:
        method = scope.get("method", "GET").upper()
        parts = [p for p in scope.get("path", "").split("/") if p]
        if len(parts) == 2 and parts[0] == "alerts":
            _allow(method, "POST")
            return await self._intake(scope, receive, parts[1])
        if parts == ["openapi.json"]:
            _allow(method, "GET")
            return 200, openapi(), []
        if parts == ["metrics"]:
            _allow(method, "GET")
            text = await asyncio.to_thread(self.d.metrics.render)
            return 200, text, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        if len(parts) == 3 and parts[0] == "incidents" and parts[2] == "release":
            _allow(method, "POST")
            return await self._release(scope, receive, parts[1])
        if len(parts) == 3 and parts[0] == "incidents" and parts[2] == "root-cause":
            _allow(method, "POST")
            self._require(scope, "intake")
            return await self._root_cause(scope, receive, parts[1])
        if parts and parts[0] == "incidents" and len(parts) <= 2:
            _allow(method, "GET")
            self._require(scope, "read")
            if len(parts) == 1:
                return await self._incidents(scope)
            return await self._incident(parts[1])
        if len(parts) == 3 and parts[0] == "runs" and parts[2] == "cancel":
            _allow(method, "POST")
            return await self._cancel_run(scope, receive, parts[1])
        if len(parts) == 2 and parts[0] == "runs":
            _allow(method, "GET")
            self._require(scope, "read")
            run_id = _int_id(parts[1], "id")
            run = await asyncio.to_thread(self.d.store.get_run, run_id)
            if run is None:
                raise HTTPError(404, f"no run {run_id}")
            return 200, run_json(run), []
        if parts and parts[0] == "approvals":
            return await self._approvals(scope, receive, method, parts)
        if parts == ["admin", "reload"]:
            _allow(method, "POST")
            return await self._reload(scope, receive)
        answer = await self.console.route(scope, method, parts)  # /ui, /whoami, /freeze...
        if answer is not None:
            return answer
        raise HTTPError(404, "not found")

    # -- intake ---------------------------------------------------------------------------

    async def _intake(self, scope: Scope, receive: Receive, source: str) -> tuple[int, Any, list]:
        if source not in SOURCES or not self.config.source(source).enabled:
            raise HTTPError(404, f"unknown source {source[:64]!r}", "source")
        seen: dict[str, Any] = {}  # what the refusal record can name
        try:
            return await self._accept(scope, receive, source, seen)
        except HTTPError as exc:
            if exc.status in REFUSALS_AUDITED:
                await self.refusals.refused(source, exc, seen)
            raise

    async def _accept(
        self, scope: Scope, receive: Receive, source: str, seen: dict[str, Any]
    ) -> tuple[int, Any, list]:
        cfg = self.config.source(source)
        sender, token = self._authenticate(scope, source)
        seen["token"] = token.name if token is not None else None
        _check_content_type(scope, source)
        body = await _read_body(scope, receive, self.config.max_body, self.config.body_timeout_s)
        seen["body"] = body
        if cfg.auth == "hmac":
            await self._check_signature(scope, cfg, body)
        if source == "cloudwatch_sns" and cfg.verify_signatures:
            await self._verify_sns(body)
        try:
            result = normalise(
                source,
                body,
                mapping=cfg.mapping if source == "generic" else None,
                sender=sender,
            )
        except PayloadError as exc:
            raise HTTPError(422 if exc.path != "(payload)" else 400, str(exc), exc.path) from None
        except SelfhealError as exc:  # a bad generic mapping: configuration, not input
            raise HTTPError(400, str(exc), getattr(exc, "path", None)) from None
        if isinstance(result, SubscriptionConfirmation):
            return await self._subscription(result)
        try:  # answered only once the group commit holding these alerts is durable
            results = await self.d.submit_async(result)
        except SelfhealError as exc:
            raise HTTPError(503, f"store unavailable: {exc}") from None
        return (
            202,
            {
                "accepted": len(results),
                "results": [
                    {
                        "alert_id": r.alert_id,
                        "incident_id": r.incident_id,
                        "decision": r.decision,
                        "fingerprint": r.fingerprint,
                    }
                    for r in results
                ],
            },
            [],
        )

    async def _subscription(self, msg: SubscriptionConfirmation) -> tuple[int, Any, list]:
        if not self.config.source("cloudwatch_sns").confirm_subscriptions:
            self.d.record_subscription(msg.kind, msg.topic_arn, False, "")
            return (
                202,
                {
                    "status": "recorded",
                    "kind": msg.kind,
                    "topic_arn": msg.topic_arn,
                    "instructions": (
                        "Subscription confirmation is off: confirm it in the SNS console or"
                        " with `aws sns confirm-subscription --topic-arn <arn> --token <token>`"
                        " (the token is in the message), or set"
                        " sources.cloudwatch_sns.confirm_subscriptions: true."
                    ),
                },
                [],
            )

        try:  # the same strict parse as at intake; the fetch uses its host and target only
            url = check_subscribe_url(msg.subscribe_url)
        except URLError as exc:
            raise HTTPError(422, f"SubscribeURL: {exc}", "SubscribeURL") from None
        try:
            await asyncio.to_thread(fetch_https, url, timeout=10.0, limit=65536)
        except OSError as exc:
            self.d.record_subscription(msg.kind, msg.topic_arn, False, str(exc))
            raise HTTPError(502, f"could not confirm the subscription: {exc}") from None
        self.d.record_subscription(msg.kind, msg.topic_arn, True, "")
        return 200, {"status": "confirmed", "kind": msg.kind, "topic_arn": msg.topic_arn}, []

    async def _verify_sns(self, body: bytes) -> None:
        try:  # the intake's strict reader: depth limit, no duplicate keys, size limit
            message = parse_json(body, max_bytes=self.config.max_body)
        except PayloadError as exc:
            raise HTTPError(400, str(exc), exc.path) from None
        try:
            await asyncio.to_thread(self.sns.verify, message)
        except SignatureError as exc:
            raise HTTPError(exc.status, f"SNS signature: {exc}", exc.field) from None

    # -- operate --------------------------------------------------------------------------

    async def _cancel_run(
        self, scope: Scope, receive: Receive, raw_id: str
    ) -> tuple[int, Any, list]:
        token = self._require(scope, "operate")
        if token is None:
            raise HTTPError(403, "canceling a run needs an identity: configure API tokens")
        run_id = _int_id(raw_id, "id")
        body = await _read_body(scope, receive, 64 * 1024, self.config.body_timeout_s)
        try:
            reason = parse_reason(body, required=True)
        except ReasonError as exc:
            raise HTTPError(400, str(exc), exc.field) from None
        status, what, run = await asyncio.to_thread(
            self.d.cancel_run, run_id, token.name, reason or ""
        )
        if status >= 400:
            raise HTTPError(status, what)
        return status, {"status": what, "run": run_json(run)}, []

    async def _release(self, scope: Scope, receive: Receive, raw_id: str) -> tuple[int, Any, list]:
        """Put a quarantined incident through the pipeline again (operate scope)."""
        token = self._require(scope, "operate")
        incident_id = _int_id(raw_id, "id")
        await _read_body(scope, receive, 64 * 1024)  # nothing expected
        who = token.name if token is not None else "-"
        incident = await asyncio.to_thread(self.d.release_quarantine, incident_id, who)
        if incident is None:
            raise HTTPError(409, f"incident {incident_id} is not quarantined (or does not exist)")
        return 200, {"status": "released", "incident": incident_json(incident)}, []

    # -- admin ----------------------------------------------------------------------------

    async def _reload(self, scope: Scope, receive: Receive) -> tuple[int, Any, list]:
        token = self._require(scope, "admin")
        await _read_body(scope, receive, 64 * 1024, self.config.body_timeout_s)  # nothing expected
        try:
            body = await asyncio.to_thread(self.d.reload_policy, token.name if token else "-")
        except ConfigError as exc:
            raise HTTPError(400, f"policy not reloaded: {exc}", exc.path) from None
        except SelfhealError as exc:
            raise HTTPError(503, str(exc)) from None
        return 200, body, []

    # -- reads ----------------------------------------------------------------------------

    async def _incidents(self, scope: Scope) -> tuple[int, Any, list]:
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        status = query.get("status", [None])[0]
        if status not in (None, "open", "resolved"):
            raise HTTPError(400, "must be open or resolved", "status")
        raw_limit = query.get("limit", ["100"])[0]
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise HTTPError(400, "must be an integer from 1 to 1000", "limit")
        incidents = await asyncio.to_thread(
            self.d.store.list_incidents, status=status, limit=int(raw_limit)
        )
        return 200, {"incidents": [incident_json(i) for i in incidents]}, []

    async def _incident(self, raw_id: str) -> tuple[int, Any, list]:
        incident_id = _int_id(raw_id, "id")

        def load() -> dict[str, Any] | None:
            incident = self.d.store.get_incident(incident_id)
            if incident is None:
                return None
            out = incident_json(incident)
            # from the incident's counter: reading every stored alert of a storm is not cheap
            out["dedup"] = {"firing": incident.count, "duplicates": max(0, incident.count - 1)}
            out["decisions"] = [
                {"id": d.id, "mode": d.mode, "reasons": d.reasons, "at": _ts(d.at)}
                for d in self.d.store.list_decisions(incident_id)
            ]
            out["runs"] = [run_json(r) for r in self.d.store.list_runs(incident_id=incident_id)]
            return out

        body = await asyncio.to_thread(load)
        if body is None:
            raise HTTPError(404, f"no incident {incident_id}")
        return 200, body, []

    async def _root_cause(self, scope: Scope, receive: Receive, raw_id: str):
        incident_id = _int_id(raw_id, "id")
        body = await _read_body(scope, receive, self.config.max_body, self.config.body_timeout_s)
        try:
            reasons = parse_candidates(body)
        except CandidateError as exc:
            raise HTTPError(422, exc.message, exc.field) from None

        def record() -> int | None:
            if self.d.store.get_incident(incident_id) is None:
                return None
            decision = self.d.store.record_decision(incident_id, ROOT_CAUSE, reasons)
            self.d._audit(
                "incident.root_cause",
                incident_id=incident_id,
                outcome="attached",
                reasons=[r["message"] for r in reasons],
                data={"services": [r["service"] for r in reasons]},
            )
            return decision.id

        decision_id = await asyncio.to_thread(record)
        if decision_id is None:
            raise HTTPError(404, f"no incident {incident_id}")
        return 201, {"incident_id": incident_id, "decision_id": decision_id}, []

    # -- approvals ------------------------------------------------------------------------

    async def _approvals(
        self, scope: Scope, receive: Receive, method: str, parts: list[str]
    ) -> tuple[int, Any, list]:
        if len(parts) == 1:
            _allow(method, "GET")
            self._require(scope, "read")
            pending = await asyncio.to_thread(self.d.pending_approvals)
            return 200, {"approvals": pending}, []
        if len(parts) == 2:
            _allow(method, "GET")
            self._require(scope, "read")
            record = await asyncio.to_thread(self.d.state.load_approval, parts[1][:200])
            if record is None:
                raise HTTPError(404, f"no approval {parts[1][:64]!r}")
            return 200, record, []
        if len(parts) == 3 and parts[2] in ("approve", "deny"):
            _allow(method, "POST")
            token = self._require(scope, "approve")
            if token is None:
                raise HTTPError(403, "approvals need an identity: configure API tokens")
            body = await _read_body(scope, receive, 64 * 1024, self.config.body_timeout_s)
            try:  # console identities must say why; scope-only tokens may
                reason = parse_reason(body, required=token.console_role is not None)
            except ReasonError as exc:
                raise HTTPError(400, str(exc), exc.field) from None
            verdict = parts[2]
            outcome = await asyncio.to_thread(
                self.d.vote, parts[1][:200], verdict, token.name, token.roles
            )
            if reason and outcome.status == 200:
                await asyncio.to_thread(
                    note_reason, self.d, parts[1][:200], token.name, verdict, reason
                )
            return outcome.status, outcome.body, []
        raise HTTPError(404, "not found")


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed and not (method == "HEAD" and "GET" in allowed):
        err = HTTPError(405, f"method {method} not allowed")
        err.headers.append((b"allow", ", ".join(allowed).encode()))
        raise err


def _int_id(raw: str, field: str) -> int:
    if not _ID.match(raw):
        raise HTTPError(400, "must be a positive integer", field)
    return int(raw)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _source_of(scope: Scope) -> str | None:
    parts = [p for p in scope.get("path", "").split("/") if p]
    if len(parts) == 2 and parts[0] == "alerts" and parts[1] in SOURCES:
        return parts[1]
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int, timeout: float = 30.0) -> bytes:
    """The whole request body, at most `limit` bytes (413), all of it within `timeout`
    seconds (408): a sender dribbling a byte at a time cannot hold a request open."""
    length = _header(scope, b"content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise HTTPError(400, "bad Content-Length", "Content-Length")
        if int(length) > limit:
            raise HTTPError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise HTTPError(400, "client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise HTTPError(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks)
    except TimeoutError:
        err = HTTPError(408, f"request body not received within {timeout:g} s")
        err.headers.append((b"connection", b"close"))
        raise err from None


# Media types a JSON body may be sent as; an SNS HTTP(S) subscription posts its JSON envelope
# as text/plain (charset=UTF-8), so that one source accepts it too. A missing Content-Type is
# refused: every real sender sets one, and guessing is how a form post becomes an alert.
_JSON_TYPE = re.compile(r"application/(?:[a-z0-9.+-]+\+)?json")
_EXTRA_TYPES = {"cloudwatch_sns": frozenset({"text/plain"})}


def _check_content_type(scope: Scope, source: str) -> None:
    raw = _header(scope, b"content-type")
    if raw is None:
        raise HTTPError(415, "missing Content-Type (send application/json)", "Content-Type")
    media = raw.split(";", 1)[0].strip().lower()
    if _JSON_TYPE.fullmatch(media) or media in _EXTRA_TYPES.get(source, ()):
        return
    allowed = "application/json" + (" or text/plain" if source in _EXTRA_TYPES else "")
    raise HTTPError(
        415, f"unsupported Content-Type {media[:64]!r} (send {allowed})", "Content-Type"
    )


# Intake refusals about what was sent (and who sent it) leave an audit record and a log line.
REFUSALS_AUDITED = frozenset({400, 401, 403, 408, 413, 415, 422})


class RefusalRecorder:
    """Audit and log intake refusals, bounded: a token bucket per source (`burst` records,
    refilled at `rate` a second). Refusals beyond it are counted, and the next record the
    bucket allows is preceded by one ``intake.refused.suppressed`` record with the count.
    The append runs in a worker thread, never on the event loop."""

    def __init__(self, dispatcher: Dispatcher, *, burst: int = 20, rate: float = 1.0):
        self.d = dispatcher
        self.burst = burst
        self.rate = rate
        self._buckets: dict[str, list[float]] = {}  # source -> [tokens, last refill]
        self.suppressed: dict[str, int] = {}
        self.recorded = 0

    def _take(self, source: str, now: float) -> bool:
        bucket = self._buckets.setdefault(source, [float(self.burst), now])
        bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        self.suppressed[source] = self.suppressed.get(source, 0) + 1
        return False

    async def refused(self, source: str, exc: HTTPError, seen: dict[str, Any]) -> None:
        if not self._take(source, time.monotonic()):
            return
        suppressed = self.suppressed.pop(source, 0)
        body = seen.get("body")
        reason = str(exc.body.get("error", ""))[:300]
        field = exc.body.get("field")
        event = {
            "target": source,
            "outcome": str(exc.status),
            "reasons": [reason],
            "actor": {"user": seen.get("token") or f"source:{source}"},
            "data": {
                "source": source,
                "status": exc.status,
                "reason": reason,
                "field": field,
                "sha256": hashlib.sha256(body).hexdigest() if body is not None else None,
                "bytes": len(body) if body is not None else None,
                "identity": seen.get("token"),
            },
        }
        log.warning(
            "intake refused: %s %d %s",
            source,
            exc.status,
            reason,
            extra={
                "source": source,
                "status": exc.status,
                "field": field,
                "identity": event["data"]["identity"],
            },
        )
        if suppressed:
            log.warning("intake refused: %d more refusals from %s suppressed", suppressed, source)
        await asyncio.to_thread(self._write, event, suppressed)
        self.recorded += 1

    def _write(self, event: dict[str, Any], suppressed: int) -> None:
        source = event["target"]
        if suppressed:
            self.d._audit(
                "intake.refused.suppressed",
                target=source,
                outcome="suppressed",
                reasons=[f"{suppressed} more refusals suppressed"],
                data={"source": source, "count": suppressed},
            )
        self.d._audit("intake.refused", **event)
