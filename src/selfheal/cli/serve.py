"""`selfheal serve`: run the dispatcher (HTTP intake, policy pipeline, worker pool)."""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import replace
from pathlib import Path

from selfheal.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the dispatcher: alert intake, policy-gated remediation, approvals",
        description=(
            "Run the dispatcher. Flags override the --config file. SIGHUP (or POST"
            " /admin/reload) reloads the policy file. See docs/dispatcher.md."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="dispatcher config (YAML)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="default 127.0.0.1:9095")
    parser.add_argument(
        "--store", metavar="LOCATION", help="sqlite:///path, a path, or postgresql://"
    )
    parser.add_argument("--policy", metavar="FILE", help="the remediation policy")
    parser.add_argument("--inventory", metavar="FILE", help="the Ansible YAML inventory of targets")
    parser.add_argument("--audit", metavar="DIR", help="audit trail directory")
    parser.add_argument("--audit-key-file", metavar="FILE", help="audit key file")
    parser.add_argument("--policy-state", metavar="FILE", help="policy state database (SQLite)")
    parser.add_argument("--runs-dir", metavar="DIR", help="private data dirs of runs")
    parser.add_argument("--workers", type=int, metavar="N", help="runbook worker threads")
    parser.add_argument("--instance", metavar="NAME", help="this dispatcher's stable name")
    parser.add_argument(
        "--token", metavar="SECRET", help="an API token with every scope (or SELFHEAL_API_TOKEN)"
    )
    parser.add_argument("--token-file", metavar="FILE", help="read the API token from FILE")
    parser.add_argument(
        "--token-name", default="operator", help="identity of --token (default operator)"
    )
    parser.add_argument(
        "--token-roles", default="", help="comma-separated roles (groups) of --token"
    )
    parser.add_argument(
        "--hmac-secret",
        action="append",
        default=[],
        metavar="SOURCE=SECRET",
        help="HMAC-SHA256 signature auth for SOURCE (SECRET or @FILE); repeatable",
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="accept alerts without any credentials (only on a trusted loopback)",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO (default), WARNING")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.set_defaults(func=run)


def build_config(args):
    from selfheal.dispatcher.config import SourceConfig, Token, load_config

    cfg = load_config(args.config)
    for name in (
        "listen",
        "store",
        "policy",
        "inventory",
        "audit",
        "audit_key_file",
        "policy_state",
        "runs_dir",
        "workers",
        "instance",
        "log_level",
    ):
        value = getattr(args, name)
        if value is not None:
            if isinstance(value, str) and name not in ("listen", "store", "instance", "log_level"):
                value = str(Path(value).resolve())
            if name == "store" and not value.startswith(("postgres", "sqlite://")):
                value = str(Path(value).resolve())
            setattr(cfg, name, value)
    secret = args.token or os.environ.get("SELFHEAL_API_TOKEN")
    if args.token_file:
        try:
            secret = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read ({exc.strerror})", "--token-file") from exc
    if secret:
        if len(secret) < 16:
            raise ConfigError("must be at least 16 characters", "--token")
        roles = frozenset(r for r in args.token_roles.split(",") if r)
        cfg.tokens = [*cfg.tokens, Token(args.token_name, secret, roles=roles)]
    for item in args.hmac_secret:
        source, sep, value = item.partition("=")
        if not sep or not value:
            raise ConfigError("must be SOURCE=SECRET or SOURCE=@FILE", "--hmac-secret")
        if value.startswith("@"):
            try:
                value = Path(value[1:]).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read ({exc.strerror})", "--hmac-secret") from exc
        base = cfg.sources.get(source) or SourceConfig(source)
        cfg.sources[source] = replace(
            base, auth="hmac", hmac_secret=value.encode(), hmac_rotating=None
        )
    if args.allow_unauthenticated:
        cfg.allow_unauthenticated = True
    cfg.validate()
    return cfg


def run(args) -> int:
    from selfheal.dispatcher import Dispatcher, serve

    cfg = build_config(args)
    if args.check:
        Dispatcher(cfg).stop()
        host, port = cfg.host_port()
        print(f"selfheal serve: configuration ok; would listen on {host}:{port}", file=sys.stderr)
        return 0
    # The imports leave tens of thousands of long-lived objects; a full garbage collection
    # walking them all stalls every request in flight (tens of ms). Frozen, they are skipped.
    gc.collect()
    gc.freeze()
    serve(cfg)
    return 0
