"""Helpers shared by tests: the working-tree collection, ansible entry points, playbook runs.

Importing this module points ansible at the working tree: the collection through a
symlinked `ansible_collections/selfheal/core` on ANSIBLE_COLLECTIONS_PATH, the package
through `src/` first on PYTHONPATH (controller plugins import `selfheal`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
# Debian's Chromium for browser tests, driven by Playwright (which never downloads its own);
# without the background-networking switches it keeps dialling out of a closed network.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _collection_tree() -> Path:
    # Outside the checkout, so that nothing walking the repo meets a link back into it.
    digest = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / f"selfheal-collections-{digest}"
    link = base / "ansible_collections" / "selfheal" / "core"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        with contextlib.suppress(FileExistsError):  # a parallel worker made it first
            link.symlink_to(REPO, target_is_directory=True)
    return base


COLLECTIONS = _collection_tree()
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p
)
# Interpreter discovery can pick a shim that fails; tests always pin the interpreter.
os.environ.setdefault("ANSIBLE_PYTHON_INTERPRETER", sys.executable)
os.environ.setdefault("ANSIBLE_NOCOLOR", "1")
os.environ.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "False")
os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")


def ansible_bin(name: str) -> str:
    """Path of an ansible entry point installed beside this interpreter."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def run_playbook(
    playbook: str | Path,
    *args: str,
    extra_vars: dict | None = None,
    check: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess:
    """Run ansible-playbook against localhost with the working-tree collection."""
    cmd = [ansible_bin("ansible-playbook"), "-i", str(REPO / "inventories/local/hosts.yml")]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    cmd += [*args, str(playbook)]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )
