"""Keep secrets out of audit records.

Two layers: values marked no_log (a mapping carrying ``_ansible_no_log: true``, or a caller
saying the whole value is secret) are replaced wholesale, and every string is scrubbed of
known secret shapes — passwords and tokens in key/value text, bearer/basic authorization
headers, AWS access keys and secrets, PEM private keys, passwords inside DSNs/URLs. Mapping
keys whose name says "secret" (password, token, api_key, ...) have their values masked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

MASK = "********"
NO_LOG_MESSAGE = "the output has been hidden due to the fact that 'no_log: true' was specified"

_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|private[_-]?key|"
    r"authorization|auth[_-]?header|credential|cookie|session[_-]?id|access[_-]?key|"
    r"client[_-]?secret|signature|dsn|connection[_-]?string)"
)
# Keys that match the pattern above but describe something harmless.
_SAFE_KEYS = frozenset({"password_changed", "token_type", "no_log", "passwd_file"})

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys (RSA, EC, OPENSSH, PKCS#8, encrypted)
    (
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|\Z)",
            re.S,
        ),
        "-----BEGIN PRIVATE KEY-----" + MASK + "-----END PRIVATE KEY-----",
    ),
    # Authorization headers: Bearer / Basic / Splunk / token schemes
    (
        re.compile(r"(?i)\b(bearer|basic|splunk|token|digest)(\s+)[A-Za-z0-9\-._~+/=:]{6,}"),
        r"\1\2" + MASK,
    ),
    # user:password@ inside URLs and DSNs
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)([^\s@/]+)(@)"), r"\1" + MASK + r"\3"),
    # AWS access key ids
    (re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[A-Z0-9]{16}\b"), MASK),
    # key=value / key: value text for secret-ish keys (also aws_secret_access_key)
    (
        re.compile(
            r"(?i)\b([a-z0-9_\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|"
            r"access[_-]?key)[a-z0-9_\-]*)(\s*[=:]\s*|\"\s*:\s*\"|'\s*:\s*')"
            r"(?!\*{8})([^\s,;&\"']+)"
        ),
        r"\1\2" + MASK,
    ),
    # Well-known token shapes: GitHub, GitLab, Slack, JWTs
    (re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9\-_]{20,})\b"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\b"), MASK),
)


# Cheap first pass over the lower-cased text: a string none of whose triggers occur needs
# no substitution (a literal alternation without IGNORECASE is several times faster).
_TRIGGERS = (
    "private key", "bearer", "basic", "splunk", "token", "digest", "://", "akia", "asia",
    "agpa", "aida", "aroa", "anpa", "anva", "pass", "pwd", "secret", "api", "access",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "glpat-", "xox", "eyj",
)  # fmt: skip
_TRIGGER = re.compile("|".join(re.escape(t) for t in _TRIGGERS))


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    return key.lower() not in _SAFE_KEYS and _SECRET_KEY.search(key) is not None


def redact_text(text: str) -> str:
    """`text` with every known secret shape masked."""
    if len(text) <= 256:
        return _redact_short(text)
    return _redact(text)


def _redact(text: str) -> str:
    if _TRIGGER.search(text.lower()) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Task names, hosts and outcomes repeat: remember the answers for short strings.
_redact_short = functools.lru_cache(maxsize=16384)(_redact)


def redact(value: Any, no_log: bool = False, _depth: int = 0) -> Any:
    """A JSON-able copy of `value` with secrets masked.

    `no_log` (or a mapping with ``_ansible_no_log`` true) hides the value entirely.
    Unknown objects become their (scrubbed) string form.
    """
    if no_log:
        return NO_LOG_MESSAGE
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if _depth > 50:
        return "<nested too deep>"
    if isinstance(value, Mapping):
        if value.get("_ansible_no_log") is True:
            return {"censored": NO_LOG_MESSAGE}
        out = {}
        for k, v in value.items():
            key = str(k)
            if is_secret_key(key) and v not in (None, "", [], {}) and not isinstance(v, bool):
                out[key] = MASK
            else:
                out[key] = redact(v, _depth=_depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, _depth=_depth + 1) for v in value]
    return redact_text(str(value))
