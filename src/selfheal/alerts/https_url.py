"""One parse of an https URL a message names (SNS ``SigningCertURL``, ``SubscribeURL``), and a
fetch that goes exactly where the check looked.

A URL checked with one parser and fetched with another can name two different hosts (for
example ``https://127.0.0.1:1\\@sns.us-east-1.amazonaws.com/x.pem``: ``urlsplit`` sees the
SNS host, other parsers the first one). Here the URL is parsed once, strictly, into host,
port and request target; anything a parser could read two ways is refused (user info,
backslashes, control characters, spaces, non-ASCII, percent-escapes or brackets in the
host, fragments), and the fetch connects to the checked host and port and asks for the
checked target, never re-reading the text.

    url = check_https_url(text, "SigningCertURL", allowed_host)   # or URLError
    body = fetch_https(url, timeout=5.0, limit=65536)
"""

from __future__ import annotations

import http.client
import re
import ssl
from collections.abc import Callable

MAX_URL = 4096
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*")
_PORT = re.compile(r"[0-9]{1,5}")


class URLError(ValueError):
    """A URL refused by `check_https_url`; the message says why."""


class CheckedURL(str):
    """An https URL that passed `check_https_url`: the text is rebuilt from the checked parts
    (``https://host[:port]/target``), and the parts are kept for the fetch."""

    host: str
    port: int
    target: str

    def __new__(cls, host: str, port: int, target: str) -> CheckedURL:
        text = f"https://{host}{'' if port == 443 else f':{port}'}{target}"
        self = super().__new__(cls, text)
        self.host, self.port, self.target = host, port, target
        return self


def check_https_url(
    url: object, allowed_host: Callable[[str], bool], *, allow_port: bool = False
) -> CheckedURL:
    """The URL's parts, or `URLError`. `allowed_host` judges the (lower-case) host name; a
    port other than 443 only with `allow_port` (an explicit allow-list of hosts)."""
    if not isinstance(url, str) or not url:
        raise URLError("missing")
    if len(url) > MAX_URL:
        raise URLError(f"longer than {MAX_URL} characters")
    if not url.isascii() or any(not 0x21 <= ord(c) <= 0x7E for c in url):
        raise URLError("must be printable ASCII without spaces or control characters")
    if "\\" in url:
        raise URLError("must not contain a backslash")
    if "#" in url:
        raise URLError("must not have a fragment")
    if not url.startswith("https://"):
        raise URLError("must be an https URL")
    rest = url[len("https://") :]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:end], rest[end:]
    if "@" in authority:
        raise URLError("must not carry user info (@)")
    host, sep, port_text = authority.partition(":")
    host = host.lower()
    if not _HOST.fullmatch(host):
        raise URLError("must name a plain host name")
    port = 443
    if sep:
        if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise URLError("has a bad port")
        port = int(port_text)
        if port != 443 and not allow_port:
            raise URLError("must use the default https port")
    if not allowed_host(host):
        raise URLError("host not allowed")
    if not target.startswith("/"):
        target = "/" + target  # "https://host?x" asks for "/?x"
    return CheckedURL(host, port, target)


def fetch_https(url: CheckedURL, *, timeout: float, limit: int) -> bytes:
    """GET the checked target from the checked host and port (TLS verified against the
    system trust store as configured now; redirects are not followed). At most `limit` + 1
    bytes are read; raises OSError (an http.client error included) on failure."""
    context = ssl.create_default_context()
    conn = http.client.HTTPSConnection(url.host, url.port, timeout=timeout, context=context)
    try:
        conn.request("GET", url.target, headers={"Accept": "*/*"})  # Host: from host, port
        response = conn.getresponse()
        body = response.read(limit + 1)
        if response.status != 200:
            raise OSError(f"HTTP {response.status} from {url.host}")
        return body
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer from {url.host} ({exc})") from None
    finally:
        conn.close()
