"""Alert content is data. Labels only *select* among inventory hosts and policy runbooks;
these checks refuse labels that look like an attempt to be more than data."""

from __future__ import annotations

import re
from collections.abc import Mapping

_JINJA = ("{{", "{%", "{#", "}}", "%}", "#}")
_SHELL = re.compile(r"[;&|`$<>\\\n\r\x00]|\$\(")
_TRAVERSAL = re.compile(r"(^|[/\\])\.\.([/\\]|$)")
#: what a value passed to a playbook may look like (host names, service and runbook names)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,252}$")


def label_problems(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(code, message) for every label that is not plain data, in label order."""
    problems: list[tuple[str, str]] = []
    for key, value in labels.items():
        for text, what in ((key, "name"), (value, "value")):
            shown = repr(text[:80])
            if any(marker in text for marker in _JINJA):
                problems.append(
                    ("unsafe_label", f"label {key[:80]!r} {what} {shown} holds template syntax")
                )
            elif _SHELL.search(text):
                problems.append(
                    (
                        "unsafe_label",
                        f"label {key[:80]!r} {what} {shown} holds shell metacharacters",
                    )
                )
            elif _TRAVERSAL.search(text):
                problems.append(
                    ("unsafe_label", f"label {key[:80]!r} {what} {shown} holds a path traversal")
                )
    return problems


def safe_name(value: str) -> bool:
    return bool(SAFE_NAME.match(value)) and ".." not in value
