"""OpenTelemetry traces of incidents, exported as OTLP/HTTP JSON.

One trace per incident: its id is derived from the incident (fingerprint and id), so every
dispatcher sharing a store and every restart puts the incident's spans into the same trace
without storing anything. The intake span is the root (its id is derived too); the
decision, run and verify spans hang below it. The run's W3C ``traceparent``
(``00-<trace id>-<run span id>-01``) goes to the playbook as ``TRACEPARENT`` and the extra
var ``selfheal_traceparent``, so what the playbook emits joins the same trace.

Spans are queued and sent in batches by one background thread (``POST
{endpoint}/v1/traces``); a full queue drops the span and counts it, so tracing never slows
or blocks intake. Without an endpoint nothing is exported, but trace ids still flow to
playbooks.

Dispatcher config::

    tracing:
      endpoint: http://otel-collector:4318     # OTLP/HTTP receiver (optional)
      service_name: selfheal-dispatcher
      headers: {x-tenant: ops}                 # optional, sent with every export
      batch_size: 256
      queue_size: 4096
      interval_s: 2
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from selfheal import __version__
from selfheal.errors import ConfigError

log = logging.getLogger("selfheal.dispatcher.tracing")

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
KIND_INTERNAL, KIND_SERVER = 1, 2


@dataclass(frozen=True)
class TracingSettings:
    endpoint: str | None = None
    service_name: str = "selfheal-dispatcher"
    headers: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = 256
    queue_size: int = 4096
    interval_s: float = 2.0
    timeout_s: float = 5.0


def tracing_settings_from_data(raw: Any) -> TracingSettings:
    """The ``tracing:`` section of the dispatcher config."""
    if raw is None:
        return TracingSettings()
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", "tracing")
    known = {
        "endpoint",
        "service_name",
        "headers",
        "batch_size",
        "queue_size",
        "interval_s",
        "timeout_s",
    }
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}", "tracing")
    endpoint = raw.get("endpoint")
    if endpoint is not None:
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("must be an http(s) URL", "tracing.endpoint")
        endpoint = endpoint.rstrip("/")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict) or any(
        not isinstance(k, str) or not isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError("must be a mapping of strings", "tracing.headers")
    out: dict[str, Any] = {}
    for key, kind in (
        ("batch_size", int),
        ("queue_size", int),
        ("interval_s", float),
        ("timeout_s", float),
    ):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError("must be a positive number", f"tracing.{key}")
            out[key] = kind(value)
    return TracingSettings(
        endpoint=endpoint,
        service_name=str(raw.get("service_name", TracingSettings.service_name)),
        headers=dict(headers),
        **out,
    )


# -- ids ---------------------------------------------------------------------------------


def trace_id_for(incident_id: int, fingerprint: str) -> str:
    """The incident's trace id: 16 bytes as 32 hex digits, never all zero."""
    digest = hashlib.sha256(f"selfheal-trace/{fingerprint}/{incident_id}".encode()).digest()
    return (digest[:15] + b"\x01").hex()


def root_span_id(trace_id: str) -> str:
    """The id of the incident's root (intake) span: 8 bytes, derived from the trace id."""
    digest = hashlib.sha256(f"selfheal-root/{trace_id}".encode()).digest()
    return (digest[:7] + b"\x01").hex()


def new_span_id() -> str:
    while True:
        raw = os.urandom(8)
        if any(raw):
            return raw.hex()


def traceparent(trace_id: str, span_id: str) -> str:
    """A W3C trace-context ``traceparent`` header value (sampled)."""
    return f"00-{trace_id}-{span_id}-01"


# -- spans -------------------------------------------------------------------------------


@dataclass
class Span:
    trace_id: str
    span_id: str
    name: str
    parent_id: str | None = None
    start_ns: int = field(default_factory=time.time_ns)
    end_ns: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    status: int = STATUS_UNSET
    message: str = ""
    kind: int = KIND_INTERNAL

    @property
    def traceparent(self) -> str:
        return traceparent(self.trace_id, self.span_id)

    def fail(self, message: str) -> None:
        self.status, self.message = STATUS_ERROR, message[:500]

    def to_otlp(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": str(self.start_ns),
            "endTimeUnixNano": str(self.end_ns or time.time_ns()),
            "attributes": [_attribute(k, v) for k, v in self.attributes.items()],
            "status": {"code": self.status, **({"message": self.message} if self.message else {})},
        }
        if self.parent_id:
            out["parentSpanId"] = self.parent_id
        return out


def _attribute(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        wrapped: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        wrapped = {"intValue": str(value)}  # int64 is a string in OTLP/JSON
    elif isinstance(value, float):
        wrapped = {"doubleValue": value}
    else:
        wrapped = {"stringValue": str(value)}
    return {"key": key, "value": wrapped}


class Tracer:
    """Makes the incident's spans and hands finished ones to the exporter (if any)."""

    def __init__(self, settings: TracingSettings | None = None, *, instance: str = ""):
        self.settings = settings or TracingSettings()
        self.instance = instance
        self.dropped = 0  # spans lost to a full queue
        self.exported = 0
        self.failed_exports = 0
        self._queue: queue.Queue[Span | None] = queue.Queue(self.settings.queue_size)
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._quiet_until = 0.0
        if self.settings.endpoint:
            self._thread = threading.Thread(
                target=self._export_loop, name="selfheal-tracing", daemon=True
            )
            self._thread.start()

    def start(
        self,
        incident_id: int,
        fingerprint: str,
        name: str,
        *,
        root: bool = False,
        start_ns: int | None = None,
        **attributes: Any,
    ) -> Span:
        trace = trace_id_for(incident_id, fingerprint)
        span = Span(
            trace_id=trace,
            span_id=root_span_id(trace) if root else new_span_id(),
            name=name,
            parent_id=None if root else root_span_id(trace),
            kind=KIND_SERVER if root else KIND_INTERNAL,
            attributes={"selfheal.incident_id": incident_id, **attributes},
        )
        if start_ns is not None:
            span.start_ns = start_ns
        return span

    def child(self, parent: Span, name: str, **attributes: Any) -> Span:
        return Span(
            trace_id=parent.trace_id,
            span_id=new_span_id(),
            name=name,
            parent_id=parent.span_id,
            attributes={
                "selfheal.incident_id": parent.attributes.get("selfheal.incident_id"),
                **attributes,
            },
        )

    def end(self, span: Span) -> None:
        """Finish `span` and queue it for export (dropped and counted when the queue is full)."""
        if span.end_ns is None:
            span.end_ns = max(time.time_ns(), span.start_ns)
        if span.status == STATUS_UNSET:  # nobody failed it
            span.status = STATUS_OK
        if self._thread is None or self._closed.is_set():
            return
        try:
            self._queue.put_nowait(span)
        except queue.Full:
            self.dropped += 1

    @contextlib.contextmanager
    def span(self, span: Span) -> Iterator[Span]:
        """End `span` on leaving the block, marking it failed on an exception."""
        try:
            yield span
        except BaseException as exc:
            span.fail(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.end(span)

    # -- export --

    def _export_loop(self) -> None:
        batch: list[Span] = []
        next_flush = time.monotonic() + self.settings.interval_s
        while True:
            timeout = max(0.0, next_flush - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = False  # type: ignore[assignment]
            if item is None:  # close(): send what is left, then stop
                self._send(batch)
                return
            if item:
                batch.append(item)
            if len(batch) >= self.settings.batch_size or time.monotonic() >= next_flush:
                self._send(batch)
                batch = []
                next_flush = time.monotonic() + self.settings.interval_s

    def payload(self, spans: list[Span]) -> dict[str, Any]:
        resource = [_attribute("service.name", self.settings.service_name)]
        if self.instance:
            resource.append(_attribute("service.instance.id", self.instance))
        return {
            "resourceSpans": [
                {
                    "resource": {"attributes": resource},
                    "scopeSpans": [
                        {
                            "scope": {"name": "selfheal.dispatcher", "version": __version__},
                            "spans": [s.to_otlp() for s in spans],
                        }
                    ],
                }
            ]
        }

    def _send(self, spans: list[Span]) -> None:
        if not spans:
            return
        body = json.dumps(self.payload(spans), separators=(",", ":")).encode()
        request = urllib.request.Request(
            f"{self.settings.endpoint}/v1/traces",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **self.settings.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                response.read(65536)
            self.exported += len(spans)
        except OSError as exc:  # the collector is away: these spans are lost, intake goes on
            self.failed_exports += len(spans)
            if time.monotonic() >= self._quiet_until:  # one line a minute, not one a batch
                self._quiet_until = time.monotonic() + 60.0
                log.warning(
                    "trace export failed",
                    extra={"lost_spans": self.failed_exports, "error": str(exc)},
                )

    def close(self, timeout: float = 5.0) -> None:
        """Flush queued spans (bounded by `timeout`) and stop the exporter."""
        if self._thread is None or self._closed.is_set():
            return
        self._closed.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(max(0.1, deadline - time.monotonic()))
