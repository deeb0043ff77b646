"""Incident traces: OTLP/HTTP JSON export to a local receiver, parent/child links, overflow
that drops and counts instead of blocking, and the run's traceparent reaching the playbook."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from unit.dispatcher.helpers import TOKEN, am_alert, am_body, wait_for

from selfheal.dispatcher.tracing import (
    Tracer,
    TracingSettings,
    root_span_id,
    trace_id_for,
    tracing_settings_from_data,
)
from selfheal.errors import ConfigError


class Receiver:
    """A minimal OTLP/HTTP receiver: keeps every JSON body POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.hold = threading.Event()  # cleared: requests wait until it is set
        self.hold.set()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(raw))
                receiver.arrived.set()
                receiver.hold.wait(10)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[dict]:
        return [
            span
            for body in self.bodies
            for rs in body["resourceSpans"]
            for ss in rs["scopeSpans"]
            for span in ss["spans"]
        ]

    def stop(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _attrs(span: dict) -> dict:
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


def test_spans_are_exported_as_otlp_json_with_links(receiver) -> None:
    tracer = Tracer(TracingSettings(endpoint=receiver.url, interval_s=0.05), instance="d1")
    root = tracer.start(42, "fp-1", "intake", root=True)
    tracer.end(root)
    run = tracer.start(42, "fp-1", "run", **{"selfheal.runbook": "heal"})
    verify = tracer.child(run, "verify")
    verify.fail("verification failed: web-01")
    tracer.end(verify)
    tracer.end(run)
    tracer.close()
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    resource = receiver.bodies[0]["resourceSpans"][0]["resource"]
    assert {"key": "service.name", "value": {"stringValue": "selfheal-dispatcher"}} in (
        resource["attributes"]
    )
    spans = {s["name"]: s for s in receiver.spans()}
    assert set(spans) == {"intake", "run", "verify"}
    trace = trace_id_for(42, "fp-1")
    for span in spans.values():
        assert span["traceId"] == trace and re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
        assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
        assert _attrs(span)["selfheal.incident_id"] == "42"  # int64 as a string
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 0
    assert "parentSpanId" not in spans["intake"]
    assert spans["intake"]["spanId"] == root_span_id(trace)
    assert spans["run"]["parentSpanId"] == spans["intake"]["spanId"]
    assert spans["verify"]["parentSpanId"] == spans["run"]["spanId"]
    assert spans["run"]["status"] == {"code": 1}
    assert spans["verify"]["status"]["code"] == 2
    assert "web-01" in spans["verify"]["status"]["message"]
    assert run.traceparent == f"00-{trace}-{spans['run']['spanId']}-01"


def test_trace_ids_differ_per_incident_and_are_stable() -> None:
    assert trace_id_for(1, "fp") == trace_id_for(1, "fp")
    assert len({trace_id_for(1, "fp"), trace_id_for(2, "fp"), trace_id_for(1, "other")}) == 3


def test_a_full_queue_drops_and_counts(receiver) -> None:
    receiver.hold.clear()  # the collector hangs on the first export
    settings = TracingSettings(endpoint=receiver.url, batch_size=1, queue_size=2, interval_s=0.05)
    tracer = Tracer(settings)
    tracer.end(tracer.start(1, "fp", "first"))
    assert receiver.arrived.wait(10)  # the exporter is stuck inside that POST
    for i in range(5):
        tracer.end(tracer.start(1, "fp", f"later-{i}"))  # returns at once, never blocks
    assert tracer.dropped == 3  # two fit in the queue
    receiver.hold.set()
    tracer.close()
    names = [s["name"] for s in receiver.spans()]
    assert names == ["first", "later-0", "later-1"]
    assert tracer.exported == 3


def test_no_endpoint_exports_nothing() -> None:
    tracer = Tracer(TracingSettings())
    span = tracer.start(1, "fp", "run")
    tracer.end(span)
    tracer.close()
    assert tracer.exported == 0 and tracer.dropped == 0
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", span.traceparent)


def test_tracing_config() -> None:
    settings = tracing_settings_from_data({"endpoint": "http://otel:4318/", "batch_size": 10})
    assert settings.endpoint == "http://otel:4318" and settings.batch_size == 10
    for bad, where in (
        ({"endpoint": "otel:4318"}, "tracing.endpoint"),
        ({"batch_size": 0}, "tracing.batch_size"),
        ({"headers": {"a": 1}}, "tracing.headers"),
        ({"sample": 1}, "tracing"),
    ):
        with pytest.raises(ConfigError) as err:
            tracing_settings_from_data(bad)
        assert err.value.path == where


def test_dispatcher_traces_an_incident_and_the_playbook_sees_it(
    env, make_dispatcher, receiver
) -> None:
    seen = env["tmp"] / "traceparent.txt"
    # the runbook's playbook: one task writing the trace context it was given
    (env["tmp"] / "heal.yml").write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Record the trace context",
                    "hosts": "{{ target }}",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Write TRACEPARENT and selfheal_traceparent",
                            "ansible.builtin.copy": {
                                "dest": str(seen),
                                "content": "{{ lookup('ansible.builtin.env', 'TRACEPARENT') }}"
                                " {{ selfheal_traceparent }}\n",
                                "mode": "0644",
                            },
                            "delegate_to": "localhost",
                        }
                    ],
                }
            ]
        )
    )
    d, client = make_dispatcher(workers=1, tracing={"endpoint": receiver.url, "interval_s": 0.05})
    labels = {"alertname": "ServiceDown", "service": "app", "host": "web-01"}
    r = client.post("/alerts/alertmanager", am_body(am_alert(labels)), token=TOKEN)
    assert r.status == 202
    result = r.json()["results"][0]
    incident_id = result["incident_id"]

    def finished():
        runs = d.store.list_runs(incident_id=incident_id)
        return runs and runs[0].status in ("succeeded", "failed") and runs[0]

    run = wait_for(finished, timeout=120)
    assert run.status == "succeeded", run.reason
    env_value, var_value = seen.read_text().split()
    assert env_value == var_value
    trace = trace_id_for(incident_id, result["fingerprint"])
    _, trace_in_run, span_in_run, flags = env_value.split("-")
    assert trace_in_run == trace and flags == "01"

    def exported():
        names = {s["name"] for s in receiver.spans()}
        return {"intake", "decision", "run"} <= names

    wait_for(exported, timeout=20)
    spans = {s["name"]: s for s in receiver.spans()}
    root = spans["intake"]
    assert root["traceId"] == trace and "parentSpanId" not in root
    for name in ("decision", "run"):
        assert spans[name]["traceId"] == trace
        assert spans[name]["parentSpanId"] == root["spanId"]
        assert _attrs(spans[name])["selfheal.incident_id"] == str(incident_id)
    assert spans["run"]["spanId"] == span_in_run  # the playbook got the run span's context
    assert _attrs(spans["decision"])["selfheal.mode"] == "auto"
    assert _attrs(spans["run"])["selfheal.backend"] == "ansible-runner"
