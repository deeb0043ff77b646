"""Run one runbook playbook through ansible-runner in its own private data directory.

Like `selfheal.runner.run_playbook`, plus what the dispatcher needs: the extra vars go to
``env/extravars`` as YAML with every string tagged ``!unsafe`` (Ansible never templates
them, whatever they hold), a cancel callback, and the audit callback's environment.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ansible_runner
import yaml

from selfheal.dispatcher import fence
from selfheal.runner import (
    _PASSTHROUGH,
    RunResult,
    ansible_playbook,
    collection_root,
    playbook_args,
)


def unsafe_yaml(values: Mapping[str, Any]) -> str:
    """A YAML mapping whose strings are all ``!unsafe``; ints and bools stay plain."""
    lines = []
    for key, value in values.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"extra var name {key!r} is not an identifier")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            # A JSON string is a valid YAML double-quoted scalar.
            text = "!unsafe " + json.dumps(value)
        else:
            raise ValueError(f"extra var {key!r} must be a string, int or bool")
        lines.append(f"{key}: {text}")
    return "\n".join(lines) + "\n" if lines else "{}\n"  # ansible refuses an empty file


def resolve_playbook(name: str, policy_dir: Path | None) -> Path:
    """A runbook's `playbook`: absolute, relative to the policy file, or in the collection."""
    path = Path(name)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = []
        if policy_dir is not None:
            candidates.append(policy_dir / path)
        root = collection_root()
        candidates += [root / path, root / "playbooks" / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"playbook not found: {name}")


def execute(
    playbook: Path,
    inventory: Path,
    *,
    extravars: Mapping[str, Any],
    envvars: Mapping[str, str] | None = None,
    timeout: int | None = None,
    base_dir: Path,
    prefix: str = "run-",
    cancel: Callable[[], bool] | None = None,
    private_dir: Path | None = None,
    fence_dir: Path | None = None,
) -> RunResult:
    """Run `playbook`; in `private_dir` when given (made by the caller), else in a new dir
    under `base_dir`. With `fence_dir`, ``ansible-playbook`` runs under the run guard fenced
    by that directory's lease (selfheal.dispatcher.fence)."""
    if private_dir is None:
        base_dir.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
    else:
        private = private_dir
    (private / "env").mkdir()
    extra = private / "env" / "extravars"
    extra.write_text(unsafe_yaml(extravars))
    env = {
        "ANSIBLE_PYTHON_INTERPRETER": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", sys.executable),
        "ANSIBLE_NOCOLOR": "1",
        **{k: v for k, v in os.environ.items() if k in _PASSTHROUGH or k.startswith("SELFHEAL_")},
        **(envvars or {}),
    }
    if fence_dir is None:
        command = playbook_args(playbook)
    else:
        guarded = fence.guard_command(fence_dir, [ansible_playbook(), str(playbook)])
        command = {"binary": guarded[0], "cmdline": shlex.join(guarded[1:])}
    spawner = os.getpid()
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            **command,
            inventory=str(inventory.resolve()),
            envvars=env,
            timeout=timeout,
            quiet=True,
            json_mode=False,
            cancel_callback=cancel,
        )
    finally:
        if os.getpid() != spawner:
            # the child pexpect forked, failing before its exec (its pty hung up when the
            # dispatcher was killed mid-spawn): it must never go on as a second dispatcher
            os._exit(127)
    if fence_dir is not None and runner.status in ("canceled", "timeout"):
        # ansible-runner killed the guard's group; Ansible's workers left it (setsid)
        fence.sweep(env.get(fence.ATTEMPT_ENV, ""))
    failed = [
        f"{e['event_data'].get('host')}: {e['event_data'].get('task')}"
        for e in runner.events
        if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
        and not e["event_data"].get("ignore_errors")
    ]
    return RunResult(
        status=runner.status,
        rc=runner.rc if runner.rc is not None else -1,
        private_data_dir=private,
        stats=runner.stats or {},
        failed_tasks=failed,
    )


def verify_playbook(checks: list[Mapping[str, Any]]) -> str:
    """A playbook probing ``target`` with the runbook's `verify` checks (trusted policy
    content) through selfheal.core.health_check; it fails when a check fails."""
    converted = []
    for i, item in enumerate(checks):
        args = dict(item.get("args") or {})
        converted.append(
            {"name": str(item.get("name", f"verify{i}")), "kind": item["check"], **args}
        )
    play = [
        {
            "name": "Verify the remediation",
            "hosts": "{{ target }}",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Run the runbook's verification checks",
                    "selfheal.core.health_check": {
                        "checks": converted,
                        "fail_on_unhealthy": True,
                    },
                }
            ],
        }
    ]
    return yaml.safe_dump(play, sort_keys=False)
