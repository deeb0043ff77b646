"""Contract tests of the HTTP forwarders against local HTTP servers (not the real products).

Each fake collector checks the request against the documented format of the real API:

* Elasticsearch ``POST /_bulk``: ``Content-Type: application/x-ndjson``; the body is
  newline-delimited JSON, an action line (``{"create": {"_index", "_id"}}``) followed by the
  document line, ending with a newline; the response has ``errors`` and per-item ``status``
  (409 when a ``create`` meets an existing ``_id``).
* Splunk HTTP Event Collector ``POST /services/collector/event``: header
  ``Authorization: Splunk <token>``; the body is one or more JSON event objects, each with
  ``event`` and an epoch ``time``; success is ``{"text": "Success", "code": 0}``.
* Loki ``POST /loki/api/v1/push``: JSON ``{"streams": [{"stream": {label: value},
  "values": [["<unix epoch in nanoseconds, as a string>", "<log line>"]]}]}``; 204 on success.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selfheal.audit import AuditTrail, Keyring, iter_records
from selfheal.audit.forward import (
    ElasticsearchSink,
    Forwarder,
    LokiSink,
    Outbox,
    SplunkHecSink,
    sink_from_url,
)

pytestmark = pytest.mark.integration

TOKEN = "11111111-2222-3333-4444-555555555555"


class Collector:
    """A local HTTP server whose handler checks one API's contract."""

    def __init__(self, check):
        self.check = check
        self.requests: list[dict] = []
        self.store: dict = {}
        self.fail_next = 0
        self.errors: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if collector.fail_next > 0:
                    collector.fail_next -= 1
                    return self._reply(503, b'{"error":"unavailable"}')
                try:
                    status, payload = collector.check(self, body, collector)
                except AssertionError as exc:
                    collector.errors.append(str(exc))
                    return self._reply(400, json.dumps({"contract": str(exc)}).encode())
                collector.requests.append({"path": self.path, "body": body})
                self._reply(status, payload)

            def _reply(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def es_check(handler, body, collector):
    assert handler.path == "/_bulk", handler.path
    assert handler.headers["Content-Type"] == "application/x-ndjson"
    assert body.endswith(b"\n"), "a _bulk body must end with a newline"
    lines = body.decode().split("\n")[:-1]
    assert len(lines) % 2 == 0, "action and document lines come in pairs"
    items, errors = [], False
    for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
        action = json.loads(action_line)
        assert list(action) == ["create"], action
        meta = action["create"]
        assert set(meta) == {"_index", "_id"}
        doc = json.loads(doc_line)
        assert isinstance(doc, dict) and "seq" in doc
        key = (meta["_index"], meta["_id"])
        if key in collector.store:
            errors = True
            items.append({"create": {**meta, "status": 409, "error": {"type": "conflict"}}})
        else:
            collector.store[key] = doc
            items.append({"create": {**meta, "status": 201, "result": "created"}})
    return 200, json.dumps({"took": 1, "errors": errors, "items": items}).encode()


def splunk_check(handler, body, collector):
    assert handler.path == "/services/collector/event", handler.path
    if handler.headers.get("Authorization") != f"Splunk {TOKEN}":
        return 401, b'{"text":"Invalid authorization","code":3}'
    decoder = json.JSONDecoder()
    text, pos = body.decode(), 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        event, pos = decoder.raw_decode(text, pos)
        assert isinstance(event.get("time"), int | float), "time is epoch seconds"
        assert "event" in event, "every object carries an event"
        assert isinstance(event.get("sourcetype"), str) and isinstance(event.get("source"), str)
        assert set(event["fields"]) == {"seq", "hash"}
        collector.store.setdefault("events", []).append(event)
    return 200, b'{"text":"Success","code":0}'


def loki_check(handler, body, collector):
    assert handler.path == "/loki/api/v1/push", handler.path
    assert handler.headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"streams"}
    for stream in doc["streams"]:
        assert set(stream) == {"stream", "values"}
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in stream["stream"].items())
        for value in stream["values"]:
            assert isinstance(value, list) and len(value) == 2
            ts, line = value
            assert isinstance(ts, str) and ts.isdigit() and len(ts) >= 19, ts
            assert isinstance(line, str)
            collector.store.setdefault("values", []).append((ts, line, stream["stream"]))
    return 204, b""


@pytest.fixture
def trail(tmp_path):
    path = tmp_path / "trail"
    with AuditTrail(path, Keyring({"k1": b"k" * 32}, "k1")) as t:
        for i in range(25):
            t.append({"action": "task", "target": f"web{i % 3}", "outcome": "ok", "data": {"i": i}})
    return path


def _lines(trail):
    return [
        line
        for seg in sorted(trail.glob("audit-*.jsonl"))
        for line in seg.read_bytes().splitlines()
    ]


def test_elasticsearch_bulk_contract_and_dedupe(tmp_path, trail):
    with Collector(es_check) as es:
        sink = ElasticsearchSink(es.url, "audit-test")
        outbox = Outbox(tmp_path / "outbox.sqlite")
        result = Forwarder(trail, sink, outbox, batch_size=10).flush()
        assert result.sent == 25 and not es.errors
        assert len(es.requests) == 3
        docs = sorted(es.store.values(), key=lambda d: d["seq"])
        assert [d["seq"] for d in docs] == list(range(1, 26))
        # a re-send (e.g. after a lost response) is a 409 per item, taken as delivered
        from selfheal.audit.forward import Item
        from selfheal.audit.record import record_hash

        line = _lines(trail)[0]
        sink.send([Item(1, record_hash(line), line)])
        assert len(es.store) == 25
        assert ("audit-test", record_hash(line)) in es.store
        outbox.close()


def test_elasticsearch_item_failure_keeps_the_batch(tmp_path, trail):
    def rejecting(handler, body, collector):
        lines = body.decode().split("\n")[:-1]
        items = [{"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}]
        return 200, json.dumps({"errors": True, "items": items * (len(lines) // 2)}).encode()

    with Collector(rejecting) as es:
        outbox = Outbox(tmp_path / "outbox.sqlite")
        result = Forwarder(trail, ElasticsearchSink(es.url), outbox).flush()
        assert result.sent == 0 and result.pending == 25 and "mapper_parsing" in result.error
        outbox.close()


def test_splunk_hec_contract(tmp_path, trail):
    with Collector(splunk_check) as hec:
        outbox = Outbox(tmp_path / "outbox.sqlite")
        result = Forwarder(trail, SplunkHecSink(hec.url, TOKEN), outbox, batch_size=8).flush()
        assert result.sent == 25 and not hec.errors
        events = hec.store["events"]
        assert [e["fields"]["seq"] for e in events] == list(range(1, 26))
        assert [e["event"]["seq"] for e in events] == list(range(1, 26))
        assert events[0]["sourcetype"] == "selfheal:audit"
        outbox.close()


def test_splunk_bad_token_is_not_marked_sent(tmp_path, trail):
    with Collector(splunk_check) as hec:
        outbox = Outbox(tmp_path / "outbox.sqlite")
        result = Forwarder(trail, SplunkHecSink(hec.url, "wrong"), outbox).flush()
        assert result.sent == 0 and result.pending == 25 and "401" in result.error
        outbox.close()


def test_loki_push_contract(tmp_path, trail):
    with Collector(loki_check) as loki:
        outbox = Outbox(tmp_path / "outbox.sqlite")
        result = Forwarder(trail, LokiSink(loki.url, {"job": "selfheal-audit"}), outbox).flush()
        assert result.sent == 25 and not loki.errors
        values = loki.store["values"]
        assert [ts for ts, _l, _s in values] == sorted(ts for ts, _l, _s in values)
        assert [line.encode() for _ts, line, _s in values] == _lines(trail)
        assert values[0][2] == {"job": "selfheal-audit"}
        records = list(iter_records(trail))
        assert values[0][0].startswith(str(int(_epoch(records[0]["ts"]))))
        outbox.close()


def _epoch(ts):
    from selfheal.audit.forward import _epoch as epoch

    return epoch(ts)


@pytest.mark.parametrize("kind", ["elasticsearch", "splunk", "loki"])
def test_collector_outage_then_recovery_delivers_everything_once(
    tmp_path, trail, kind, monkeypatch
):
    checks = {"elasticsearch": es_check, "splunk": splunk_check, "loki": loki_check}
    monkeypatch.setenv("SELFHEAL_SPLUNK_HEC_TOKEN", TOKEN)
    with Collector(checks[kind]) as collector:
        sink = sink_from_url(f"{kind}+{collector.url}")
        outbox = Outbox(tmp_path / "outbox.sqlite")
        forwarder = Forwarder(trail, sink, outbox, batch_size=10, backoff_base=0.01)
        collector.fail_next = 2
        first = forwarder.flush()
        assert first.sent == 0 and "503" in first.error
        second = forwarder.flush(force=True)
        assert second.sent == 0 and outbox.state(sink.name)["attempts"] == 2
        third = forwarder.flush(force=True)
        assert third.sent == 25 and third.pending == 0 and not collector.errors
        assert forwarder.flush(force=True).sent == 0
        if kind == "elasticsearch":
            assert len(collector.store) == 25
        elif kind == "splunk":
            assert len(collector.store["events"]) == 25
        else:
            assert len(collector.store["values"]) == 25
        outbox.close()
