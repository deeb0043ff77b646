"""Parser definitions: one data file, real log lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from unit.logs.samples import (
    APACHE_COMMON,
    JSON_ERROR,
    JSON_INFO,
    NGINX,
    NGINX_5XX,
    SYSLOG_3164,
    SYSLOG_3164_INFO,
    SYSLOG_3164_NO_PRI,
    SYSLOG_5424,
    SYSLOG_5424_NO_SD,
)

from selfheal.cli import main
from selfheal.errors import ConfigError
from selfheal.logs.parsers import (
    detect_format,
    load_definitions,
    parse_time,
    to_onigmo_regex,
    to_python_regex,
)
from selfheal.logs.rate import is_error


@pytest.fixture(scope="module")
def parsers():
    return load_definitions()


def test_the_definitions_cover_the_common_formats(parsers) -> None:
    assert set(parsers) == {"json", "nginx", "apache", "syslog-rfc3164", "syslog-rfc5424"}


def test_nginx_combined(parsers) -> None:
    record = parsers["nginx"].parse(NGINX)
    assert record["remote"] == "203.0.113.7"
    assert record["user"] == "alice"
    assert (record["method"], record["path"], record["protocol"]) == (
        "GET",
        "/api/cart?id=12",
        "HTTP/1.1",
    )
    assert (record["status"], record["size"]) == ("200", "512")
    assert record["agent"].startswith("Mozilla/5.0")
    assert record["_time"] == datetime(2026, 3, 2, 9, 15, 32, tzinfo=UTC).timestamp()
    assert not is_error(record, "nginx")
    assert is_error(parsers["nginx"].parse(NGINX_5XX), "nginx")


def test_apache_common_without_referer_and_agent(parsers) -> None:
    record = parsers["apache"].parse(APACHE_COMMON)
    assert (record["user"], record["status"], record["size"]) == ("frank", "200", "-")
    assert "agent" not in record


def test_syslog_rfc3164(parsers) -> None:
    parser = parsers["syslog-rfc3164"]
    record = parser.parse(SYSLOG_3164)
    assert (record["pri"], record["host"], record["ident"], record["pid"]) == (
        "27",
        "web01",
        "nginx",
        "1234",
    )
    assert record["message"].startswith("upstream timed out")
    assert is_error(record, "syslog-rfc3164")  # 27 % 8 == 3: err
    assert not is_error(parser.parse(SYSLOG_3164_INFO), "syslog-rfc3164")  # 30 % 8: info
    no_pri = parser.parse(SYSLOG_3164_NO_PRI)
    assert no_pri["ident"] == "kernel" and "pid" not in no_pri
    assert is_error(no_pri, "syslog-rfc3164")  # "error" in the message


def test_syslog_rfc5424(parsers) -> None:
    parser = parsers["syslog-rfc5424"]
    record = parser.parse(SYSLOG_5424)
    assert (record["host"], record["ident"], record["pid"], record["msgid"]) == (
        "db01",
        "postgres",
        "4242",
        "ERR01",
    )
    assert record["extradata"] == '[origin ip="10.0.0.5"][meta sequenceId="7"]'
    assert record["message"] == "could not write to file: No space left"
    assert record["_time"] == pytest.approx(
        datetime(2026, 3, 2, 10, 15, 37, 123456, tzinfo=UTC).timestamp()
    )
    assert is_error(record, "syslog-rfc5424")
    quiet = parser.parse(SYSLOG_5424_NO_SD)
    assert quiet["extradata"] == "-" and not is_error(quiet, "syslog-rfc5424")


def test_json(parsers) -> None:
    record = parsers["json"].parse(JSON_ERROR)
    assert record["_time"] == datetime(2026, 3, 2, 10, 15, 39, 500000, tzinfo=UTC).timestamp()
    assert is_error(record, "json")
    info = parsers["json"].parse(JSON_INFO)
    assert info["_time"] == 1772446539 and not is_error(info, "json")
    assert parsers["json"].parse("not json") is None


def test_lines_of_other_formats_do_not_match(parsers) -> None:
    assert parsers["nginx"].parse(SYSLOG_3164) is None
    assert parsers["syslog-rfc5424"].parse(SYSLOG_3164) is None
    assert parsers["syslog-rfc3164"].parse(NGINX) is None


@pytest.mark.parametrize(
    ("line", "name"),
    [
        (NGINX, "nginx"),
        (JSON_ERROR, "json"),
        (SYSLOG_5424, "syslog-rfc5424"),
        (SYSLOG_3164, "syslog-rfc3164"),
    ],
)
def test_auto_detection(parsers, line, name) -> None:
    assert detect_format(line, parsers).name == name


def test_regex_syntax_conversion_keeps_lookarounds() -> None:
    onigmo = r"(?<host>\S+) (?<=x)(?<!y)\(?<literal"
    python = to_python_regex(onigmo)
    assert python == r"(?P<host>\S+) (?<=x)(?<!y)\(?<literal"
    assert to_onigmo_regex(python) == onigmo


def test_definition_errors_name_the_field(tmp_path) -> None:
    path = tmp_path / "parsers.yml"
    path.write_text(
        "fluent_bit_parser_definitions:\n  - {name: x, format: regex, regex: '(?<a>'}\n"
    )
    with pytest.raises(
        ConfigError, match=r"parsers\.yml:fluent_bit_parser_definitions\[0\]\.regex"
    ):
        load_definitions(path)
    path.write_text("fluent_bit_parser_definitions:\n  - {name: x, format: ltsv}\n")
    with pytest.raises(ConfigError, match=r"\[0\]\.format: must be one of json, regex"):
        load_definitions(path)


def test_cli_parse(tmp_path, capsys) -> None:
    log = tmp_path / "access.log"
    log.write_text(f"{NGINX}\n{NGINX_5XX}\ngarbage\n")
    assert main(["logs", "parse", str(log), "--format", "nginx"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["status"] for r in rows] == ["200", "502"]
    assert "1 of 3 line(s) not parsed" in captured.err
    assert main(["logs", "parse", str(log), "--format", "ltsv"]) == 2
    assert "--format: unknown parser" in capsys.readouterr().err


def test_rfc3164_times_take_the_given_year_even_on_a_leap_day() -> None:
    stamp = parse_time("Feb 29 10:00:00", "%b %d %H:%M:%S", year=2028)
    assert stamp == datetime(2028, 2, 29, 10, 0, 0, tzinfo=UTC).timestamp()
