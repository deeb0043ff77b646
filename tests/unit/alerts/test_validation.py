"""Bad payloads: a PayloadError naming the field, never a crash; limits; fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.alerts import alert_fixtures as fx

from selfheal.alerts import SOURCES, Limits, PayloadError, normalise


def _am(**alert) -> dict:
    base = {
        "status": "firing",
        "labels": {"alertname": "A", "instance": "h1"},
        "annotations": {},
        "startsAt": "2026-11-20T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "0123456789abcdef",
    }
    base.update(alert)
    return {"version": "4", "status": "firing", "receiver": "r", "alerts": [base]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", r"^\(payload\): not JSON"),
        (b"{", r"^\(payload\): not JSON"),
        (b"\xff\xfe", r"^\(payload\): not UTF-8"),
        (b'{"a": NaN}', r"^\(payload\): not JSON"),
        (b'{"a": 1, "a": 2}', r"^\(payload\): not JSON: duplicate key 'a'"),
        (b"[]", r"^\(payload\): must be an object, not an array"),
        (b"{}", r"^alerts: missing"),
        (b'{"alerts": {}}', r"^alerts: must be an array"),
        (b'{"alerts": []}', r"^alerts: must hold at least one alert"),
        (b'{"alerts": [1]}', r"^alerts\[0\]: must be an object, not a number"),
    ],
)
def test_structure_errors(body, message):
    with pytest.raises(PayloadError, match=message):
        normalise("alertmanager", body)


@pytest.mark.parametrize(
    ("alert", "message"),
    [
        ({"labels": ["a"]}, r"^alerts\[0\].labels: must be an object of strings"),
        ({"labels": None}, r"^alerts\[0\].labels: must be an object of strings"),
        (
            {"labels": {"alertname": "A", "x": {"y": 1}}},
            r"^alerts\[0\].labels.x: must be a string, number or boolean, not an object",
        ),
        ({"labels": {"instance": "h"}}, r"^alerts\[0\].labels.alertname: missing"),
        ({"status": "pending"}, r"^alerts\[0\].status: unknown status 'pending'"),
        ({"status": None}, r"^alerts\[0\].status: must be a string, not null"),
        ({"startsAt": "yesterday"}, r"^alerts\[0\].startsAt: not an RFC 3339 timestamp"),
        ({"startsAt": "2026-11-20T10:00:00"}, r"^alerts\[0\].startsAt: timestamp without a time"),
        ({"startsAt": 12}, r"^alerts\[0\].startsAt: must be an RFC 3339 timestamp string"),
        ({"fingerprint": "../../etc"}, r"^alerts\[0\].fingerprint: must be 1 to 128"),
        ({"annotations": {"": "x"}}, r"^alerts\[0\].annotations: keys must be"),
        ({"generatorURL": 5}, r"^alerts\[0\].generatorURL: must be a string"),
    ],
)
def test_alert_field_errors(alert, message):
    with pytest.raises(PayloadError, match=message) as info:
        normalise("alertmanager", _am(**alert))
    assert info.value.path == info.value.args[0].split(": ", 1)[0]


def test_scalars_are_coerced_to_strings():
    (alert,) = normalise(
        "alertmanager", _am(labels={"alertname": "A", "n": 3, "f": 1.5, "b": True})
    )
    assert dict(alert.labels) == {"alertname": "A", "n": "3", "f": "1.5", "b": "true"}


def test_content_stays_plain_text():
    """Template-looking or code-looking content is kept verbatim, never evaluated."""
    nasty = "{{ lookup('pipe', 'id') }} $(reboot) `rm -rf /` ${IFS}"
    (alert,) = normalise(
        "alertmanager", _am(labels={"alertname": nasty}, annotations={"summary": nasty})
    )
    assert alert.name == nasty and alert.annotations["summary"] == nasty


def test_size_limit():
    body = json.dumps(_am(annotations={"summary": "x" * 5000})).encode()
    with pytest.raises(PayloadError, match=r"^\(payload\): too large"):
        normalise("alertmanager", body, limits=Limits(max_bytes=4096))


def test_depth_limit_for_bytes_and_dicts():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(PayloadError, match=r"nested deeper than"):
        normalise("alertmanager", deep.encode(), limits=Limits(max_bytes=10**6))
    nested: dict = {}
    cursor = nested
    for _ in range(50):
        cursor["x"] = {}
        cursor = cursor["x"]
    with pytest.raises(PayloadError, match=r"^\(payload\): nested deeper than 32 levels"):
        normalise("alertmanager", _am(annotations=nested))


def test_alert_count_and_value_limits():
    body = _am()
    body["alerts"] = body["alerts"] * 3
    with pytest.raises(PayloadError, match=r"^alerts: too many items \(3, limit 2\)"):
        normalise("alertmanager", body, limits=Limits(max_alerts=2))
    with pytest.raises(PayloadError, match=r"^alerts\[0\].annotations.s: too long"):
        normalise("alertmanager", _am(annotations={"s": "y" * 50}), limits=Limits(max_value=10))


# -- fuzzing: arbitrary JSON never raises anything but PayloadError ------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
_keys = st.sampled_from(
    [
        "alerts", "status", "labels", "annotations", "startsAt", "endsAt", "fingerprint",
        "version", "Type", "Message", "SubscribeURL", "Token", "detail-type", "detail",
        "schemaId", "data", "essentials", "name", "generatorURL", "alertname",
    ]
)  # fmt: skip
# Objects shaped like the real ones, so the fuzzer gets past the first checks.
_shaped = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "firing",
            "resolved",
            "4",
            "1",
            "Notification",
            "ALARM",
            "OK",
            "Fired",
            "Resolved",
            "azureMonitorCommonAlertSchema",
            "CloudWatch Alarm State Change",
            "2026-11-20T10:00:00Z",
            "0001-01-01T00:00:00Z",
            '{"AlarmName": "x"}',
        ]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=30,
)


def _only_payload_errors(source: str, payload) -> None:
    try:
        result = normalise(source, payload)
    except PayloadError:
        return
    assert result  # a list of alerts (never empty) or a SubscriptionConfirmation


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(SOURCES), payload=_json)
def test_fuzz_arbitrary_json(source, payload):
    _only_payload_errors(source, payload)
    _only_payload_errors(source, json.dumps(payload).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(SOURCES), payload=_shaped)
def test_fuzz_shaped_json(source, payload):
    _only_payload_errors(source, payload)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_bytes(data):
    for source in SOURCES:
        _only_payload_errors(source, data)


@settings(max_examples=100, deadline=None)
@given(
    path=st.sampled_from(
        [
            ("Message",),
            ("Trigger",),
            ("Trigger", "Dimensions"),
            ("StateChangeTime",),
            ("AlarmArn",),
            ("NewStateValue",),
        ]
    ),
    value=_json,
)
def test_fuzz_sns_alarm_fields(path, value):
    if path == ("Message",):
        body = fx.sns_notification(Message=value)
    else:
        alarm = fx.cloudwatch_alarm()
        target = alarm
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        body = fx.sns_notification(alarm)
    _only_payload_errors("cloudwatch_sns", body)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"alerts": [{"labels": {"alertname": "\\ud800"}}]}', "lone surrogate"),
        ({"alerts": [{"labels": {"alertname": "A", "n": 10**5000}}]}, "number too large"),
        ({"alerts": [{1: 2}]}, "object keys must be strings"),
        ({"alerts": {1, 2}}, "set is not a JSON value"),
        ({"alerts": [{"x": float("nan")}]}, "NaN and Infinity"),
        (b'{"n": ' + b"9" * 5000 + b"}", "not JSON"),
        # shallow text payloads skip the value walk: the parser itself must refuse these
        (b'{"alerts": [{"labels": {"alertname": "A"}, "n": 1e999}]}', "number out of range"),
        (b'{"alerts": [], "n": ' + str(2**256 + 1).encode() + b"}", "number too large"),
        (b'{"alerts": [{"labels": {"alertname": "A\\udc00"}}]}', "lone surrogate"),
    ],
)
def test_values_that_cannot_be_stored(payload, message):
    with pytest.raises(PayloadError, match=message):
        normalise("alertmanager", payload)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20))
def test_fuzz_any_code_point_in_labels(text):
    _only_payload_errors("alertmanager", _am(labels={"alertname": text or "a", text: text}))
