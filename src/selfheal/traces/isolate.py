"""Where a failure or a slowdown originates, per trace and ranked over traces.

Errors propagate upwards: when a database call fails, the service calling it fails its
request, and so does every caller above. The origin is therefore the **deepest failing span
whose children are all healthy** (a span fails on ERROR status or an HTTP status of 500 or
more). Latency accumulates the same way; its origin is the span with the largest **self
time** (its duration minus the time covered by its children) beyond its baseline.

A client span with no child span points at something not traced itself (a database, a
cache, a third-party API): the origin is then named after that peer, from ``peer.service``,
``db.system``, ``server.address`` or ``net.peer.name``, rather than after the caller.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .otlp import SPAN_KIND_CLIENT, Span, group_traces, roots

PEER_KEYS = ("peer.service", "db.system", "server.address", "net.peer.name")


def origin_service(span: Span) -> str:
    """The service a span's trouble belongs to: its own, or the untraced peer it calls."""
    if span.children:
        return span.service
    is_client = span.kind == SPAN_KIND_CLIENT or "db.system" in span.attributes
    if is_client:
        for key in PEER_KEYS:
            value = span.attributes.get(key)
            if isinstance(value, str) and value:
                return value
    return span.service


def _walk(members: list[Span]) -> list[tuple[Span, int, tuple[str, ...]]]:
    """(span, depth, services on the way from the root) for every span reachable from a
    root; a parent cycle is never followed twice."""
    out: list[tuple[Span, int, tuple[str, ...]]] = []
    seen: set[int] = set()
    stack = [(root, 0, ()) for root in reversed(roots(members))]
    while stack:
        span, depth, path = stack.pop()
        if id(span) in seen:
            continue
        seen.add(id(span))
        here = path if path and path[-1] == span.service else (*path, span.service)
        out.append((span, depth, here))
        stack.extend((child, depth + 1, here) for child in reversed(span.children))
    return out


@dataclass(frozen=True)
class Finding:
    """The origin found in one trace."""

    trace_id: str
    service: str
    operation: str
    span_id: str
    path: tuple[str, ...]  # services from the root down to the origin
    reason: str

    def as_dict(self) -> dict:
        return {**asdict(self), "path": list(self.path)}


def _path_to(span: Span, path: tuple[str, ...]) -> tuple[str, ...]:
    service = origin_service(span)
    return path if path[-1] == service else (*path, service)


def failure_origin(members: list[Span]) -> Finding | None:
    """The deepest failing span with only healthy children; ties go to the earliest."""
    best: tuple[int, int, Span, tuple[str, ...]] | None = None
    for span, depth, path in _walk(members):
        if not span.failed or any(child.failed for child in span.children):
            continue
        key = (-depth, span.start_ns)
        if best is None or key < (best[0], best[1]):
            best = (key[0], key[1], span, path)
    if best is None:
        return None
    span, path = best[2], best[3]
    status = span.http_status
    why = span.status_message or (f"HTTP {status}" if status else "error status")
    return Finding(
        trace_id=span.trace_id,
        service=origin_service(span),
        operation=span.name,
        span_id=span.span_id,
        path=_path_to(span, path),
        reason=f"{span.name} failed ({why}) with no failing child",
    )


def self_time_ns(span: Span) -> int:
    """The span's duration not covered by any child (overlapping children count once)."""
    intervals = sorted(
        (max(c.start_ns, span.start_ns), min(c.end_ns, span.end_ns)) for c in span.children
    )
    covered, cursor = 0, span.start_ns
    for start, end in intervals:
        start = max(start, cursor)
        if end > start:
            covered += end - start
            cursor = end
    return max(0, span.duration_ns - covered)


def latency_origin(
    members: list[Span], baseline_ms: dict[str, float] | None = None, threshold_ms: float = 0.0
) -> Finding | None:
    """The span whose self time exceeds its baseline (``"service/operation"`` -> ms, 0 when
    unknown) the most, if by more than ``threshold_ms``."""
    baseline_ms = baseline_ms or {}
    best: tuple[float, Span, tuple[str, ...], float] | None = None
    for span, _depth, path in _walk(members):
        own_ms = self_time_ns(span) / 1e6
        usual = baseline_ms.get(f"{origin_service(span)}/{span.name}", 0.0)
        excess = own_ms - usual
        if excess > threshold_ms and (best is None or excess > best[0]):
            best = (excess, span, path, own_ms)
    if best is None:
        return None
    excess, span, path, own_ms = best
    return Finding(
        trace_id=span.trace_id,
        service=origin_service(span),
        operation=span.name,
        span_id=span.span_id,
        path=_path_to(span, path),
        reason=f"{span.name} spent {own_ms:.1f} ms itself ({excess:.1f} ms over its baseline)",
    )


@dataclass(frozen=True)
class Candidate:
    """A root-cause candidate: an origin and how many traces point at it."""

    service: str
    operation: str
    count: int
    share: float  # of the traces with a finding
    example_trace_id: str
    path: tuple[str, ...]
    reason: str

    def as_dict(self) -> dict:
        return {**asdict(self), "path": list(self.path)}

    @property
    def summary(self) -> str:
        chain = " -> ".join(self.path)
        return (
            f"{self.service} ({self.operation}): origin in {self.count} trace(s), "
            f"{self.share:.0%}; {chain}; {self.reason}"
        )


def rank(findings: Iterable[Finding]) -> list[Candidate]:
    """Candidates by the number of traces naming them, most first."""
    findings = list(findings)
    counts = Counter((f.service, f.operation) for f in findings)
    first: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        first.setdefault((finding.service, finding.operation), finding)
    total = len(findings) or 1
    return [
        Candidate(
            service=service,
            operation=operation,
            count=count,
            share=count / total,
            example_trace_id=first[(service, operation)].trace_id,
            path=first[(service, operation)].path,
            reason=first[(service, operation)].reason,
        )
        for (service, operation), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def isolate(
    spans: Iterable[Span],
    mode: str = "errors",
    baseline_ms: dict[str, float] | None = None,
    threshold_ms: float = 0.0,
) -> tuple[list[Candidate], int]:
    """Ranked candidates over all traces, and the number of traces read."""
    traces = group_traces(spans)
    findings = []
    for members in traces.values():
        if mode == "latency":
            found = latency_origin(members, baseline_ms, threshold_ms)
        else:
            found = failure_origin(members)
        if found is not None:
            findings.append(found)
    return rank(findings), len(traces)
