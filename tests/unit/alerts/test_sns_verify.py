"""SNS message signatures: messages signed in the test with a self-made key, the certificate
served by a local HTTPS server (trusted through SSL_CERT_FILE), tampering rejected, the
certificate URL checked before anything is fetched, and the intake endpoint refusing
unsigned or forged messages with a 4xx naming the field."""

from __future__ import annotations

import base64
import copy
import ipaddress
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from unit.alerts import alert_fixtures as fx
from unit.dispatcher.conftest import env, make_dispatcher  # noqa: F401 - fixtures
from unit.dispatcher.helpers import TOKEN

from selfheal.alerts.sns_verify import SignatureError, SNSVerifier, canonical_string

CERT_PATH = "/SimpleNotificationService-test.pem"


def _cert(key: rsa.RSAPrivateKey, name: str, days: int = 1, ip: str | None = None):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5) if days > 0 else now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=days))
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        ).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256())


class CertServer:
    """HTTPS on 127.0.0.1 serving the signing certificate (and counting the fetches)."""

    def __init__(self, tmp: Path, signing_pem: bytes):
        tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tls_cert = _cert(tls_key, "127.0.0.1", ip="127.0.0.1")
        self.ca_file = tmp / "tls.pem"
        self.ca_file.write_bytes(tls_cert.public_bytes(serialization.Encoding.PEM))
        key_file = tmp / "tls.key"
        key_file.write_bytes(
            tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.hits = 0
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server_self.hits += 1
                found = self.path == CERT_PATH
                body = signing_pem if found else b"not found"
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def cert_url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}{CERT_PATH}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def cert_server(tmp_path, signing_key, monkeypatch):
    pem = _cert(signing_key, "sns.amazonaws.com").public_bytes(serialization.Encoding.PEM)
    server = CertServer(tmp_path, pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))  # trust the test's TLS cert
    yield server
    server.stop()


def sign(message: dict, key: rsa.RSAPrivateKey, version: str = "1", url: str = "") -> dict:
    message = {**message, "SignatureVersion": version}
    if url:
        message["SigningCertURL"] = url
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical_string(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def _verifier() -> SNSVerifier:
    return SNSVerifier(["127.0.0.1"])


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_notification_verifies_and_the_cert_is_cached(
    cert_server, signing_key, version
) -> None:
    verifier = _verifier()
    message = sign(fx.sns_notification(), signing_key, version, cert_server.cert_url)
    verifier.verify(message)
    verifier.verify(
        sign(fx.sns_notification(MessageId="m-2"), signing_key, version, cert_server.cert_url)
    )
    assert cert_server.hits == 1 and verifier.fetches == 1


def test_subscription_confirmation_signs_url_and_token(cert_server, signing_key) -> None:
    message = sign(fx.sns_subscription_confirmation(), signing_key, "2", cert_server.cert_url)
    _verifier().verify(message)
    for name in ("SubscribeURL", "Token"):  # both are signed: changing either breaks it
        forged = {**message, name: message[name] + "x"}
        with pytest.raises(SignatureError) as err:
            _verifier().verify(forged)
        assert err.value.field == "Signature" and err.value.status == 403


def test_subject_is_signed_only_when_present(cert_server, signing_key) -> None:
    body = fx.sns_notification()
    del body["Subject"]
    _verifier().verify(sign(body, signing_key, "1", cert_server.cert_url))


@pytest.mark.parametrize(
    "field",
    ["Message", "MessageId", "Subject", "Timestamp", "TopicArn"],
)
def test_tampered_notification_is_rejected(cert_server, signing_key, field) -> None:
    message = sign(fx.sns_notification(), signing_key, "1", cert_server.cert_url)
    tampered = copy.deepcopy(message)
    tampered[field] = tampered[field].replace("ALARM", "OK") + " "
    with pytest.raises(SignatureError) as err:
        _verifier().verify(tampered)
    assert err.value.field == "Signature" and err.value.status == 403


def test_another_key_is_rejected(cert_server) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SignatureError, match="does not match"):
        _verifier().verify(sign(fx.sns_notification(), other, "2", cert_server.cert_url))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem", "https"),
        ("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem", "amazonaws"),
        ("https://evil.example/SimpleNotificationService-1.pem", "amazonaws"),
        ("https://s3.amazonaws.com/SimpleNotificationService-1.pem", "amazonaws"),
        ("https://sns.eu-west-1.amazonaws.com/cert.txt", ".pem"),
    ],
)
def test_cert_url_is_checked_before_fetching(signing_key, url, message) -> None:
    fetched: list[str] = []
    verifier = SNSVerifier(fetch=lambda u, t: fetched.append(u) or b"")
    with pytest.raises(SignatureError, match=message) as err:
        verifier.verify(sign(fx.sns_notification(), signing_key, "1", url))
    assert err.value.field == "SigningCertURL"
    assert fetched == []


def test_default_allows_sns_hosts(signing_key) -> None:
    pem = _cert(signing_key, "sns").public_bytes(serialization.Encoding.PEM)
    fetched: list[str] = []
    verifier = SNSVerifier(fetch=lambda u, t: fetched.append(u) or pem)
    url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
    verifier.verify(sign(fx.sns_notification(), signing_key, "2", url))
    assert fetched == [url]


def test_expired_certificate_is_rejected(signing_key) -> None:
    cert = _cert(signing_key, "sns", days=-1)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    verifier = SNSVerifier(fetch=lambda u, t: pem)
    url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-old.pem"
    with pytest.raises(SignatureError, match="not valid now"):
        verifier.verify(sign(fx.sns_notification(), signing_key, "1", url))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"SignatureVersion": None}, "SignatureVersion"),
        ({"Signature": "***"}, "Signature"),
        ({"Signature": ""}, "Signature"),
        ({"SigningCertURL": None}, "SigningCertURL"),
        ({"Type": "Bogus"}, "Type"),
        ({"Timestamp": None}, "Timestamp"),
    ],
)
def test_malformed_messages_name_the_field(change, field) -> None:
    message = {**fx.sns_notification(), **change}
    message = {k: v for k, v in message.items() if v is not None}
    with pytest.raises(SignatureError) as err:
        SNSVerifier(fetch=lambda u, t: b"").verify(message)
    assert err.value.field == field and err.value.status == 400


def test_intake_refuses_unsigned_and_forged_sns(
    make_dispatcher,  # noqa: F811
    cert_server,
    signing_key,
) -> None:
    sources = {"cloudwatch_sns": {"signing_cert_hosts": ["127.0.0.1"]}}
    d, client = make_dispatcher(sources=sources)
    good = sign(fx.sns_notification(), signing_key, "2", cert_server.cert_url)
    r = client.post("/alerts/cloudwatch_sns", good, token=TOKEN)
    assert r.status == 202, r.body
    forged = {**good, "Message": good["Message"].replace("ALARM", "OK")}
    r = client.post("/alerts/cloudwatch_sns", forged, token=TOKEN)
    assert r.status == 403 and r.json()["field"] == "Signature"
    r = client.post("/alerts/cloudwatch_sns", fx.sns_notification(), token=TOKEN)  # AWS host
    assert r.status == 403 and r.json()["field"] == "SigningCertURL"  # not on the allow-list
    unsigned = {k: v for k, v in good.items() if k not in ("Signature", "SignatureVersion")}
    r = client.post("/alerts/cloudwatch_sns", unsigned, token=TOKEN)
    assert r.status == 400 and r.json()["field"] == "SignatureVersion"
    assert len(d.store.list_incidents()) == 1  # only the signed one got in
