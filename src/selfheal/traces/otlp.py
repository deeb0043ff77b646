"""Reading the OTLP/HTTP JSON encoding of traces.

A file holds one ``ExportTraceServiceRequest`` object, or one per line (JSON lines, as the
OpenTelemetry Collector's file exporter writes them). Only what isolation needs is kept:
ids, parent, names, times, status, service and a few attributes. Errors name the field,
e.g. ``line 2: resourceSpans[0].scopeSpans[0].spans[3].spanId: must be a hex string``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfheal.errors import ConfigError

STATUS_ERROR = 2
SPAN_KIND_CLIENT = 3
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    children: list[Span] = field(default_factory=list, repr=False)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def http_status(self) -> int | None:
        for key in HTTP_STATUS_KEYS:
            value = self.attributes.get(key)
            try:
                return int(value)
            except (TypeError, ValueError):
                continue
        return None

    @property
    def failed(self) -> bool:
        status = self.http_status
        return self.status_code == STATUS_ERROR or (status is not None and status >= 500)


def _value(any_value: Any) -> Any:
    """The Python value of an OTLP ``AnyValue`` (int64 arrives as a string in JSON)."""
    if not isinstance(any_value, dict):
        return None
    if "stringValue" in any_value:
        return any_value["stringValue"]
    if "intValue" in any_value:
        try:
            return int(any_value["intValue"])
        except (TypeError, ValueError):
            return None
    for key in ("doubleValue", "boolValue", "bytesValue"):
        if key in any_value:
            return any_value[key]
    if "arrayValue" in any_value:
        values = (any_value["arrayValue"] or {}).get("values") or []
        return [_value(v) for v in values]
    return None


def _attributes(items: Any, where: str) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ConfigError("must be a list of {key, value}", path=where)
    out: dict[str, Any] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ConfigError("must be an object with a string key", path=f"{where}[{i}]")
        out[item["key"]] = _value(item.get("value"))
    return out


def _hex(span: dict, key: str, where: str, required: bool = True) -> str:
    value = span.get(key)
    if (value is None or value == "") and not required:
        return ""
    if not isinstance(value, str) or not _HEX.match(value):
        raise ConfigError("must be a hex string", path=f"{where}.{key}")
    return value.lower()


def _nanos(span: dict, key: str, where: str) -> int:
    value = span.get(key)
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            "must be nanoseconds since the epoch (a decimal string)", path=f"{where}.{key}"
        ) from None


def _enum(value: Any, names: dict[str, int], where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"must be an integer or one of {', '.join(names)}", path=where)


def _list(container: dict, key: str, where: str) -> list:
    value = container.get(key, [])
    if not isinstance(value, list):
        raise ConfigError("must be a list", path=f"{where}.{key}")
    return value


def spans_from_request(request: Any, where: str = "") -> list[Span]:
    """Spans of one ``ExportTraceServiceRequest`` object."""
    prefix = f"{where}: " if where else ""
    if not isinstance(request, dict):
        raise ConfigError(f"{prefix}must be an OTLP JSON object with resourceSpans")
    if "resourceSpans" not in request:
        raise ConfigError(f"{prefix}resourceSpans: missing (not an OTLP JSON trace export)")
    spans: list[Span] = []
    for r, resource_spans in enumerate(_list(request, "resourceSpans", f"{prefix}$")):
        rwhere = f"{prefix}resourceSpans[{r}]"
        if not isinstance(resource_spans, dict):
            raise ConfigError("must be an object", path=rwhere)
        resource = resource_spans.get("resource") or {}
        attrs = _attributes(resource.get("attributes"), f"{rwhere}.resource.attributes")
        service = str(attrs.get("service.name") or "unknown_service")
        # instrumentationLibrarySpans: the name before OTLP 0.15, still seen in old exports.
        scope_key = (
            "scopeSpans" if "scopeSpans" in resource_spans else "instrumentationLibrarySpans"
        )
        for s, scope_spans in enumerate(_list(resource_spans, scope_key, rwhere)):
            swhere = f"{rwhere}.{scope_key}[{s}]"
            if not isinstance(scope_spans, dict):
                raise ConfigError("must be an object", path=swhere)
            for i, span in enumerate(_list(scope_spans, "spans", swhere)):
                spans.append(_span(span, service, f"{swhere}.spans[{i}]"))
    return spans


def _span(span: Any, service: str, where: str) -> Span:
    if not isinstance(span, dict):
        raise ConfigError("must be an object", path=where)
    status = span.get("status") or {}
    if not isinstance(status, dict):
        raise ConfigError("must be an object", path=f"{where}.status")
    start = _nanos(span, "startTimeUnixNano", where)
    end = _nanos(span, "endTimeUnixNano", where)
    return Span(
        trace_id=_hex(span, "traceId", where),
        span_id=_hex(span, "spanId", where),
        parent_id=_hex(span, "parentSpanId", where, required=False),
        name=str(span.get("name") or "?"),
        service=service,
        kind=_enum(span.get("kind"), _KIND_NAMES, f"{where}.kind"),
        start_ns=start,
        end_ns=end,
        status_code=_enum(status.get("code"), _STATUS_NAMES, f"{where}.status.code"),
        status_message=str(status.get("message") or ""),
        attributes=_attributes(span.get("attributes"), f"{where}.attributes"),
    )


def read_spans(lines: Iterable[str], name: str = "<input>") -> list[Span]:
    """Spans from the text of a file: one JSON object, or one object per line."""
    text = "".join(lines)
    stripped = text.strip()
    if not stripped:
        raise ConfigError(f"{name}: empty, no OTLP JSON found")
    try:
        return spans_from_request(json.loads(stripped), name)
    except json.JSONDecodeError:
        pass  # not one object: JSON lines
    spans: list[Span] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name}: line {number}: not JSON ({exc.msg})") from None
        spans.extend(spans_from_request(request, f"{name}: line {number}"))
    return spans


def read_file(path: str | Path) -> list[Span]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
    return read_spans([text], str(path))


def group_traces(spans: Iterable[Span]) -> dict[str, list[Span]]:
    """Spans by trace id, each with its ``children`` linked (a parent outside the file makes
    the span a root of its trace)."""
    traces: dict[str, list[Span]] = {}
    for span in spans:
        span.children = []
        traces.setdefault(span.trace_id, []).append(span)
    for members in traces.values():
        by_id = {s.span_id: s for s in members}
        for span in members:
            parent = by_id.get(span.parent_id)
            if parent is not None and parent is not span:
                parent.children.append(span)
    return traces


def roots(members: list[Span]) -> list[Span]:
    ids = {s.span_id for s in members}
    return [s for s in members if not s.parent_id or s.parent_id not in ids]
