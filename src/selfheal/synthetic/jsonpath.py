"""The small JSON path subset journeys use: ``$.a.b[0].c`` (the ``$.`` is optional)."""

from __future__ import annotations

import re
from typing import Any

from selfheal.errors import ConfigError

_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]")
MISSING = object()


def compile_path(path: str, where: str) -> tuple[str | int, ...]:
    text = path[1:] if path.startswith("$") else "." + path if path and path[0] != "[" else path
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ConfigError(f"invalid JSON path {path!r} at offset {pos}", path=where)
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return tuple(parts)


def lookup(document: Any, parts: tuple[str | int, ...]) -> Any:
    """The value at the path, or ``MISSING``."""
    node = document
    for part in parts:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return MISSING
        elif not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node
