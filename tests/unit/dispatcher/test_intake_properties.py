"""The permanent adversarial suite for intake: hostile payloads for every source, through the
in-process ASGI app, on SQLite and on PostgreSQL (skipped with the reason without a server).

Properties, for every example:

* the answer is a 2xx or a 4xx, never a 5xx;
* every accepted alert reads back from the store as it was accepted (labels, annotations,
  name, status, fingerprint, timestamps, sender): the same body normalised again with the
  same sender is the expectation;
* ``GET /incidents`` and ``GET /incidents/{id}`` answer 200.

After the examples the dispatcher is stopped and a new one opened on the same store (a
restart): it starts, every accepted alert still reads back the same, and the incident
endpoints still answer 200.

Payloads: fully random bytes and JSON, and structure-aware mutations of a valid body of each
source (wrong types, timestamps of years 1 to 9999 with odd offsets, epoch numbers, unicode,
deep nesting, huge numbers, duplicate keys), sent with right, wrong and missing Content-Types.

CI runs a bounded number of examples per source (the ``ci`` profile). For a soak run set
``SELFHEAL_SOAK=1`` (thousands of examples per source; ``SELFHEAL_SOAK=<n>`` for n), e.g.

    SELFHEAL_SOAK=1 python3 -m pytest -p no:cacheprovider tests/unit/dispatcher/test_intake_properties.py
"""

from __future__ import annotations

import copy
import json
import os
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import SHARED
from unit.dispatcher.helpers import READ_TOKEN, TOKEN, Client, hmac_headers
from unit.dispatcher.test_intake import ALARM, AM, AZURE, EVENTBRIDGE, GRAFANA
from unit.store.conftest import postgres_dsn, postgres_server  # noqa: F401  (fixtures)

from selfheal.alerts import SOURCES, normalise
from selfheal.dispatcher import Dispatcher, build_app, config_from_data
from selfheal.store.sql import _ALERT_KEYS, dt

_SOAK = os.environ.get("SELFHEAL_SOAK", "")
EXAMPLES = (int(_SOAK) if _SOAK.isdigit() and int(_SOAK) > 1 else 3000) if _SOAK else 40
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not _SOAK,  # CI: the same examples every run; a soak explores
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

GENERIC_MAPPING = {
    "name": "check",
    "status": "state",
    "firing": "down",
    "resolved": "up",
    "labels": "tags",
    "annotations": "notes",
    "starts_at": "at",
    "ends_at": "until",
    "fingerprint": "fp",
}
GENERIC = {"check": "disk", "state": "down", "tags": {"host": "web-02"}, "at": 1764118800}
SNS_ENVELOPE = {
    "Type": "Notification",
    "MessageId": "m-1",
    "TopicArn": "arn:aws:sns:eu-west-1:123456789012:selfheal",
    "Subject": "ALARM: cpu",
    "Timestamp": "2026-11-26T01:00:00.000Z",
}
BASES = {
    "alertmanager": AM,
    "grafana": GRAFANA,
    "cloudwatch_sns": {"envelope": SNS_ENVELOPE, "alarm": ALARM},  # Message: the alarm's JSON
    "cloudwatch_eventbridge": EVENTBRIDGE,
    "azure_monitor": AZURE,
    "generic": GENERIC,
}
# real Alertmanager deliveries (when the shared samples are present): seeds for mutations
SAMPLES = sorted((SHARED / "samples" / "alertmanager").glob("*.json"))
SEEDS = {"alertmanager": [json.loads(p.read_text()) for p in SAMPLES]}
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/cloudevents+json",
    "text/plain; charset=UTF-8",
    "application/x-www-form-urlencoded",
    "text/html",
    None,
]

# -- strategies ----------------------------------------------------------------------------

_offsets = st.sampled_from(["Z", "z", "+00:00", "-00:00", "+14:00", "-12:00", "+23:59", "+0000"])
_fraction = st.sampled_from(["", ".0", ".123", ".123456", ".1234567", ","])


@st.composite
def timestamps(draw) -> str:
    year = draw(st.integers(1, 9999) | st.sampled_from([1, 2, 999, 1969, 1970, 2199, 2200]))
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    hour, minute, second = (
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
    )
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return text + draw(_fraction) + draw(_offsets)


_epochs = st.integers(-(10**14), 10**14) | st.floats(allow_nan=True, allow_infinity=True)
_text = st.text(max_size=40) | st.sampled_from(["", " ", "\u0000", "\ud800", "é" * 40, "\u202e"])
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([2**300, -(2**300), 10**99])
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
    | timestamps()
    | _epochs
)
_json = st.recursive(
    _leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=4)
)


def _deep(depth: int) -> object:
    value: object = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


_hostile = (
    _json | timestamps() | _epochs | st.integers(20, 60).map(_deep) | st.sampled_from([[], {}])
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _set(value, path, new):
    if not path:
        return new
    value[path[0]] = _set(value[path[0]], path[1:], new)
    return value


def _set_new(value, path, new):
    """Set `path` (its last key may be new) in a copy of `value`."""
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return value


def _drop(value, path):
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]


TIME_FIELDS = {
    "alertmanager": [("alerts", 0, "startsAt"), ("alerts", 0, "endsAt")],
    "grafana": [("alerts", 0, "startsAt"), ("alerts", 0, "endsAt")],
    "cloudwatch_sns": [("alarm", "StateChangeTime")],
    "cloudwatch_eventbridge": [("detail", "state", "timestamp")],
    "azure_monitor": [
        ("data", "essentials", "firedDateTime"),
        ("data", "essentials", "resolvedDateTime"),
    ],
    "generic": [("at",), ("until",)],
}
TEXT_FIELDS = {
    "alertmanager": [("alerts", 0, "labels"), ("alerts", 0, "annotations")],
    "grafana": [("alerts", 0, "labels"), ("alerts", 0, "annotations")],
    "cloudwatch_sns": [("alarm", "AlarmName"), ("alarm", "NewStateReason")],
    "cloudwatch_eventbridge": [("detail", "alarmName"), ("detail", "state", "reason")],
    "azure_monitor": [("data", "essentials", "alertRule"), ("data", "essentials", "description")],
    "generic": [("tags",), ("notes",), ("check",)],
}
_labels = st.dictionaries(st.text(min_size=1, max_size=20), _text | st.integers(), max_size=5)


@st.composite
def mutated(draw, source: str, kind: str = "any") -> dict:
    body = copy.deepcopy(draw(st.sampled_from([BASES[source], *SEEDS.get(source, [])])))
    for _ in range(draw(st.integers(1, 3))):
        if kind == "time":  # a valid body with odd timestamps: years 1..9999, offsets, epochs
            path = draw(st.sampled_from(TIME_FIELDS[source]))
            value = draw(timestamps() | (_epochs if source == "generic" else timestamps()))
            body = _set_new(body, path, value)
            continue
        if kind == "text":  # a valid body with odd (unicode, long, empty) texts and maps
            path = draw(st.sampled_from(TEXT_FIELDS[source]))
            leaf = path[-1] in ("labels", "annotations", "tags", "notes")
            body = _set_new(body, path, draw(_labels) if leaf else draw(_text))
            continue
        paths = list(_paths(body))[1 if source == "cloudwatch_sns" else 0 :]
        if not paths:  # everything dropped already
            break
        path = draw(st.sampled_from(paths))
        if path and draw(st.integers(0, 4)) == 0:
            _drop(body, path)
        else:
            body = _set(body, path, draw(_hostile))
    if source == "cloudwatch_sns":  # the alarm travels as JSON text in Message
        envelope = body.get("envelope") if isinstance(body, dict) else None
        if isinstance(envelope, dict):
            alarm = body.get("alarm")
            message = (
                json.dumps(alarm) if draw(st.booleans()) or not isinstance(alarm, str) else alarm
            )
            return {**envelope, "Message": message}
        return body
    return body


def _encode(draw, value) -> bytes:
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    if text.startswith("{") and len(text) > 2 and draw(st.integers(0, 5)) == 0:
        key = draw(st.sampled_from(["alerts", "Type", "version", "check", "data", "x"]))
        text = "{" + json.dumps(key) + ": 1, " + text[1:]  # a duplicate key, maybe
    return text.encode("utf-8", "surrogatepass")


@st.composite
def requests(draw, source: str) -> tuple[bytes, str | None]:
    kind = draw(st.sampled_from(["bytes", "json", "valid", *["any", "time", "text"] * 2]))
    if kind == "bytes":
        raw = draw(st.binary(max_size=300))
    elif kind == "json":
        raw = _encode(draw, draw(_json))
    elif kind == "valid":
        raw = _encode(draw, _valid(source))
    else:
        raw = _encode(draw, draw(mutated(source, kind)))
    # mostly JSON (to reach the normalisers), sometimes a wrong or missing type
    content_type = draw(st.sampled_from(["application/json"] * 8 + CONTENT_TYPES))
    return raw, content_type


def _valid(source: str) -> dict:
    if source == "cloudwatch_sns":
        return {**SNS_ENVELOPE, "Message": json.dumps(ALARM)}
    return BASES[source]


# -- the dispatcher under test ----------------------------------------------------------------


def _config(env, store: str | None) -> dict:
    data = copy.deepcopy(env["config"])
    data["sources"]["generic"] = {"mapping": GENERIC_MAPPING}
    if store is not None:
        data["store"] = store
        data["policy_state"] = str(env["tmp"] / "policy-state.db")
    return data


class Harness:
    def __init__(self, env, store: str | None):
        self.env = env
        self.data = _config(env, store)
        self.accepted: list[tuple[int, dict]] = []  # (alert id, expected fields)
        self.examples = 0
        self.answers: dict[int, int] = {}
        self.open()

    def open(self) -> None:
        self.d = Dispatcher(config_from_data(self.data, self.env["tmp"]))
        self.d.start()
        self.client = Client(build_app(self.d, manage_lifecycle=False))

    def close(self) -> None:
        self.d.stop()
        self.client.close()

    def send(self, source: str, raw: bytes, content_type: str | None):
        headers: dict = {"content-type": content_type}
        if source == "grafana":
            headers.update(hmac_headers(raw))
            return self.client.post(f"/alerts/{source}", raw, headers=headers)
        return self.client.post(f"/alerts/{source}", raw, token=TOKEN, headers=headers)

    def expect(self, source: str, raw: bytes, results: list[dict]) -> None:
        sender = "source:grafana" if source == "grafana" else "alertmanager"
        mapping = GENERIC_MAPPING if source == "generic" else None
        alerts = normalise(source, raw, mapping=mapping, sender=sender)
        assert isinstance(alerts, list) and len(alerts) == len(results)
        for alert, result in zip(alerts, results, strict=True):
            assert result["fingerprint"] == alert.fingerprint
            expected = {
                "source": alert.source,
                "status": alert.status,
                "name": alert.name,
                "fingerprint": alert.fingerprint,
                "labels": dict(alert.labels),
                "annotations": dict(alert.annotations),
                "starts_at": alert.starts_at,
                "ends_at": alert.ends_at,
                "generator_url": alert.generator_url,
                "sender": sender,
            }
            self.accepted.append((result["alert_id"], expected))
            self.check_alert(result["alert_id"], expected)
            if result["incident_id"] is not None:
                self.check_incident(result["incident_id"])

    def check_alert(self, alert_id: int, expected: dict) -> None:
        # every accepted alert, the unmatched resolves (no incident) included: by its id
        rows = self.d.store._read(
            "SELECT " + ", ".join(_ALERT_KEYS) + " FROM alerts WHERE id = ?", (alert_id,)
        )
        assert len(rows) == 1
        row = dict(zip(_ALERT_KEYS, rows[0], strict=True))
        got = {key: row[key] for key in expected}
        for key in ("labels", "annotations"):
            got[key] = json.loads(got[key])
        for key in ("starts_at", "ends_at"):
            got[key] = got[key] if isinstance(got[key], datetime | None) else dt(got[key])
        assert got == expected

    def check_incident(self, incident_id: int) -> None:
        r = self.client.get(f"/incidents/{incident_id}", token=READ_TOKEN)
        assert r.status == 200, r.body

    def check_all(self) -> None:
        r = self.client.get("/incidents?limit=1000", token=READ_TOKEN)
        assert r.status == 200, r.body
        for incident in r.json()["incidents"]:
            self.check_incident(incident["id"])
        for alert_id, expected in self.accepted:
            self.check_alert(alert_id, expected)


@pytest.mark.skipif(not SAMPLES, reason=f"no real Alertmanager samples in {SHARED}/samples")
def test_real_alertmanager_deliveries_round_trip(env) -> None:
    harness = Harness(env, None)
    try:
        for path in SAMPLES:
            raw = path.read_bytes()
            r = harness.send("alertmanager", raw, "application/json")
            assert r.status == 202, (path.name, r.body)
            harness.expect("alertmanager", raw, r.json()["results"])
        harness.check_all()
    finally:
        harness.close()
    assert len(harness.accepted) >= len(SAMPLES)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request):
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_dsn")


@pytest.mark.parametrize("source", SOURCES)
def test_intake_never_5xx_and_accepted_alerts_round_trip(env, store, source) -> None:
    harness = Harness(env, store)
    try:

        @SETTINGS
        @given(request=requests(source))
        def example(request) -> None:
            raw, content_type = request
            r = harness.send(source, raw, content_type)
            harness.examples += 1
            harness.answers[r.status] = harness.answers.get(r.status, 0) + 1
            assert r.status < 500, (r.status, r.body)
            assert r.status in (200, 202) or 400 <= r.status < 500, r.status
            if r.status == 202:
                harness.expect(source, raw, r.json()["results"])

        example()
        harness.check_all()
    finally:
        harness.close()
    harness.open()  # a restart on the same store: it starts, and nothing changed
    try:
        harness.check_all()
    finally:
        harness.close()
    accepted = harness.answers.get(202, 0)
    print(
        f"\n{source} on {'postgres' if store else 'sqlite'}: {harness.examples} examples,"
        f" {accepted} accepted, answers {dict(sorted(harness.answers.items()))}"
    )
    assert harness.examples >= min(EXAMPLES, 10)
