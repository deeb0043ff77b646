"""The fluent_bit role on localhost, rendering into a staging directory (Fluent Bit itself is
not installed here: the package install is off by default). The rendered parsers are the
ones `selfheal logs` uses, and they parse real lines once converted to Python syntax."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import REPO, run_playbook
from unit.logs.samples import NGINX, SYSLOG_5424

from selfheal.logs.parsers import load_definitions

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "tests/integration/playbooks/role_fluent_bit.yml"


def _sections(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    """[SECTION] blocks of a Fluent Bit classic-mode file: (name, {key: [values]})."""
    sections: list[tuple[str, dict[str, list[str]]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("["):
            sections.append((line.strip("[] "), {}))
            continue
        key, _, value = line.strip().partition(" ")
        sections[-1][1].setdefault(key, []).append(value.strip())
    return sections


def _recap(result) -> dict[str, int]:
    match = re.search(r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+).*failed=(\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    ok, changed, failed = map(int, match.groups())
    return {"ok": ok, "changed": changed, "failed": failed}


def _vars(root: Path) -> dict:
    return {
        "fluent_bit_root_prefix": str(root),
        "fluent_bit_output": "opensearch",
        "fluent_bit_output_host": "search.internal",
        "fluent_bit_output_port": 9201,
        "fluent_bit_output_tls": True,
        "fluent_bit_output_user": "shipper",
        "fluent_bit_output_password": "pw-123",
        "fluent_bit_inputs": [
            {"tag": "nginx", "path": "/var/log/nginx/access.log", "parser": "nginx"},
            {"tag": "syslog", "path": "/var/log/syslog", "parser": "syslog-rfc3164"},
        ],
        "fluent_bit_grep_exclude": [{"key": "path", "regex": "^/healthz"}],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Check mode, then two real runs of the role, into one staging directory."""
    root = tmp_path_factory.mktemp("fluent_bit") / "root"
    conf_dir = root / "etc/fluent-bit"
    check = run_playbook(PLAYBOOK, extra_vars=_vars(root), check=True)
    written_in_check = (conf_dir / "fluent-bit.conf").exists()
    first = run_playbook(PLAYBOOK, extra_vars=_vars(root))
    second = run_playbook(PLAYBOOK, extra_vars=_vars(root))
    return {
        "root": root,
        "conf_dir": conf_dir,
        "check": check,
        "written_in_check": written_in_check,
        "first": first,
        "second": second,
    }


def test_renders_idempotently_and_check_mode_writes_nothing(runs) -> None:
    check, first, second = runs["check"], runs["first"], runs["second"]
    assert check.returncode == 0, check.stdout + check.stderr
    assert not runs["written_in_check"]
    assert first.returncode == 0, first.stdout + first.stderr
    assert _recap(first)["changed"] >= 2
    assert "pw-123" not in first.stdout
    assert second.returncode == 0, second.stdout + second.stderr
    assert _recap(second)["changed"] == 0

    conf_dir = runs["conf_dir"]
    conf = (conf_dir / "fluent-bit.conf").read_text()
    assert (conf_dir / "fluent-bit.conf").stat().st_mode & 0o777 == 0o600
    sections = _sections(conf)
    [service] = [s for name, s in sections if name == "SERVICE"]
    assert service["Parsers_File"] == ["/etc/fluent-bit/parsers.conf"]  # unprefixed
    inputs = {s["Tag"][0]: s for name, s in sections if name == "INPUT"}
    assert inputs["nginx"]["Parser"] == ["nginx"]
    assert inputs["syslog"]["Path"] == ["/var/log/syslog"]
    filters = {s["Name"][0]: s for name, s in sections if name == "FILTER"}
    assert filters["grep"]["Exclude"] == ["path ^/healthz"]
    assert filters["modify"]["Add"] == ["selfheal_host localhost"]
    [output] = [s for name, s in sections if name == "OUTPUT"]
    assert output["Name"] == ["opensearch"]
    assert (output["Host"], output["Port"]) == (["search.internal"], ["9201"])
    assert (output["tls"], output["tls.verify"]) == (["On"], ["On"])
    assert (output["HTTP_User"], output["HTTP_Passwd"]) == (["shipper"], ["pw-123"])


def test_rendered_parsers_are_the_python_parsers(runs) -> None:
    assert runs["first"].returncode == 0
    text = (runs["conf_dir"] / "parsers.conf").read_text()
    rendered = {s["Name"][0]: s for name, s in _sections(text) if name == "PARSER"}
    ours = load_definitions()
    assert set(rendered) == set(ours)
    for name, parser in ours.items():
        assert rendered[name]["Format"] == [parser.format]
        if parser.regex:
            assert rendered[name]["Regex"] == [parser.regex]
            assert "(?P<" not in parser.regex  # Onigmo syntax in the file
        if parser.time_format:
            assert rendered[name]["Time_Format"] == [parser.time_format]
    # The rendered (Onigmo) regex, converted by hand to Python's syntax, parses a real line.
    nginx = re.compile(rendered["nginx"]["Regex"][0].replace("(?<", "(?P<"))
    match = nginx.match(NGINX)
    assert match and match["status"] == "200" and match["path"] == "/api/cart?id=12"
    rfc5424 = re.compile(rendered["syslog-rfc5424"]["Regex"][0].replace("(?<", "(?P<"))
    assert rfc5424.match(SYSLOG_5424)["ident"] == "postgres"


def test_an_input_with_an_unknown_parser_is_refused(tmp_path) -> None:
    staged = _vars(tmp_path / "root")
    staged["fluent_bit_inputs"] = [{"tag": "app", "path": "/var/log/app.log", "parser": "ltsv"}]
    result = run_playbook(PLAYBOOK, extra_vars=staged)
    assert result.returncode != 0
    assert not (tmp_path / "root").exists()
    assert "each input needs a unique tag and one of the" in result.stdout
