"""Dispatcher configuration: a YAML file, overridden by command-line flags.

```yaml
listen: 127.0.0.1:9095
store: state/selfheal.db            # or postgresql://...
policy: policy.yml
inventory: inventory.yml
audit: state/audit                   # trail directory (optional)
audit_key_file: ...                  # else SELFHEAL_AUDIT_KEYS / the default key file
workers: 2
tokens:
  - {name: alertmanager, token_file: secrets/am.token, scopes: [intake]}
  - {name: alice, token: "...", roles: [sre-leads], scopes: [read, approve]}
  - {name: bob, token_file: secrets/bob.token, console_role: viewer}   # docs/console.md
sources:
  alertmanager: {auth: token}
  grafana: {auth: hmac, hmac_secret_file: secrets/grafana.key,
            hmac_header: X-Grafana-Alerting-Signature,
            hmac_timestamp_header: X-Grafana-Alerting-Timestamp, hmac_tolerance_s: 300}
  cloudwatch_sns: {auth: token, confirm_subscriptions: false}
  generic: {auth: token, mapping: {name: check, status: state}}
```
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfheal.alerts import SOURCES, compile_mapping
from selfheal.dispatcher.awx import (
    AWXSettings,
    RunbookBackend,
    awx_settings_from_data,
    backends_from_data,
)
from selfheal.dispatcher.secrets import RotatingSecret
from selfheal.dispatcher.tracing import TracingSettings, tracing_settings_from_data
from selfheal.errors import ConfigError

log = logging.getLogger("selfheal.dispatcher.config")

SCOPES = ("intake", "read", "operate", "approve", "admin")
# Console roles (docs/console.md): the one place a role becomes API scopes.
CONSOLE_ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "operate"}),
    "approver": frozenset({"read", "operate", "approve"}),
    "admin": frozenset(SCOPES),
}
AUTH_MODES = ("token", "hmac", "none")
DEFAULT_LISTEN = "127.0.0.1:9095"
DEFAULT_HMAC_HEADER = "X-Selfheal-Signature"
DEFAULT_HMAC_TIMESTAMP_HEADER = "X-Selfheal-Timestamp"
# Grafana's webhook contact point names its timestamp header so (hmacConfig.timestampHeader)
HMAC_TIMESTAMP_HEADERS = {"grafana": "X-Grafana-Alerting-Timestamp"}


@dataclass(frozen=True)
class Token:
    name: str  # the identity approvals are recorded under
    secret: str
    scopes: frozenset[str] = frozenset(SCOPES)
    roles: frozenset[str] = frozenset()
    console_role: str | None = None  # viewer | operator | approver | admin (sets the scopes)
    # token_file: re-read on change, and the rotated-out token accepted during its overlap
    rotating: RotatingSecret | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SourceConfig:
    name: str
    enabled: bool = True
    auth: str = "token"  # token | hmac | none
    hmac_secret: bytes | None = None
    hmac_header: str = DEFAULT_HMAC_HEADER
    # signed string = "<unix seconds>:<body>" (Grafana's format); the timestamp must be within
    # hmac_tolerance_s of now, and each signed delivery is accepted once (replays refused)
    hmac_timestamp_header: str | None = None  # None: the source's default (see below)
    hmac_tolerance_s: float = 300.0
    hmac_require_timestamp: bool = True  # False: also accept body-only signatures (legacy)
    mapping: dict[str, Any] | None = None  # generic only
    confirm_subscriptions: bool = False  # cloudwatch_sns only
    verify_signatures: bool = True  # cloudwatch_sns only: SNS message signatures
    signing_cert_hosts: tuple[str, ...] = ()  # cloudwatch_sns only: () = sns.<region> hosts
    # hmac_secret_file: re-read on change, the rotated-out secret accepted during its overlap
    hmac_rotating: RotatingSecret | None = field(default=None, compare=False, repr=False)

    def timestamp_header(self) -> str:
        if self.hmac_timestamp_header:
            return self.hmac_timestamp_header
        return HMAC_TIMESTAMP_HEADERS.get(self.name, DEFAULT_HMAC_TIMESTAMP_HEADER)

    def hmac_secrets(self) -> tuple[bytes, ...]:
        if self.hmac_rotating is not None:
            return self.hmac_rotating.accepted()
        return (self.hmac_secret,) if self.hmac_secret else ()


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 3  # runs of one remediation, first one included
    base_s: float = 5.0  # backoff: uniform(0, min(cap, base * 2**(attempt-1)))
    cap_s: float = 300.0


@dataclass(frozen=True)
class PagerDutyConfig:
    routing_key: str
    url: str = "https://events.pagerduty.com"
    timeout_s: float = 10.0


PAGER_TARGETS = ("pagerduty", "opsgenie")
PAGER_URLS = {"pagerduty": "https://events.pagerduty.com", "opsgenie": "https://api.opsgenie.com"}


@dataclass(frozen=True)
class PagerConfig:
    """Where the incident timeline is mirrored (docs/reporting.md): PagerDuty's Events API v2
    (`key` is the integration's routing key) or Opsgenie's Alert API (`key` is the API
    integration's GenieKey). Events wait in the store's outbox until delivered."""

    target: str  # pagerduty | opsgenie
    key: str
    url: str
    timeout_s: float = 10.0
    base_s: float = 1.0  # retry backoff: uniform(0, min(cap, base * 2**(attempts-1)))
    cap_s: float = 300.0
    source: str = "selfheal-dispatcher"


@dataclass
class DispatcherConfig:
    listen: str = DEFAULT_LISTEN
    store: str = "selfheal.db"
    policy: str | None = None
    inventory: str | None = None
    audit: str | None = None
    audit_key_file: str | None = None
    policy_state: str | None = None  # SQLiteState path; default: beside a SQLite store
    runs_dir: str | None = None  # private data dirs; default: beside the store
    workers: int = 2
    lease_s: float = 60.0
    poll_s: float = 0.5
    max_body: int = 1024 * 1024
    header_timeout_s: float = 10.0  # a connection's request headers must arrive within this
    body_timeout_s: float = 30.0  # and a request's body within this, once its headers did
    correlation_window_s: float = 600.0
    reevaluate_s: float = 10.0
    instance: str = field(default_factory=socket.gethostname)
    tokens: list[Token] = field(default_factory=list)
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    retry: RetryConfig = field(default_factory=RetryConfig)
    pagerduty: PagerDutyConfig | None = None
    pager: PagerConfig | None = None  # `pager:`, or made from the older `pagerduty:`
    allow_unauthenticated: bool = False
    log_level: str = "INFO"
    awx: AWXSettings | None = None
    runbooks: dict[str, RunbookBackend] = field(default_factory=dict)  # backend per runbook
    tracing: TracingSettings = field(default_factory=TracingSettings)
    base_dir: Path = field(default_factory=Path.cwd)
    _warned: bool = field(default=False, repr=False, compare=False)

    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError("must be HOST:PORT", "listen")
        return host.strip("[]") or "127.0.0.1", int(port)

    def path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def store_location(self) -> str:
        if self.store.startswith(("postgresql://", "postgres://")):
            return self.store
        location = self.store.removeprefix("sqlite://")
        return str(self.path(location))

    def state_dir(self) -> Path:
        if self.store.startswith(("postgresql://", "postgres://")):
            return self.base_dir
        return Path(self.store_location()).parent

    def policy_state_path(self) -> Path:
        if self.policy_state:
            return self.path(self.policy_state)  # type: ignore[return-value]
        if self.store.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                "set policy_state (a SQLite file) when the store is PostgreSQL", "policy_state"
            )
        return Path(self.store_location() + ".policy-state")

    def runs_path(self) -> Path:
        return self.path(self.runs_dir) if self.runs_dir else self.state_dir() / "runs"  # type: ignore[return-value]

    def source(self, name: str) -> SourceConfig:
        return self.sources.get(name) or SourceConfig(name)

    def validate(self) -> None:
        self.host_port()
        if self.workers < 0:
            raise ConfigError("must be >= 0", "workers")
        for name in ("header_timeout_s", "body_timeout_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigError("must be > 0 and at most 3600 (seconds)", name)
        if not self.policy:
            raise ConfigError("a policy file is required (--policy)", "policy")
        if not self.inventory:
            raise ConfigError("an inventory is required (--inventory)", "inventory")
        for name in SOURCES:
            src = self.source(name)
            if not src.enabled:
                continue
            if src.auth == "token" and not self.tokens and not self.allow_unauthenticated:
                raise ConfigError(
                    "no API token configured (--token/--token-file or tokens:); set"
                    f" sources.{name}.auth: none or allow_unauthenticated: true to run open",
                    f"sources.{name}.auth",
                )
            if src.auth == "hmac" and not src.hmac_secret:
                raise ConfigError("auth hmac needs hmac_secret or hmac_secret_file", name)
        if not self._warned:  # validated by the CLI and again by the Dispatcher: warn once
            self._warned = True
            warn_mixed_tokens(self.tokens)


def warn_mixed_tokens(tokens: list[Token]) -> list[str]:
    """Log a warning for each token holding both `intake` and `approve`: whoever holds it can
    raise an alert and approve its remediation. Returns the names warned about."""
    names = [t.name for t in tokens if {"intake", "approve"} <= t.scopes]
    for name in names:
        log.warning(
            "token %r holds both the intake and the approve scope: one credential can raise"
            " an alert and approve its remediation; give senders intake-only tokens",
            name,
            extra={"token": name},
        )
    return names


def _secret_path(file: Any, base: Path) -> Path:
    path = Path(str(file)).expanduser()
    return path if path.is_absolute() else base / path


def _rotating(file: Any, secret: str | None, base: Path) -> RotatingSecret | None:
    if file is None or secret is None:
        return None
    return RotatingSecret(_secret_path(file, base), secret)


def _read_secret(value: Any, file: Any, where: str, base: Path) -> str | None:
    if value is not None and file is not None:
        raise ConfigError("give the secret or the file, not both", where)
    if file is not None:
        path = _secret_path(file, base)
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file ({exc.strerror})", where) from exc
        if not text:
            raise ConfigError("secret file is empty", where)
        return text
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty string", where)
    return value


def _token(raw: Any, i: int, base: Path) -> Token:
    where = f"tokens[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", where)
    unknown = set(raw) - {"name", "token", "token_file", "scopes", "roles", "console_role"}
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}", where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("must be a non-empty string", f"{where}.name")
    secret = _read_secret(raw.get("token"), raw.get("token_file"), f"{where}.token", base)
    if not secret:
        raise ConfigError("missing token or token_file", where)
    if len(secret) < 16:
        raise ConfigError("must be at least 16 characters", f"{where}.token")
    console_role = raw.get("console_role")
    if console_role is not None and console_role not in CONSOLE_ROLES:
        raise ConfigError(f"must be one of {', '.join(CONSOLE_ROLES)}", f"{where}.console_role")
    if console_role is not None and "scopes" in raw:
        raise ConfigError("give scopes or console_role, not both", where)
    scopes = raw.get("scopes", list(CONSOLE_ROLES[console_role] if console_role else SCOPES))
    if not isinstance(scopes, list) or any(s not in SCOPES for s in scopes):
        raise ConfigError(f"must be a list of {', '.join(SCOPES)}", f"{where}.scopes")
    roles = raw.get("roles", [])
    if not isinstance(roles, list) or any(not isinstance(r, str) for r in roles):
        raise ConfigError("must be a list of strings", f"{where}.roles")
    rotating = _rotating(raw.get("token_file"), secret, base)
    return Token(name, secret, frozenset(scopes), frozenset(roles), console_role, rotating)


def _source(name: str, raw: Any, base: Path) -> SourceConfig:
    where = f"sources.{name}"
    if name not in SOURCES:
        raise ConfigError(f"unknown source (known: {', '.join(SOURCES)})", where)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", where)
    known = {
        "enabled",
        "auth",
        "hmac_secret",
        "hmac_secret_file",
        "hmac_header",
        "hmac_timestamp_header",
        "hmac_tolerance_s",
        "hmac_require_timestamp",
        "mapping",
        "confirm_subscriptions",
        "verify_signatures",
        "signing_cert_hosts",
    }
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}", where)
    auth = raw.get("auth", "token")
    if auth not in AUTH_MODES:
        raise ConfigError(f"must be one of {', '.join(AUTH_MODES)}", f"{where}.auth")
    secret = _read_secret(
        raw.get("hmac_secret"), raw.get("hmac_secret_file"), f"{where}.hmac_secret", base
    )
    mapping = raw.get("mapping")
    if mapping is not None:
        if name != "generic":
            raise ConfigError("only the generic source takes a mapping", f"{where}.mapping")
        compile_mapping(mapping)
    return SourceConfig(
        name=name,
        enabled=bool(raw.get("enabled", True)),
        auth=auth,
        hmac_secret=secret.encode() if secret else None,
        hmac_rotating=_rotating(raw.get("hmac_secret_file"), secret, base),
        hmac_header=_header_name(
            raw.get("hmac_header", DEFAULT_HMAC_HEADER), f"{where}.hmac_header"
        ),
        hmac_timestamp_header=(
            _header_name(raw["hmac_timestamp_header"], f"{where}.hmac_timestamp_header")
            if raw.get("hmac_timestamp_header") is not None
            else None
        ),
        hmac_tolerance_s=_tolerance(raw.get("hmac_tolerance_s", 300), f"{where}.hmac_tolerance_s"),
        hmac_require_timestamp=_flag(
            raw.get("hmac_require_timestamp", True), f"{where}.hmac_require_timestamp"
        ),
        mapping=mapping,
        confirm_subscriptions=bool(raw.get("confirm_subscriptions", False)),
        verify_signatures=bool(raw.get("verify_signatures", True)),
        signing_cert_hosts=_cert_hosts(
            raw.get("signing_cert_hosts"), f"{where}.signing_cert_hosts"
        ),
    )


_HEADER_NAME = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def _header_name(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw or not set(raw.lower()) <= _HEADER_NAME:
        raise ConfigError("must be an HTTP header name", where)
    return raw


def _tolerance(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 1 <= raw <= 86400:
        raise ConfigError("must be a number of seconds from 1 to 86400", where)
    return float(raw)


def _flag(raw: Any, where: str) -> bool:
    if not isinstance(raw, bool):
        raise ConfigError("must be true or false", where)
    return raw


def _cert_hosts(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or any(not isinstance(h, str) or not h for h in raw):
        raise ConfigError("must be a list of host names", where)
    return tuple(raw)


_BACKEND_KEYS = ("awx", "runbooks", "tracing")  # parsed by dispatcher.awx and .tracing

_SIMPLE = {
    "listen": str,
    "store": str,
    "policy": str,
    "inventory": str,
    "audit": str,
    "audit_key_file": str,
    "policy_state": str,
    "runs_dir": str,
    "workers": int,
    "lease_s": (int, float),
    "poll_s": (int, float),
    "max_body": int,
    "header_timeout_s": (int, float),
    "body_timeout_s": (int, float),
    "correlation_window_s": (int, float),
    "reevaluate_s": (int, float),
    "instance": str,
    "allow_unauthenticated": bool,
    "log_level": str,
}


def config_from_data(data: Any, base_dir: Path | None = None) -> DispatcherConfig:
    base = base_dir or Path.cwd()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the dispatcher config must be a mapping", "(config)")
    known = {*_SIMPLE, "tokens", "sources", "retry", "pagerduty", "pager", *_BACKEND_KEYS}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}", "(config)")
    cfg = DispatcherConfig(base_dir=base)
    for key, kind in _SIMPLE.items():
        if key in data:
            value = data[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError("has the wrong type", key)
            setattr(cfg, key, value)
    tokens = data.get("tokens") or []
    if not isinstance(tokens, list):
        raise ConfigError("must be a list", "tokens")
    cfg.tokens = [_token(t, i, base) for i, t in enumerate(tokens)]
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        raise ConfigError("must be a mapping", "sources")
    cfg.sources = {name: _source(name, raw, base) for name, raw in sources.items()}
    retry = data.get("retry") or {}
    if not isinstance(retry, dict) or set(retry) - {"max_attempts", "base_s", "cap_s"}:
        raise ConfigError("keys: max_attempts, base_s, cap_s", "retry")
    cfg.retry = RetryConfig(
        int(retry.get("max_attempts", 3)),
        float(retry.get("base_s", 5.0)),
        float(retry.get("cap_s", 300.0)),
    )
    pd = data.get("pagerduty")
    if pd is not None:
        if not isinstance(pd, dict):
            raise ConfigError("must be a mapping", "pagerduty")
        key = _read_secret(
            pd.get("routing_key"), pd.get("routing_key_file"), "pagerduty.routing_key", base
        )
        if not key:
            raise ConfigError("missing routing_key", "pagerduty")
        cfg.pagerduty = PagerDutyConfig(
            key, str(pd.get("url", PagerDutyConfig.url)), float(pd.get("timeout_s", 10.0))
        )
        cfg.pager = PagerConfig("pagerduty", key, cfg.pagerduty.url, cfg.pagerduty.timeout_s)
    if data.get("pager") is not None:
        if pd is not None:
            raise ConfigError("give pager or the older pagerduty, not both", "pager")
        cfg.pager = _pager(data["pager"], base)
    cfg.awx = awx_settings_from_data(data.get("awx"), base)
    cfg.runbooks = backends_from_data(data.get("runbooks"), cfg.awx)
    cfg.tracing = tracing_settings_from_data(data.get("tracing"))
    return cfg


def _pager(raw: Any, base: Path) -> PagerConfig:
    """```yaml
    pager:
      target: pagerduty            # or opsgenie
      routing_key_file: secrets/pd.key   # pagerduty (or routing_key)
      api_key_file: secrets/og.key       # opsgenie (or api_key)
      url: https://events.pagerduty.com  # default per target
      timeout_s: 10
      retry: {base_s: 1, cap_s: 300}
    ```"""
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", "pager")
    known = {"target", "routing_key", "routing_key_file", "api_key", "api_key_file", "url"}
    unknown = set(raw) - known - {"timeout_s", "retry", "source"}
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}", "pager")
    target = raw.get("target", "pagerduty")
    if target not in PAGER_TARGETS:
        raise ConfigError(f"must be one of {', '.join(PAGER_TARGETS)}", "pager.target")
    name = "routing_key" if target == "pagerduty" else "api_key"
    other = "api_key" if target == "pagerduty" else "routing_key"
    if raw.get(other) is not None or raw.get(f"{other}_file") is not None:
        raise ConfigError(f"{target} takes {name}, not {other}", f"pager.{other}")
    key = _read_secret(raw.get(name), raw.get(f"{name}_file"), f"pager.{name}", base)
    if not key:
        raise ConfigError(f"missing {name} or {name}_file", "pager")
    retry = raw.get("retry") or {}
    if not isinstance(retry, dict) or set(retry) - {"base_s", "cap_s"}:
        raise ConfigError("keys: base_s, cap_s", "pager.retry")
    try:
        config = PagerConfig(
            target=target,
            key=key,
            url=str(raw.get("url", PAGER_URLS[target])),
            timeout_s=float(raw.get("timeout_s", 10.0)),
            base_s=float(retry.get("base_s", 1.0)),
            cap_s=float(retry.get("cap_s", 300.0)),
            source=str(raw.get("source", "selfheal-dispatcher")),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"has the wrong type ({exc})", "pager") from exc
    if config.timeout_s <= 0 or config.base_s <= 0 or config.cap_s < config.base_s:
        raise ConfigError("timeout_s and base_s must be > 0, cap_s >= base_s", "pager")
    return config


def load_config(path: str | os.PathLike[str] | None) -> DispatcherConfig:
    if path is None:
        return DispatcherConfig()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not YAML ({exc})", str(path)) from exc
    return config_from_data(data, path.resolve().parent)
