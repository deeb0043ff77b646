"""The CLI's contract: every verb has --help, and exit codes mean the same everywhere."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from selfheal.cli import VERBS, ExitCode, build_parser, main
from selfheal.errors import ConfigError


def _subcommand_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every (sub)command path of the parser tree, e.g. ('policy', 'explain')."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_verb_is_registered() -> None:
    paths = {p[0] for p in _subcommand_paths(build_parser())}
    assert paths == set(VERBS)


@pytest.mark.parametrize("path", sorted(set(_subcommand_paths(build_parser()))))
def test_help_on_every_verb_and_subcommand(path: tuple[str, ...], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: selfheal " + " ".join(path))


def test_unknown_verb_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-verb"])
    assert exc.value.code == ExitCode.USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_expected_errors_exit_2_with_the_message(monkeypatch, capsys) -> None:
    parser = build_parser()

    def broken(args):
        raise ConfigError("must be one of low, medium, high, critical", path="runbooks.x.risk")

    monkeypatch.setattr("selfheal.cli.build_parser", lambda: parser)
    parser.set_defaults(func=broken)
    args = ["version"]
    parser._subparsers._group_actions[0].choices["version"].set_defaults(func=broken)
    assert main(args) == ExitCode.USAGE
    assert "runbooks.x.risk: must be one of low, medium, high, critical" in capsys.readouterr().err


def test_version_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "selfheal.cli", "version", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    info = json.loads(out.stdout)
    assert info["selfheal"]
    assert info["ansible_core"].startswith("2.19")
