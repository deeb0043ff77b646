"""HMAC keys for the audit trail: key id -> secret, one of them active for new records.

Sources, first found wins:

* env ``SELFHEAL_AUDIT_KEYS``: ``kid:hexsecret[,kid:hexsecret...]``; the first is active
  (or a JSON document shaped like the key file);
* a key file (JSON ``{"active": kid, "keys": {kid: hexsecret}}``) that only its owner can
  read or write (mode 0600 or stricter; anything looser is refused);
* none: a key file is generated on first use and a notice says where.

Rotating a key adds a new id and makes it active; older ids stay so older records verify.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from selfheal.errors import ConfigError

ENV_KEYS = "SELFHEAL_AUDIT_KEYS"
ENV_KEY_FILE = "SELFHEAL_AUDIT_KEY_FILE"


def default_key_file() -> Path:
    if os.environ.get(ENV_KEY_FILE):
        return Path(os.environ[ENV_KEY_FILE])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "selfheal" / "audit-keys.json"


@dataclass
class Keyring:
    keys: dict[str, bytes]
    active: str
    source: str = "memory"
    created: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("the audit keyring holds no key")
        if self.active not in self.keys:
            raise ConfigError(f"active key id {self.active!r} is not in the keyring")
        for kid, secret in self.keys.items():
            if not kid or ":" in kid or "," in kid:
                raise ConfigError(f"bad key id {kid!r}")
            if len(secret) < 16:
                raise ConfigError(f"key {kid!r} is shorter than 16 bytes")

    @property
    def secret(self) -> bytes:
        return self.keys[self.active]

    def get(self, kid: str) -> bytes | None:
        return self.keys.get(kid)

    @classmethod
    def generate(cls, kid: str | None = None) -> Keyring:
        kid = kid or new_key_id()
        return cls({kid: secrets.token_bytes(32)}, kid)

    @classmethod
    def from_mapping(cls, doc: Mapping, source: str = "memory") -> Keyring:
        try:
            keys = {str(k): bytes.fromhex(v) for k, v in doc["keys"].items()}
            active = str(doc["active"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad audit keyring ({exc})", source) from exc
        return cls(keys, active, source)

    @classmethod
    def from_env_value(cls, value: str) -> Keyring:
        value = value.strip()
        if value.startswith("{"):
            try:
                return cls.from_mapping(json.loads(value), ENV_KEYS)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"not JSON ({exc})", ENV_KEYS) from exc
        keys: dict[str, bytes] = {}
        active = None
        for item in filter(None, (p.strip() for p in value.split(","))):
            kid, sep, hexsecret = item.partition(":")
            if not sep:
                raise ConfigError("expected kid:hexsecret[,kid:hexsecret...]", ENV_KEYS)
            try:
                keys[kid] = bytes.fromhex(hexsecret)
            except ValueError as exc:
                raise ConfigError(f"key {kid!r} is not hex", ENV_KEYS) from exc
            active = active or kid
        if active is None:
            raise ConfigError("no key", ENV_KEYS)
        return cls(keys, active, ENV_KEYS)

    @classmethod
    def load_file(cls, path: str | os.PathLike) -> Keyring:
        path = Path(path)
        try:
            st = path.stat()
            if stat.S_IMODE(st.st_mode) & 0o077:
                raise ConfigError(
                    f"key file is mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600", str(path)
                )
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read key file ({exc.strerror})", str(path)) from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"key file is not JSON ({exc})", str(path)) from exc
        return cls.from_mapping(doc, str(path))

    @classmethod
    def load(
        cls,
        key_file: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        create: bool = True,
        notice=None,
    ) -> Keyring:
        """The keyring from env, else `key_file` (default: see `default_key_file`).

        With `create`, a missing key file is generated (0600) and `notice(message)` — by
        default a line on stderr — says so.
        """
        env = os.environ if env is None else env
        if env.get(ENV_KEYS):
            return cls.from_env_value(env[ENV_KEYS])
        path = Path(key_file) if key_file else default_key_file()
        if not path.exists() and create:
            ring = cls.generate()
            with contextlib.suppress(FileExistsError):
                ring.save(path, exclusive=True)
                ring.created = True
                message = (
                    f"selfheal audit: generated a new audit key {ring.active!r} in {path} "
                    "(keep it safe: without it the trail cannot be verified)"
                )
                (notice or (lambda m: print(m, file=sys.stderr)))(message)
                return ring
        return cls.load_file(path)

    def to_mapping(self) -> dict:
        return {"active": self.active, "keys": {k: v.hex() for k, v in self.keys.items()}}

    def save(self, path: str | os.PathLike, exclusive: bool = False) -> None:
        """Write the key file with mode 0600 (atomically unless `exclusive`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps(self.to_mapping(), indent=2, sort_keys=True).encode() + b"\n"
        if exclusive:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            target = path
        else:
            target = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if target != path:
            os.replace(target, path)
        self.source = str(path)

    def rotate(self, kid: str | None = None) -> str:
        """Add a fresh key and make it active; returns its id."""
        kid = kid or new_key_id()
        if kid in self.keys:
            raise ConfigError(f"key id {kid!r} already exists")
        self.keys[kid] = secrets.token_bytes(32)
        self.active = kid
        return kid


def new_key_id() -> str:
    return datetime.now(UTC).strftime("k%Y%m%d%H%M%S") + secrets.token_hex(2)
