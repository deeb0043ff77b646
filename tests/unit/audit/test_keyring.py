"""Keyring sources: env, a 0600 key file, generation on first use, rotation."""

from __future__ import annotations

import os
import stat

import pytest

from selfheal.audit import Keyring
from selfheal.errors import ConfigError


def test_env_pairs_first_is_active():
    ring = Keyring.load(env={"SELFHEAL_AUDIT_KEYS": f"new:{'11' * 32},old:{'22' * 32}"})
    assert ring.active == "new" and set(ring.keys) == {"new", "old"}


def test_env_json():
    ring = Keyring.load(
        env={"SELFHEAL_AUDIT_KEYS": '{"active":"a","keys":{"a":"' + "33" * 32 + '"}}'}
    )
    assert ring.secret == bytes.fromhex("33" * 32)


@pytest.mark.parametrize("value", ["nocolon", "k:zz", "k:00"])
def test_bad_env_is_refused(value):
    with pytest.raises(ConfigError):
        Keyring.load(env={"SELFHEAL_AUDIT_KEYS": value})


def test_generated_on_first_use_with_notice(tmp_path):
    notices = []
    path = tmp_path / "cfg" / "keys.json"
    ring = Keyring.load(path, env={}, notice=notices.append)
    assert ring.created and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert notices and str(path) in notices[0]
    again = Keyring.load(path, env={}, notice=notices.append)
    assert again.keys == ring.keys and len(notices) == 1


def test_loose_permissions_are_refused(tmp_path):
    path = tmp_path / "keys.json"
    Keyring.generate("k").save(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="0600"):
        Keyring.load(path, env={})


def test_missing_file_without_create(tmp_path):
    with pytest.raises(ConfigError):
        Keyring.load(tmp_path / "none.json", env={}, create=False)


def test_rotate_and_save(tmp_path):
    path = tmp_path / "keys.json"
    ring = Keyring.generate("k1")
    ring.save(path)
    kid = ring.rotate()
    ring.save(path)
    loaded = Keyring.load(path, env={})
    assert loaded.active == kid and set(loaded.keys) == {"k1", kid}
    with pytest.raises(ConfigError):
        ring.rotate(kid)


def test_short_key_refused():
    with pytest.raises(ConfigError):
        Keyring({"k": b"short"}, "k")
