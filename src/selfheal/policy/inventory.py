"""Targets and their tags: from an Ansible inventory, a plain mapping, or a host's vars.

Compliance tags come from a host's `selfheal_tags` (a list of names or `name=value`, or a
mapping) plus any host variables the policy names in `compliance.tag_vars`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from selfheal.policy.model import Policy

TAGS_VAR = "selfheal_tags"


def tags_from_hostvars(policy: Policy, hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """The tags a host carries, as the policy sees them."""
    tags: dict[str, Any] = {}
    raw = hostvars.get(TAGS_VAR)
    if isinstance(raw, Mapping):
        tags.update(raw)
    elif isinstance(raw, str):
        tags[raw] = True
    elif isinstance(raw, list | tuple):
        for item in raw:
            name, sep, value = str(item).partition("=")
            tags[name] = value if sep else True
    for name in (*policy.compliance.tag_vars, "env", "environment", "service"):
        if name in hostvars and name not in tags:
            tags[name] = hostvars[name]
    return tags


def _ansible_hosts(group: Mapping[str, Any], inherited: dict[str, Any], out: dict) -> None:
    group_vars = {**inherited, **(group.get("vars") or {})}
    for host, host_vars in (group.get("hosts") or {}).items():
        out[host] = {**out.get(host, {}), **group_vars, **(host_vars or {})}
    for child in (group.get("children") or {}).values():
        _ansible_hosts(child or {}, group_vars, out)


def is_ansible_inventory(data: Any) -> bool:
    return isinstance(data, Mapping) and any(
        isinstance(v, Mapping) and ({"hosts", "children", "vars"} & set(v)) for v in data.values()
    )


def inventory_from_data(policy: Policy, data: Any) -> dict[str, dict[str, Any]]:
    """`{host: tags}` from an Ansible YAML inventory, a `{host: tags}` mapping or a host list."""
    if data is None:
        return {}
    if isinstance(data, list):
        return {str(h): {} for h in data}
    if not isinstance(data, Mapping):
        raise ValueError("an inventory is a mapping of hosts (or an Ansible YAML inventory)")
    if is_ansible_inventory(data):
        hostvars: dict[str, dict[str, Any]] = {}
        for group in data.values():
            _ansible_hosts(group or {}, {}, hostvars)
        return {h: tags_from_hostvars(policy, v) for h, v in hostvars.items()}
    out = {}
    for host, value in data.items():
        if isinstance(value, Mapping) and TAGS_VAR in value:
            out[str(host)] = tags_from_hostvars(policy, value)
        elif isinstance(value, Mapping):
            out[str(host)] = dict(value)
        else:
            out[str(host)] = {str(t): True for t in (value or [])}
    return out
