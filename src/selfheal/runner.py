"""Run one playbook through ansible-runner in a private data directory.

Each run gets its own private data dir (artifacts, env, inventory copy), so concurrent runs
never share state, and the dir is kept for the postmortem unless the caller removes it.
The call blocks: async callers run it in an executor.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner


@dataclass
class RunResult:
    status: str  # successful | failed | timeout | canceled
    rc: int
    private_data_dir: Path
    stats: dict[str, Any] = field(default_factory=dict)
    failed_tasks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0

    def changed_hosts(self) -> list[str]:
        return sorted(self.stats.get("changed", {}))


def collection_root() -> Path:
    """Where the installed collection lives, or, run from a checkout, the working tree."""
    try:
        from ansible_collections.selfheal import core  # type: ignore[import-not-found]
    except ImportError:
        checkout = Path(__file__).resolve().parents[2]  # src/selfheal/runner.py
        if (checkout / "galaxy.yml").is_file():
            return checkout
        raise
    return Path(next(iter(core.__path__)))


@functools.cache
def ansible_playbook() -> str:
    """The ``ansible-playbook`` installed with the ansible-core selfheal imports.

    ansible-runner otherwise runs the first ``ansible-playbook`` on PATH: a service started
    without its virtualenv on PATH would get another install's ansible (one without the
    selfheal.core collection, maybe another version), or none at all.
    """
    try:
        dist = importlib.metadata.distribution("ansible-core")
        for file in dist.files or ():
            if file.name == "ansible-playbook":
                path = Path(str(dist.locate_file(file))).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    except importlib.metadata.PackageNotFoundError:
        pass
    return "ansible-playbook"  # found on PATH, as ansible-runner would


def playbook_args(playbook: Path) -> dict[str, str]:
    """The `ansible_runner.run` arguments that run `playbook` with `ansible_playbook()`."""
    binary = ansible_playbook()
    if binary == "ansible-playbook":
        return {"playbook": str(playbook)}
    # Given a `binary`, ansible-runner adds inventory, limit and extra vars but not the
    # playbook: that goes in the command line it passes through.
    return {"binary": binary, "cmdline": shlex.quote(str(playbook))}


def run_playbook(
    playbook: str | Path,
    inventory: str | Path,
    *,
    extravars: dict[str, Any] | None = None,
    envvars: dict[str, str] | None = None,
    limit: str | None = None,
    timeout: int | None = None,
    base_dir: str | Path | None = None,
    quiet: bool = True,
) -> RunResult:
    """Run `playbook` (a path, or a name under the collection's playbooks/) and wait."""
    playbook = Path(playbook)
    if not playbook.is_absolute() and not playbook.exists():
        playbook = collection_root() / "playbooks" / playbook
    if not playbook.is_file():
        raise FileNotFoundError(f"playbook not found: {playbook}")
    private = Path(tempfile.mkdtemp(prefix="run-", dir=base_dir))
    env = {
        # The interpreter running selfheal has ansible; discovery may pick a broken shim.
        "ANSIBLE_PYTHON_INTERPRETER": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", sys.executable),
        "ANSIBLE_NOCOLOR": "1",
        **{k: v for k, v in os.environ.items() if k in _PASSTHROUGH},
        **(envvars or {}),
    }
    runner = ansible_runner.run(
        private_data_dir=str(private),
        **playbook_args(playbook.resolve()),
        inventory=str(Path(inventory).resolve()),
        extravars=extravars or {},
        envvars=env,
        limit=limit,
        timeout=timeout,
        quiet=quiet,
        json_mode=False,
    )
    failed = [
        f"{e['event_data'].get('host')}: {e['event_data'].get('task')}"
        for e in runner.events
        if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
        and not e["event_data"].get("ignore_errors")
    ]
    return RunResult(
        status=runner.status,
        rc=runner.rc,
        private_data_dir=private,
        stats=runner.stats or {},
        failed_tasks=failed,
    )


def task_results(private_data_dir: Path, task_name: str) -> list[dict[str, Any]]:
    """The module results of every host for the task named `task_name` in a finished run."""
    results = []
    for path in sorted((private_data_dir / "artifacts").glob("*/job_events/*.json")):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if (
            event.get("event") in ("runner_on_ok", "runner_on_failed")
            and data.get("task") == task_name
        ):
            results.append({"host": data.get("host"), **data.get("res", {})})
    return results


# Settings from the caller's environment that runs must keep.
_PASSTHROUGH = frozenset(
    {
        "ANSIBLE_COLLECTIONS_PATH",
        "ANSIBLE_CALLBACKS_ENABLED",
        "ANSIBLE_CONFIG",
        "PYTHONPATH",
        "SELFHEAL_POLICY",
        "SELFHEAL_STATE_DB",
        "SELFHEAL_AUDIT_PATH",
        "SELFHEAL_AUDIT_KEYS",
        "HOME",
        "PATH",
    }
)
