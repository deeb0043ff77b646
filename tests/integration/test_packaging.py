"""One install gives the CLI, the package and the collection; the Galaxy tarball ships only
the collection.

These build the real artifacts (a wheel with the project's build backend, a collection
tarball with ansible-galaxy) and install the wheel into a fresh virtualenv.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from support import REPO, ansible_bin

pytestmark = pytest.mark.integration


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{cmd}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


_FRESH_HOME = tempfile.mkdtemp(prefix="selfheal-fresh-home-")
atexit.register(shutil.rmtree, _FRESH_HOME, ignore_errors=True)


def _clean_env() -> dict[str, str]:
    """The environment a new user has: no ANSIBLE_COLLECTIONS_PATH, no PYTHONPATH into src/,
    and an empty home, so no collection installed under ~/.ansible earlier can answer."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("ANSIBLE_COLLECTIONS_PATH", "PYTHONPATH")
    }
    env["HOME"] = _FRESH_HOME
    return env


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pkg")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp), str(REPO)])
    wheel = next(tmp.glob("selfheal-*.whl"))
    venv = tmp / "venv"
    # System site-packages provide ansible-core and friends; the venv's own copy of selfheal
    # (and of the collection) comes first on sys.path.
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    # --ignore-installed: a selfheal in the system site-packages must not satisfy it.
    _run(
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            str(wheel),
        ]
    )
    return venv


def test_cli_and_collection_come_from_one_install(installed_venv: Path) -> None:
    out = _run([str(installed_venv / "bin/selfheal"), "version", "--json"], env=_clean_env())
    info = json.loads(out.stdout)
    assert info["collection"] is not None
    assert Path(info["collection"]).resolve().is_relative_to(installed_venv.resolve())
    assert (Path(info["collection"]) / "galaxy.yml").is_file()


def test_ansible_doc_finds_the_module_without_collections_path(installed_venv: Path) -> None:
    python = str(installed_venv / "bin/python")
    listing = _run(
        [python, "-m", "ansible", "doc", "-l", "selfheal.core"], env=_clean_env(), cwd="/"
    )
    assert "selfheal.core.health_check" in listing.stdout
    doc = _run(
        [python, "-m", "ansible", "doc", "--json", "selfheal.core.health_check"],
        env=_clean_env(),
        cwd="/",
    )
    data = json.loads(doc.stdout)["selfheal.core.health_check"]
    # The copy ansible-doc read is the venv's, not the working tree.
    assert str(installed_venv.resolve()) in str(Path(data["doc"]["filename"]).resolve())
    assert "checks" in data["doc"]["options"]


def test_galaxy_tarball_ships_the_collection_only(tmp_path: Path) -> None:
    _run(
        [
            ansible_bin("ansible-galaxy"),
            "collection",
            "build",
            str(REPO),
            "--output-path",
            str(tmp_path),
        ]
    )
    tarball = next(tmp_path.glob("selfheal-core-*.tar.gz"))
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert {"MANIFEST.json", "FILES.json", "meta/runtime.yml"} <= names
    assert "plugins/modules/health_check.py" in names
    assert any(n.startswith("playbooks/") for n in names)
    leaked = [
        n
        for n in names
        if n.split("/")[0] in {"src", "benchmarks", "scripts", ".ci", "docs"}
        or n.startswith(("tests/unit", "tests/integration", "tests/fakes"))
        or "__pycache__" in n
    ]
    assert leaked == []


def test_execution_environment_definition_builds_a_context(tmp_path: Path) -> None:
    """ansible-builder turns the EE definition into a build context (no container engine
    runs here, so the image build itself is not exercised)."""
    import shutil

    for name in ("execution-environment.yml", "ee"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "dist").mkdir()
    _run(
        [ansible_bin("ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "ctx"],
        cwd=tmp_path,
    )
    containerfile = next(
        p for p in (tmp_path / "ctx").iterdir() if p.name in ("Containerfile", "Dockerfile")
    )
    text = containerfile.read_text()
    assert (
        "pip install --no-cache-dir --no-index --find-links /tmp/selfheal-wheels --no-deps selfheal"
        in text
    )
    assert "import selfheal, ansible_collections.selfheal.core" in text
    requirements = (tmp_path / "ctx/_build/requirements.txt").read_text()
    assert "ansible>=12" in requirements
