"""The disk_cleanup role on localhost: rotates, compresses and deletes by age under the
allow-list only, changes nothing in check mode or on a second run, and refuses `/`, symlink
escapes, paths outside the allow-list and hosts without the compliance tags."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest
from support import REPO, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "tests/integration/playbooks/role_disk_cleanup.yml"
DAY = 86400


def _file(path: Path, data: bytes = b"x\n", age_days: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "allowed"
    logs, cache, outside = root / "logs", root / "cache", tmp_path / "outside"
    files = {
        "active": _file(logs / "app.log", b"line\n" * 300_000),  # 1.5 MB: over 1m
        "small_active": _file(logs / "other.log", b"small\n"),
        "rotated_old": _file(logs / "app.log.1", b"rotated\n" * 100, age_days=3),
        "rotated_new": _file(logs / "app.log.2", b"fresh\n"),
        "gz_old": _file(logs / "app.log.9.gz", b"old", age_days=30),
        "gz_new": _file(logs / "app.log.3.gz", b"new", age_days=2),
        "cache_old": _file(cache / "sub" / "blob.bin", age_days=10),
        "cache_hidden_old": _file(cache / ".tmp-1", age_days=10),
        "cache_new": _file(cache / "fresh.bin"),
        "outside_old": _file(outside / "precious.db", age_days=100),
    }
    (cache / "link-to-outside").symlink_to(files["outside_old"])
    (cache / "dir-link").symlink_to(outside, target_is_directory=True)
    return {"root": root, "logs": logs, "cache": cache, "outside": outside, **files}


def _vars(tree: dict[str, Path], **extra) -> dict:
    return {
        "disk_cleanup_allowed_paths": [str(tree["root"])],
        "disk_cleanup_log_dirs": [str(tree["logs"])],
        "disk_cleanup_purge_dirs": [str(tree["cache"])],
        "disk_cleanup_rotate_size": "1m",
        "disk_cleanup_min_free_percent": 1,
        "disk_cleanup_force": True,
        **extra,
    }


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def _snapshot(root: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path)] = (st.st_size, st.st_mtime)
    return out


def test_check_mode_then_cleanup_then_nothing_left(tree: dict[str, Path]) -> None:
    before = _snapshot(tree["root"].parent)
    dry = run_playbook(PLAYBOOK, extra_vars=_vars(tree), check=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "changed=0" not in _recap(dry.stdout)  # it says what it would do...
    assert _snapshot(tree["root"].parent) == before  # ...and touches nothing

    first = run_playbook(PLAYBOOK, extra_vars=_vars(tree))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=0" not in _recap(first.stdout)
    # the active log was rotated: truncated in place, its content in a compressed copy
    assert tree["active"].exists() and tree["active"].stat().st_size == 0
    copies = list(tree["logs"].glob("app.log.2*.gz"))
    copies = [c for c in copies if c.name.startswith("app.log.20")]
    assert len(copies) == 1 and gzip.decompress(copies[0].read_bytes()).startswith(b"line\n")
    assert tree["small_active"].read_bytes() == b"small\n"
    # the old rotated log is compressed, the fresh one left alone
    assert not tree["rotated_old"].exists()
    assert gzip.decompress((tree["logs"] / "app.log.1.gz").read_bytes()).startswith(b"rotated")
    assert tree["rotated_new"].exists()
    # compressed logs and cache files: old ones deleted, new ones kept
    assert not tree["gz_old"].exists() and tree["gz_new"].exists()
    assert not tree["cache_old"].exists() and not tree["cache_hidden_old"].exists()
    assert tree["cache_new"].exists()
    # symlinks are not followed: the old file outside the allow-list survives
    assert tree["outside_old"].exists()
    assert (tree["cache"] / "link-to-outside").is_symlink()

    second = run_playbook(PLAYBOOK, extra_vars=_vars(tree))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in _recap(second.stdout)


def test_enough_free_space_means_nothing_is_done(tree: dict[str, Path]) -> None:
    before = _snapshot(tree["root"])
    result = run_playbook(PLAYBOOK, extra_vars=_vars(tree, disk_cleanup_force=False))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in _recap(result.stdout)
    assert _snapshot(tree["root"]) == before


def test_refuses_root_symlink_escapes_and_paths_outside(tree: dict[str, Path]) -> None:
    escape = tree["root"] / "escape"
    escape.symlink_to(tree["outside"], target_is_directory=True)
    purge = ["/", str(escape), str(tree["outside"]), "relative/dir"]
    result = run_playbook(PLAYBOOK, extra_vars=_vars(tree, disk_cleanup_purge_dirs=purge))
    assert result.returncode != 0
    out = result.stdout
    assert "refusing to clean up" in out
    assert "/ is / (never cleaned)" in out
    assert f"{escape} resolves through a symlink to {tree['outside']}" in out
    assert "symlink escape" in out
    assert f"{tree['outside']} is not under any allow-listed path" in out
    assert "relative/dir is not an absolute path" in out
    assert tree["outside_old"].exists() and tree["cache_old"].exists()


def test_refuses_an_allow_list_of_root(tree: dict[str, Path]) -> None:
    result = run_playbook(PLAYBOOK, extra_vars=_vars(tree, disk_cleanup_allowed_paths=["/"]))
    assert result.returncode != 0
    assert "absolute directories other than" in result.stdout
    assert tree["cache_old"].exists()


def test_refuses_a_host_without_the_compliance_tags(tree: dict[str, Path]) -> None:
    extra = _vars(tree, disk_cleanup_required_tags={"env": "production"})
    result = run_playbook(PLAYBOOK, extra_vars=extra)
    assert result.returncode != 0
    assert "not cleared for automated remediation" in result.stdout
    assert tree["cache_old"].exists()
