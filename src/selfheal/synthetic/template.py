"""``${name}`` substitution: plain text replacement, not a template language.

One pass over the text the journey's author wrote; a substituted value is never scanned
again, so a response that returns ``${other}`` or ``{{ expr }}`` stays those characters.
Values extracted from responses are percent-encoded when they go into a URL, so they cannot
change its host or path structure.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from selfheal.errors import ConfigError

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(
    text: str, variables: dict[str, str], where: str, *, url_safe: set[str] | None = None
) -> str:
    """``text`` with each ``${name}`` replaced; names in ``url_safe`` are percent-encoded."""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in variables:
            raise ConfigError(f"undefined variable ${{{name}}}", path=where)
        value = variables[name]
        return quote(value, safe="") if url_safe is not None and name in url_safe else value

    return VARIABLE.sub(replace, text)


def substitute_data(data: Any, variables: dict[str, str], where: str) -> Any:
    """Substitution in every string of a JSON-like structure (keys included)."""
    if isinstance(data, str):
        return substitute(data, variables, where)
    if isinstance(data, list):
        return [substitute_data(v, variables, f"{where}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, dict):
        return {
            substitute(str(k), variables, where): substitute_data(v, variables, f"{where}.{k}")
            for k, v in data.items()
        }
    return data


def names_in(text: str) -> set[str]:
    return set(VARIABLE.findall(text))
