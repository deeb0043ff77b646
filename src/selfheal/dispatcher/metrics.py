"""A small Prometheus registry: counters, gauges and histograms in the text format 0.0.4."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable

LabelKey = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = key + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()):
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelKey:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels must be {self.labelnames}")
        return tuple((n, str(labels[n])) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [*self.header(), *(f"{self.name}{_labels(k)} {_num(v)}" for k, v in items)]


class Gauge(_Metric):
    """A gauge whose value is read from a callable at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]):
        super().__init__(name, help_text)
        self._read = read

    def render(self) -> list[str]:
        try:
            value = float(self._read())
        except Exception:  # a scrape must not fail because one gauge cannot be read
            return self.header()
        return [*self.header(), f"{self.name} {_num(value)}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Iterable[float]):
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sum += value

    def render(self) -> list[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        lines = self.header()
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
            running += count
            lines.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {running}')
        lines.append(f"{self.name}_sum {_num(total)}")
        lines.append(f"{self.name}_count {running}")
        return lines


# alert -> action inside the dispatcher: milliseconds when a worker is free, longer when not
_DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_TIME_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class Metrics:
    """Every metric the dispatcher exports."""

    def __init__(self, queue_depth: Callable[[], float], pending: Callable[[], float]):
        self.alerts = Counter(
            "selfheal_alerts_received_total", "Alerts accepted, by source.", ["source"]
        )
        self.rejected = Counter(
            "selfheal_requests_rejected_total",
            "Intake requests refused, by source and HTTP status.",
            ["source", "status"],
        )
        self.dedup = Counter(
            "selfheal_alerts_dedup_total", "Dedup decisions of accepted alerts.", ["decision"]
        )
        self.decisions = Counter(
            "selfheal_decisions_total",
            "Policy decisions, by mode and reason code.",
            ["mode", "reason"],
        )
        self.runs = Counter(
            "selfheal_runs_total", "Finished run attempts, by outcome.", ["outcome"]
        )
        self.escalations = Counter(
            "selfheal_escalations_total", "Escalations to people, by why.", ["why"]
        )
        self.heal_cost = Counter(
            "selfheal_healing_cost_total",
            "Cost of the healing runs started (their runbook's cost), by runbook.",
            ["runbook"],
        )
        self.pager = Counter(
            "selfheal_pager_events_total",
            "Pager outbox delivery attempts, by target and outcome (delivered, retried, dead).",
            ["target", "outcome"],
        )
        self.mttd = Histogram(
            "selfheal_mttd_seconds",
            "Time to detect: from an alert's start to its acceptance (new incidents).",
            _TIME_BUCKETS,
        )
        self.mttr = Histogram(
            "selfheal_mttr_seconds",
            "Time to resolve: from an incident's opening to its resolution.",
            _TIME_BUCKETS,
        )
        self.start_delay = Histogram(
            "selfheal_run_start_delay_seconds",
            "From a run being queued (or its retry coming due) to its playbook or job launch.",
            _DELAY_BUCKETS,
        )
        self.accept_batch = Histogram(
            "selfheal_accept_batch_alerts",
            "Alerts committed per store transaction (group commit).",
            (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
        )
        self.queue = Gauge(
            "selfheal_run_queue_depth", "Runs queued and not yet started.", queue_depth
        )
        self.pending = Gauge(
            "selfheal_pipeline_backlog", "Accepted alerts not yet through the pipeline.", pending
        )

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in (
            self.alerts,
            self.rejected,
            self.dedup,
            self.decisions,
            self.runs,
            self.escalations,
            self.heal_cost,
            self.pager,
            self.mttd,
            self.mttr,
            self.start_delay,
            self.accept_batch,
            self.queue,
            self.pending,
        ):
            lines.extend(metric.render())
        return ("\n".join(lines) + "\n").encode()
