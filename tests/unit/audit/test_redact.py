"""Secrets never enter a record."""

from __future__ import annotations

import json

import pytest

from selfheal.audit import AuditTrail, list_segments, redact, redact_text
from selfheal.audit.redact import MASK, NO_LOG_MESSAGE

SECRETS = [
    ("password=hunter2secret", "hunter2secret"),
    ("db_password: s3cr3t-value", "s3cr3t-value"),
    ("Authorization: Bearer eyJhbGciOiJI.abcdefghijkl.mnopqrstuvwx", "eyJhbGciOiJI"),
    ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='", "dXNlcjpwYXNzd29yZA=="),
    ("postgresql://app:Sup3rS3cret@db:5432/app", "Sup3rS3cret"),
    ("aws key AKIAIOSFODNN7EXAMPLE in use", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEA7",
    ),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE", "b3BlbnNzaC1rZXktdjE"),
    ("token: ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghij"),
    ("Authorization: Splunk 12345678-aaaa-bbbb-cccc-1234567890ab", "12345678-aaaa"),
    ('{"api_key": "abcd1234efgh"}', "abcd1234efgh"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_secret_shapes_are_masked(text, secret):
    out = redact_text(text)
    assert secret not in out
    assert MASK in out


def test_plain_text_is_untouched():
    for text in ("restart nginx on web1", "https://example.org/health", "ok: 3 changed: 1"):
        assert redact_text(text) == text


def test_secret_keys_are_masked_recursively():
    out = redact({"user": "app", "password": "x1", "nested": [{"client_secret": "y"}], "n": 3})
    assert out == {"user": "app", "password": MASK, "nested": [{"client_secret": MASK}], "n": 3}


def test_no_log_values_are_hidden():
    assert redact({"_ansible_no_log": True, "stdout": "secret"}) == {"censored": NO_LOG_MESSAGE}
    assert redact("anything", no_log=True) == NO_LOG_MESSAGE


def test_no_secret_reaches_the_file(tmp_path, keyring):
    with AuditTrail(tmp_path / "t", keyring) as trail:
        trail.append(
            {
                "action": "task",
                "target": "db1",
                "reasons": ["used postgresql://app:Sup3rS3cret@db/app"],
                "data": {"diff": {"after": "password=hunter2secret\n"}, "token": "abc"},
            }
        )
        trail.append({"action": "task", "data": {"stdout": "pw"}, "no_log": True})
    raw = b"".join(s.read_bytes() for s in list_segments(tmp_path / "t")).decode()
    for secret in ("Sup3rS3cret", "hunter2secret", '"abc"', '"pw"'):
        assert secret not in raw
    assert json.loads(raw.splitlines()[1])["data"] == NO_LOG_MESSAGE
