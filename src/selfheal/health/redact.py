"""Keep secrets and tracebacks out of the reasons a health endpoint publishes.

A health endpoint is often reachable by load balancers, monitoring and sometimes the whole
internal network, so a reason must never carry a password, a token or a stack trace. Every
reason goes through `clean_reason()` before it is published.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
MAX_REASON_CHARS = 300

# scheme://user:password@host  ->  scheme://user:***@host
_URL_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):(?P<secret>[^@/?#\s]*)@"
)
# password=..., password: '...', pwd=..., token=..., api_key=...  (libpq key/value DSNs,
# query strings, driver messages)
_KEY_VALUE = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key)"
    r"\s*[=:]\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\b(?:bearer|basic)\s+)(?P<secret>[A-Za-z0-9._~+/\-]+=*)", re.I)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with URL passwords, key=value secrets and the given literal secrets masked."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)


def clean_reason(text: str, secrets: Iterable[str] = ()) -> str:
    """A publishable reason: first line only (no traceback), redacted, bounded in length."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    first = redact(first, secrets)
    if len(first) > MAX_REASON_CHARS:
        first = first[: MAX_REASON_CHARS - 3] + "..."
    return first


def describe_exception(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """`Type: message` of an exception, cleaned; never its traceback."""
    message = clean_reason(str(exc), secrets)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name
