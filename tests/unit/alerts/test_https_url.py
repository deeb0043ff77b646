"""SNS URLs (SigningCertURL, SubscribeURL) are parsed once, strictly, and fetched from exactly
the checked host, port and path: no parser disagreement can send the fetch elsewhere."""

from __future__ import annotations

import urllib.parse
import urllib.request

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.alerts import alert_fixtures as fx
from unit.dispatcher.conftest import env, make_dispatcher  # noqa: F401 - fixtures
from unit.dispatcher.helpers import TOKEN

from selfheal.alerts import PayloadError, normalise
from selfheal.alerts import https_url as hu
from selfheal.alerts.sns_verify import SignatureError, SNSVerifier

SNS = "sns.us-east-1.amazonaws.com"
BYPASS = f"https://127.0.0.1:19590\\@{SNS}/x.pem"  # urlsplit: the SNS host; urllib: 127.0.0.1

HOSTILE = [
    BYPASS,
    f"https://127.0.0.1:19590\\\\@{SNS}/x.pem",
    f"https://user@{SNS}/x.pem",
    f"https://127.0.0.1%40{SNS}/x.pem",
    f"https://127.0.0.1#@{SNS}/x.pem",
    f"https://{SNS}\t.evil.example/x.pem",
    f"https://{SNS}\n/x.pem",
    f"https://{SNS} /x.pem",
    f"https://{SNS}:8443/x.pem",
    f"https://{SNS}:0/x.pem",
    f"https://{SNS}:99999/x.pem",
    f"https://{SNS}:/x.pem",
    f"https://[::1]/{SNS}/x.pem",
    f"https://{SNS}./x.pem",
    f"https://{SNS}/x.pem#frag",
    f"https:/{SNS}/x.pem",
    f"https:///{SNS}/x.pem",
    f"HTTPS://evil.example/{SNS}.pem",
    f"http://{SNS}/x.pem",
    f"https://{SNS.upper()}\u0130/x.pem",
    "https://sns.us-east-1.amazonaws.com\u3002evil.example/x.pem",
]


def _sns_host(host: str) -> bool:
    return host == SNS


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_cert_urls_are_refused_before_any_fetch(url) -> None:
    fetched: list[str] = []
    verifier = SNSVerifier(fetch=lambda u, t: fetched.append(u) or b"")
    message = {**fx.sns_notification(), "SignatureVersion": "1", "Signature": "AAAA"}
    message["SigningCertURL"] = url
    with pytest.raises(SignatureError) as err:
        verifier.verify(message)
    assert err.value.field == "SigningCertURL"
    assert fetched == []


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_subscribe_urls_are_refused(url) -> None:
    body = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m-1",
        "Token": "t",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:selfheal",
        "Message": "confirm",
        "SubscribeURL": url.replace("/x.pem", "/?Action=ConfirmSubscription"),
        "Timestamp": "2026-11-26T01:00:00.000Z",
    }
    with pytest.raises(PayloadError) as err:
        normalise("cloudwatch_sns", body)
    assert err.value.path == "SubscribeURL"


def test_the_fetch_connects_to_the_checked_host_port_and_path(monkeypatch) -> None:
    calls: list[tuple] = []

    class Connection:
        def __init__(self, host, port, timeout, context):
            calls.append(("connect", host, port))

        def request(self, method, target, headers):
            calls.append((method, target))

        def getresponse(self):
            raise OSError("stop here")

        def close(self):
            calls.append(("close",))

    monkeypatch.setattr(hu.http.client, "HTTPSConnection", Connection)
    url = hu.check_https_url(f"https://{SNS}/SimpleNotificationService-1.pem?x=1", _sns_host)
    with pytest.raises(OSError):
        hu.fetch_https(url, timeout=1.0, limit=10)
    assert calls == [
        ("connect", SNS, 443),
        ("GET", "/SimpleNotificationService-1.pem?x=1"),
        ("close",),
    ]


def test_subscription_confirmation_fetches_the_checked_parts(
    make_dispatcher,  # noqa: F811
    env,  # noqa: F811
    monkeypatch,
) -> None:
    from selfheal.dispatcher import app as app_module

    fetched: list[tuple] = []
    monkeypatch.setattr(
        app_module,
        "fetch_https",
        lambda url, timeout, limit: fetched.append((url.host, url.port, url.target)) or b"",
    )
    sources = {**env["config"]["sources"]}
    sources["cloudwatch_sns"] = {"verify_signatures": False, "confirm_subscriptions": True}
    _, client = make_dispatcher(sources=sources)
    body = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m-1",
        "Token": "t",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:selfheal",
        "Message": "confirm",
        "SubscribeURL": f"https://{SNS}/?Action=ConfirmSubscription&Token=t",
        "Timestamp": "2026-11-26T01:00:00.000Z",
    }
    r = client.post("/alerts/cloudwatch_sns", body, token=TOKEN)
    assert r.status == 200, r.body
    assert fetched == [(SNS, 443, "/?Action=ConfirmSubscription&Token=t")]


_url_chars = st.sampled_from([*"abc.-:/@\\?#%[]09 \t\n\u3002\u0130", SNS, "https://"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_url_chars, max_size=12).map("".join))
def test_every_parser_agrees_on_an_accepted_url(text) -> None:
    """Whatever the checker accepts, urlsplit and urllib's request see the same host and port
    (and the text is the canonical one rebuilt from the checked parts)."""
    try:
        url = hu.check_https_url(text, lambda host: True, allow_port=True)
    except hu.URLError:
        return
    parts = urllib.parse.urlsplit(url)
    assert (parts.hostname, parts.port or 443) == (url.host, url.port)
    request = urllib.request.Request(url)
    host, _, port = request.host.partition(":")
    assert (host, int(port or 443)) == (url.host, url.port)
    assert "@" not in request.host and "\\" not in url
    assert hu.check_https_url(str(url), lambda host: True, allow_port=True) == url
