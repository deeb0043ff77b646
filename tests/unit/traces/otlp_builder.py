"""Build OTLP/HTTP JSON trace exports for tests, span by span, the way SDKs encode them:
hex ids, nanosecond times as decimal strings, attributes as ``{key, value: {stringValue}}``,
one ``resourceSpans`` entry per service."""

from __future__ import annotations

import itertools
import json

T0 = 1_772_409_600_000_000_000  # 2026-03-02 00:00 UTC, in ns
MS = 1_000_000
_ids = itertools.count(1)


def _attr(key: str, value) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


class Trace:
    def __init__(self, trace_id: str | None = None):
        self.trace_id = trace_id or f"{next(_ids):032x}"
        self.spans: dict[str, list[dict]] = {}

    def span(
        self,
        service: str,
        name: str,
        parent: str = "",
        start_ms: float = 0,
        end_ms: float = 10,
        error: bool = False,
        kind: int = 2,
        attrs: dict | None = None,
    ) -> str:
        span_id = f"{next(_ids):016x}"
        span = {
            "traceId": self.trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(T0 + int(start_ms * MS)),
            "endTimeUnixNano": str(T0 + int(end_ms * MS)),
            "attributes": [_attr(k, v) for k, v in (attrs or {}).items()],
            "status": {"code": 2, "message": f"{name} failed"} if error else {},
        }
        self.spans.setdefault(service, []).append(span)
        return span_id


def export(*traces: Trace) -> dict:
    """One ExportTraceServiceRequest holding the traces."""
    by_service: dict[str, list[dict]] = {}
    for trace in traces:
        for service, spans in trace.spans.items():
            by_service.setdefault(service, []).extend(spans)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", service)]},
                "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
            }
            for service, spans in by_service.items()
        ]
    }


def checkout_db_failure(trace_id: str | None = None) -> Trace:
    """frontend -> checkout -> orders -> a failing postgresql call: the three services above
    the database propagate its error."""
    t = Trace(trace_id)
    root = t.span("frontend", "GET /checkout", end_ms=120, attrs={"http.response.status_code": 502})
    call = t.span("frontend", "POST checkout", root, 2, 118, error=True, kind=3)
    served = t.span("checkout", "POST /checkout", call, 5, 115, attrs={"http.status_code": 500})
    t.span("checkout", "GET cart", served, 6, 20, kind=3, attrs={"db.system": "redis"})
    call2 = t.span("checkout", "POST orders", served, 22, 112, error=True, kind=3)
    served2 = t.span("orders", "POST /orders", call2, 25, 110, error=True)
    t.span("orders", "SELECT 1", served2, 26, 28, kind=3, attrs={"db.system": "postgresql"})
    t.span(
        "orders",
        "INSERT orders",
        served2,
        30,
        105,
        error=True,
        kind=3,
        attrs={"db.system": "postgresql", "db.statement": "INSERT INTO orders ..."},
    )
    return t


def write(path, *traces: Trace, lines: bool = False) -> str:
    if lines:
        path.write_text("".join(json.dumps(export(t)) + "\n" for t in traces))
    else:
        path.write_text(json.dumps(export(*traces)))
    return str(path)
