"""The runbook catalog: what every remediation role of the collection declares about itself.

Each role under `roles/` carries `meta/selfheal.yml`:

```yaml
runbook: heal_service          # the policy's name for it
playbook: heal_service.yml     # the playbook that runs it (under playbooks/)
risk: low                      # low | medium | high | critical (the policy's risk tiers)
cost: 0                        # estimate counted against the policy's daily cost budget
timeout: 120                   # seconds, or a duration such as 15m
fixes: a service that is down  # what it repairs
runs_on: the target host       # where it acts
verifies_with: health_check    # how it proves its own result
```

`load_catalog()` reads them all (validated, errors name the file and field);
`policy_runbooks()` turns the catalog into the `runbooks:` section of a policy file, so a
policy can start from what the roles declare instead of restating it; `markdown_table()`
renders the table of the README's "Runbook catalog".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from selfheal.errors import ConfigError
from selfheal.policy.model import RISKS, parse_duration

REQUIRED = ("runbook", "playbook", "risk", "cost", "timeout", "fixes", "runs_on", "verifies_with")
META = Path("meta") / "selfheal.yml"


@dataclass(frozen=True)
class Entry:
    role: str
    runbook: str
    playbook: str
    risk: str
    cost: float
    timeout: timedelta
    fixes: str
    runs_on: str
    verifies_with: str

    def policy_runbook(self) -> dict[str, Any]:
        """This entry as a policy `runbooks:` item."""
        return {
            "playbook": self.playbook,
            "risk": self.risk,
            "cost": self.cost,
            "timeout": f"{int(self.timeout.total_seconds())}s",
            "description": self.fixes,
        }


def roles_dir() -> Path:
    """The collection's roles: beside the package in a checkout, or in the installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (
        here.parent.parent / "roles",  # checkout: src/selfheal -> repo root
        here.parent / "ansible_collections" / "selfheal" / "core" / "roles",  # wheel
    ):
        if candidate.is_dir():
            return candidate
    raise ConfigError("cannot find the collection's roles directory")


def load_entry(role_dir: Path) -> Entry:
    path = role_dir / META
    where = f"{role_dir.name}/{META}"
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", where) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", where) from exc
    if not isinstance(doc, dict):
        raise ConfigError("must be a mapping", where)
    missing = [key for key in REQUIRED if key not in doc]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}", where)
    unknown = sorted(set(doc) - set(REQUIRED))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}", where)
    if doc["risk"] not in RISKS:
        raise ConfigError(
            f"must be one of {', '.join(RISKS)}; got {doc['risk']!r}", f"{where}.risk"
        )
    cost = doc["cost"]
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
        raise ConfigError(f"must be a number >= 0; got {cost!r}", f"{where}.cost")
    try:
        timeout = parse_duration(doc["timeout"])
    except ValueError as exc:
        raise ConfigError(str(exc), f"{where}.timeout") from exc
    if timeout <= timedelta(0):
        raise ConfigError("must be positive", f"{where}.timeout")
    for key in ("runbook", "playbook", "fixes", "runs_on", "verifies_with"):
        if not isinstance(doc[key], str) or not doc[key].strip():
            raise ConfigError("must be a non-empty string", f"{where}.{key}")
    return Entry(
        role=role_dir.name,
        runbook=doc["runbook"],
        playbook=doc["playbook"],
        risk=doc["risk"],
        cost=float(cost),
        timeout=timeout,
        fixes=doc["fixes"].strip(),
        runs_on=doc["runs_on"].strip(),
        verifies_with=doc["verifies_with"].strip(),
    )


def load_catalog(root: str | Path | None = None) -> list[Entry]:
    """Every role that declares itself a runbook (has meta/selfheal.yml), by role name."""
    base = Path(root) if root is not None else roles_dir()
    entries = [load_entry(d) for d in sorted(base.iterdir()) if (d / META).is_file()]
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.runbook in seen:
            raise ConfigError(
                f"runbook {entry.runbook!r} is declared by {seen[entry.runbook]} and {entry.role}"
            )
        seen[entry.runbook] = entry.role
    return entries


def policy_runbooks(entries: Iterable[Entry]) -> dict[str, dict[str, Any]]:
    """The `runbooks:` section of a policy file for these entries."""
    return {entry.runbook: entry.policy_runbook() for entry in entries}


def merge_into_policy(policy: dict[str, Any], entries: Iterable[Entry]) -> dict[str, Any]:
    """A copy of a policy document whose `runbooks:` gains every catalog runbook it lacks.

    Runbooks the policy already defines win: the policy may tighten a tier or a timeout.
    """
    merged = dict(policy)
    runbooks = dict(policy.get("runbooks") or {})
    for name, item in policy_runbooks(entries).items():
        runbooks.setdefault(name, item)
    merged["runbooks"] = runbooks
    return merged


def markdown_table(entries: Iterable[Entry]) -> str:
    rows = [
        "| runbook | what it fixes | risk tier | where it runs | how it verifies |",
        "| --- | --- | --- | --- | --- |",
    ]
    for e in entries:
        name = f"`{e.runbook}` (`playbooks/{e.playbook}`, role `{e.role}`)"
        rows.append(f"| {name} | {e.fixes} | {e.risk} | {e.runs_on} | {e.verifies_with} |")
    return "\n".join(rows) + "\n"


def main() -> int:  # pragma: no cover - a convenience for the docs
    print(markdown_table(load_catalog()), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
