"""Configuration and the CLI: errors name the field; flags override the file."""

from __future__ import annotations

import argparse

import pytest

from selfheal.cli import build_parser
from selfheal.cli.serve import build_config
from selfheal.dispatcher import config_from_data
from selfheal.errors import ConfigError


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"bogus": 1}, "(config)"),
        ({"workers": "two"}, "workers"),
        ({"tokens": [{"name": "a", "token": "short"}]}, "tokens[0].token"),
        ({"tokens": [{"name": "a", "token": "x" * 20, "scopes": ["root"]}]}, "tokens[0].scopes"),
        ({"sources": {"nagios": {}}}, "sources.nagios"),
        ({"sources": {"grafana": {"auth": "magic"}}}, "sources.grafana.auth"),
        (
            {"sources": {"alertmanager": {"mapping": {"name": "a", "status": "b"}}}},
            "sources.alertmanager.mapping",
        ),
        ({"sources": {"generic": {"mapping": {"name": "a"}}}}, "mapping.status"),
    ],
)
def test_config_errors_name_the_field(data, field) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_data(data)
    assert err.value.path == field


def test_validate_requires_auth_unless_opened() -> None:
    cfg = config_from_data({"policy": "p.yml", "inventory": "i.yml"})
    with pytest.raises(ConfigError, match="no API token"):
        cfg.validate()
    config_from_data(
        {"policy": "p.yml", "inventory": "i.yml", "allow_unauthenticated": True}
    ).validate()


def test_cli_flags_override_the_file(tmp_path) -> None:
    (tmp_path / "d.yml").write_text("listen: 127.0.0.1:1\nworkers: 7\npolicy: p.yml\n")
    secret = tmp_path / "gh"
    secret.write_text("s3cr3t\n")
    args = build_parser().parse_args(
        [
            "serve",
            "--config",
            str(tmp_path / "d.yml"),
            "--listen",
            "127.0.0.1:9999",
            "--inventory",
            str(tmp_path / "i.yml"),
            "--token",
            "a-token-of-twenty-chars",
            "--token-roles",
            "sre-leads,ops",
            "--hmac-secret",
            f"grafana=@{secret}",
        ]
    )
    assert isinstance(args, argparse.Namespace)
    cfg = build_config(args)
    assert cfg.listen == "127.0.0.1:9999" and cfg.workers == 7
    assert cfg.tokens[0].roles == frozenset({"sre-leads", "ops"})
    assert cfg.sources["grafana"].auth == "hmac"
    assert cfg.sources["grafana"].hmac_secret == b"s3cr3t"
    assert cfg.host_port() == ("127.0.0.1", 9999)
