"""Verify the signature of an Amazon SNS HTTP(S) message before anything trusts it.

SNS signs the canonical string of a message (selected fields, each as ``Name\\nvalue\\n``,
in a fixed order) with the key of an X.509 certificate it publishes at ``SigningCertURL``.
``SignatureVersion`` 1 is SHA1withRSA, 2 is SHA256withRSA. The certificate URL must be
https on an ``sns.<region>.amazonaws.com`` host (an allow-list can replace that pattern),
so a forger cannot point it at their own certificate. The URL is parsed once
(`selfheal.alerts.https_url`) and the certificate fetched from exactly the checked host,
port and path. Certificates are cached by URL.

    verifier = SNSVerifier()
    verifier.verify(json.loads(body))      # raises SignatureError naming the field
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from selfheal.alerts.https_url import CheckedURL, URLError, check_https_url, fetch_https

DEFAULT_CERT_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
MAX_CERT_BYTES = 64 * 1024
CACHE_SIZE = 32
CACHE_TTL_S = 24 * 3600.0

_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_FIELDS["UnsubscribeConfirmation"] = _SIGNED_FIELDS["SubscriptionConfirmation"]
_OPTIONAL = {"Subject"}  # signed only when the message has it
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


class SignatureError(Exception):
    """The message is not provably from SNS. `status` is the HTTP answer to give."""

    def __init__(self, message: str, field: str, status: int = 403):
        super().__init__(message)
        self.field = field
        self.status = status


def canonical_string(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed for this message (its `Type` picks the fields)."""
    kind = message.get("Type")
    fields = _SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise SignatureError(
            "must be Notification, SubscriptionConfirmation or UnsubscribeConfirmation",
            "Type",
            400,
        )
    out = []
    for name in fields:
        value = message.get(name)
        if value is None and name in _OPTIONAL:
            continue
        if not isinstance(value, str):
            raise SignatureError("missing or not a string (it is signed)", name, 400)
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


def _default_fetch(url: CheckedURL, timeout: float) -> bytes:
    # from the checked parts, never the text re-parsed; a fresh TLS context each time
    return fetch_https(url, timeout=timeout, limit=MAX_CERT_BYTES)


class SNSVerifier:
    def __init__(
        self,
        cert_hosts: Sequence[str] = (),
        *,
        fetch: Callable[[CheckedURL, float], bytes] = _default_fetch,
        timeout_s: float = 5.0,
    ):
        """`cert_hosts`: host names allowed in SigningCertURL (default: the SNS pattern)."""
        self.cert_hosts = frozenset(h.lower() for h in cert_hosts)
        self._fetch = fetch
        self.timeout_s = timeout_s
        self._cache: dict[str, tuple[float, rsa.RSAPublicKey]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def _host_allowed(self, host: str) -> bool:
        if self.cert_hosts:
            return host in self.cert_hosts
        return DEFAULT_CERT_HOST.fullmatch(host) is not None

    def _check_url(self, url: Any) -> CheckedURL:
        if not isinstance(url, str) or not url:
            raise SignatureError("missing", "SigningCertURL", 400)
        try:  # an explicit allow-list may name a test or proxy host on another port
            checked = check_https_url(url, self._host_allowed, allow_port=bool(self.cert_hosts))
        except URLError as exc:
            if str(exc) == "host not allowed":
                raise SignatureError(
                    "must be on an sns.<region>.amazonaws.com host", "SigningCertURL"
                ) from None
            raise SignatureError(str(exc), "SigningCertURL") from None
        if "?" in checked.target or not checked.target.endswith(".pem"):
            raise SignatureError("must name a .pem certificate", "SigningCertURL")
        return checked

    def public_key(self, url: CheckedURL | str) -> rsa.RSAPublicKey:
        """The RSA key of the certificate at `url` (checked, fetched once, then cached)."""
        url = url if isinstance(url, CheckedURL) else self._check_url(url)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None and now - hit[0] < CACHE_TTL_S:
                return hit[1]
        try:
            self.fetches += 1
            pem = self._fetch(url, self.timeout_s)
        except OSError as exc:
            raise SignatureError(
                f"could not fetch the certificate ({exc})", "SigningCertURL", 502
            ) from None
        if len(pem) > MAX_CERT_BYTES:
            raise SignatureError("the certificate is too large", "SigningCertURL")
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SignatureError("not a PEM certificate", "SigningCertURL") from None
        current = datetime.now(UTC)
        if not cert.not_valid_before_utc <= current <= cert.not_valid_after_utc:
            raise SignatureError("the signing certificate is not valid now", "SigningCertURL")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureError("the certificate's key is not RSA", "SigningCertURL")
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[url] = (now, key)
        return key

    def verify(self, message: Any) -> None:
        """Raise `SignatureError` unless `message` (a parsed SNS body) is signed by SNS."""
        if not isinstance(message, dict):
            raise SignatureError("an SNS message is a JSON object", "(payload)", 400)
        version = message.get("SignatureVersion")
        algorithm = _HASHES.get(version) if isinstance(version, str) else None
        if algorithm is None:
            raise SignatureError('must be "1" or "2"', "SignatureVersion", 400)
        raw_signature = message.get("Signature")
        if not isinstance(raw_signature, str) or not raw_signature:
            raise SignatureError("missing", "Signature", 400)
        try:
            signature = base64.b64decode(raw_signature, validate=True)
        except ValueError:
            raise SignatureError("not base64", "Signature", 400) from None
        signed = canonical_string(message)
        key = self.public_key(self._check_url(message.get("SigningCertURL")))
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise SignatureError("does not match the message", "Signature") from None
