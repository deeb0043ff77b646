"""Journey definitions: validation errors name the field."""

from __future__ import annotations

import pytest
import yaml

from selfheal.errors import ConfigError
from selfheal.synthetic.journey import journey_from_data, load_journey, parse_duration


def _journey(**step):
    return {"name": "j", "steps": [{"name": "one", "url": "http://127.0.0.1:1/", **step}]}


def test_a_valid_journey_loads_with_defaults(tmp_path) -> None:
    path = tmp_path / "j.yml"
    path.write_text(yaml.safe_dump(_journey(expect={"status": [200, 204]})))
    journey = load_journey(path)
    [step] = journey.steps
    assert (step.method, step.retries, step.timeout) == ("GET", 0, 10.0)
    assert step.expect.status == frozenset({200, 204})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "j"}, "steps"),
        ({"name": "j", "steps": [{"url": "/x"}]}, "steps[0].name"),
        (_journey(method="FETCH"), "steps[0].method"),
        (_journey(expect={"status": "ok"}), "steps[0].expect.status"),
        (_journey(expect={"max_latency_ms": -1}), "steps[0].expect.max_latency_ms"),
        (_journey(expect={"body_regex": "("}), "steps[0].expect.body_regex"),
        (_journey(extract={"t": {"xpath": "/a"}}), "steps[0].extract.t"),
        (_journey(extract={"t": {"json": "$.a..b"}}), "steps[0].extract.t.json"),
        (_journey(timeout="soon"), "steps[0].timeout"),
        (_journey(retries=-1), "steps[0].retries"),
        (_journey(colour="red"), "steps[0]"),
        (_journey(url="http://127.0.0.1:1/${token}"), "steps[0]"),
        ({**_journey(), "base_url": "http://${host}/"}, "base_url"),
    ],
)
def test_errors_name_the_field(data, field) -> None:
    with pytest.raises(ConfigError) as exc:
        journey_from_data(data)
    assert str(exc.value).startswith(f"{field}:"), str(exc.value)


def test_a_variable_is_usable_only_after_the_step_that_extracts_it() -> None:
    data = {
        "name": "j",
        "steps": [
            {"name": "a", "url": "http://h/", "headers": {"X": "${late}"}},
            {"name": "b", "url": "http://h/", "extract": {"late": {"regex": "x"}}},
        ],
    }
    with pytest.raises(ConfigError, match=r"steps\[0\]: uses \$\{late\}"):
        journey_from_data(data)
    data["steps"].reverse()
    assert [s.name for s in journey_from_data(data).steps] == ["b", "a"]


def test_step_names_are_unique() -> None:
    data = {"name": "j", "steps": [{"name": "a", "url": "http://h/"}] * 2}
    with pytest.raises(ConfigError, match="used twice"):
        journey_from_data(data)


def test_file_errors_name_the_file(tmp_path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("name: j\nsteps: []\n")
    with pytest.raises(ConfigError, match=r"bad\.yml: steps: must be a non-empty list"):
        load_journey(path)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("500ms", 0.5), ("2m", 120), (5, 5)])
def test_durations(text, seconds) -> None:
    assert parse_duration(text, "x") == seconds
