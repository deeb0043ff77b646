"""Validation, dependency order, retries with backoff, N-of-M state and fingerprints."""

from __future__ import annotations

import json
import random

import pytest
from ansible_collections.selfheal.core.plugins.module_utils import health_runner as runner
from ansible_collections.selfheal.core.plugins.module_utils.health_probes import ProbeOutcome
from ansible_collections.selfheal.core.plugins.module_utils.health_runner import (
    HealthCheckError,
    apply_threshold,
    backoff_delay,
    fingerprint,
    order_checks,
    run_checks,
    run_with_retries,
    validate_checks,
)

HTTP = {"name": "web", "kind": "http", "url": "http://127.0.0.1:1/"}
TCP = {"name": "port", "kind": "tcp", "host": "127.0.0.1", "port": 5432}


def error_of(checks, **kwargs) -> str:
    with pytest.raises(HealthCheckError) as info:
        order_checks(validate_checks(checks, **kwargs))
    return info.value.msg


# --- validation -----------------------------------------------------------------------


def test_valid_checks_get_defaults():
    [check] = validate_checks([dict(HTTP)], default_timeout=7)
    assert check["timeout"] == 7
    assert check["retries"] == 0
    assert check["method"] == "GET"
    assert check["expect_status"] == [200]
    assert check["validate_certs"] is True
    assert check["threshold"] is None


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        (
            [{"name": "a", "kind": "htp"}],
            "checks[0].kind: must be one of http, tcp, process, command, disk, postgres, "
            "composite; got 'htp'",
        ),
        ([{"name": "a"}], "checks[0].kind: is required"),
        ([{"kind": "tcp", "host": "h", "port": 1}], "checks[0].name: is required"),
        ([TCP, {**HTTP, "url": "ftp://x/"}], "checks[1].url: not a valid http(s) URL: 'ftp://x/'"),
        ([{**HTTP, "url": "http://"}], "checks[0].url: not a valid http(s) URL: 'http://'"),
        ([{**HTTP, "url": "http://h:99999/"}], "checks[0].url: not a valid http(s) URL"),
        ([TCP, HTTP, {**HTTP, "name": "x", "retries": -1}], "checks[2].retries: must be >= 0"),
        ([{**HTTP, "retries": "two"}], "checks[0].retries: must be an integer; got 'two'"),
        ([{**HTTP, "timeout": 0}], "checks[0].timeout: must be > 0"),
        ([{**HTTP, "backoff": -1}], "checks[0].backoff: must be >= 0"),
        ([{**HTTP, "urll": "x", "zzz": 1}], "checks[0]: unknown key(s) for kind http: urll, zzz"),
        ([{**TCP, "url": "http://h/"}], "checks[0]: unknown key(s) for kind tcp: url"),
        ([{**HTTP, "read_only": True}], "checks[0]: unknown key(s) for kind http: read_only"),
        (
            [HTTP, TCP, {**TCP, "name": "web"}],
            "checks[2].name: duplicate name 'web' (also checks[0].name)",
        ),
        ([{**HTTP, "method": "POST"}], "checks[0].method: must be one of GET, HEAD; got 'POST'"),
        ([{**HTTP, "expect_status": [200, 42]}], "checks[0].expect_status[1]: must be >= 100"),
        ([{**HTTP, "body_regex": "("}], "checks[0].body_regex: invalid regular expression"),
        ([{**HTTP, "json_expect": "ok"}], "checks[0].json_expect: needs json_path"),
        ([{**HTTP, "cert_min_days": 3}], "checks[0].cert_min_days: needs an https URL"),
        ([{**HTTP, "validate_certs": "maybe"}], "checks[0].validate_certs: must be a boolean"),
        (
            [{**HTTP, "threshold": {"failures": 4, "window": 3}}],
            "checks[0].threshold.failures: must be <= window (3); got 4",
        ),
        (
            [{**HTTP, "threshold": {"failures": 0, "window": 3}}],
            "checks[0].threshold.failures: must be >= 1",
        ),
        (
            [{**HTTP, "threshold": {"failures": 1}}],
            "checks[0].threshold: needs both failures and window",
        ),
        (
            [{**HTTP, "threshold": {"failures": 1, "window": 2, "x": 1}}],
            "checks[0].threshold: unknown key(s): x",
        ),
        ([{"name": "t", "kind": "tcp", "host": "h"}], "checks[0].port: is required"),
        ([{**TCP, "port": 70000}], "checks[0].port: must be <= 65535"),
        (
            [{"name": "p", "kind": "process", "process_name": "a", "pidfile": "/run/a.pid"}],
            "checks[0]: a process check takes one of process_name, pidfile; not both",
        ),
        (
            [{"name": "c", "kind": "command", "argv": "rm -rf /"}],
            "checks[0].argv: must be a list of arguments, not a shell string",
        ),
        ([{"name": "c", "kind": "command"}], "checks[0].argv: is required"),
        (
            [{"name": "d", "kind": "disk", "path": "/"}],
            "checks[0]: a disk check needs min_free_percent or min_free_inodes_percent",
        ),
        (
            [{"name": "d", "kind": "disk", "path": "/", "min_free_percent": 101}],
            "checks[0].min_free_percent: must be <= 100",
        ),
        ([{"name": "db", "kind": "postgres"}], "checks[0]: a postgres check needs dsn or host"),
        (
            [{"name": "c", "kind": "composite"}],
            "checks[0].depends_on: must be a non-empty list of check names",
        ),
        (
            [HTTP, {"name": "c", "kind": "composite", "depends_on": ["web", "nope"]}],
            "checks[1].depends_on[1]: unknown check name 'nope'",
        ),
        (
            [{"name": "c", "kind": "composite", "depends_on": ["c"]}],
            "checks[0].depends_on[0]: a check cannot depend on itself",
        ),
        (["web"], "checks[0]: must be a dict; got str"),
    ],
)
def test_validation_errors_name_the_field(checks, expected):
    message = error_of(checks)
    assert message.startswith("invalid checks: ")
    assert expected in message


def test_all_errors_are_reported_at_once():
    message = error_of([{**HTTP, "retries": -1}, {"name": "x", "kind": "htp"}])
    assert "checks[0].retries: must be >= 0" in message
    assert "checks[1].kind:" in message


def test_composite_cycle_is_an_error():
    checks = [
        {"name": "a", "kind": "composite", "depends_on": ["b"]},
        {"name": "b", "kind": "composite", "depends_on": ["c", "web"]},
        {"name": "c", "kind": "composite", "depends_on": ["a"]},
        HTTP,
    ]
    message = error_of(checks)
    assert "depends_on: dependency cycle" in message
    assert "a -> b -> c -> a" in message


def test_composites_are_ordered_after_their_dependencies():
    checks = validate_checks(
        [
            {"name": "all", "kind": "composite", "depends_on": ["web-stack", "port"]},
            {"name": "web-stack", "kind": "composite", "depends_on": ["web"]},
            HTTP,
            TCP,
        ]
    )
    order = [c["name"] for c in order_checks(checks)]
    assert order.index("web") < order.index("web-stack") < order.index("all")
    assert order.index("port") < order.index("all")


def test_numbers_and_booleans_from_templating_are_accepted():
    [check] = validate_checks(
        [{**HTTP, "retries": "2", "timeout": "1.5", "validate_certs": "no", "expect_status": 204}]
    )
    assert (check["retries"], check["timeout"], check["validate_certs"]) == (2, 1.5, False)
    assert check["expect_status"] == [204]


# --- backoff and retries --------------------------------------------------------------


def test_backoff_is_full_jitter_capped():
    calls = []

    def uniform(low, high):
        calls.append((low, high))
        return high

    delays = [backoff_delay(attempt, 0.5, 3, uniform) for attempt in range(5)]
    assert calls == [(0, 0.5), (0, 1.0), (0, 2.0), (0, 3), (0, 3)]
    assert delays == [0.5, 1.0, 2.0, 3, 3]
    assert backoff_delay(3, 0, 30, uniform) == 0.0
    rng = random.Random(7)
    for attempt in range(10):
        assert 0 <= backoff_delay(attempt, 1, 4, rng.uniform) <= min(4, 2**attempt)


def test_retries_stop_at_first_success_and_sleep_bounded():
    outcomes = iter(["fail", "fail", "ok", "ok"])
    sleeps = []
    probe = lambda check, timeout: ProbeOutcome(next(outcomes), "x")  # noqa: E731
    [check] = validate_checks([{**HTTP, "retries": 5, "backoff": 0.2, "backoff_max": 0.3}])
    outcome, attempts = run_with_retries(probe, check, sleep=sleeps.append, uniform=random.uniform)
    assert (outcome.status, attempts) == ("ok", 3)
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.2 and 0 <= sleeps[1] <= 0.3


def test_retries_exhausted_and_probe_errors_become_failures():
    sleeps = []

    def broken(check, timeout):
        raise RuntimeError("bug")

    [check] = validate_checks([{**HTTP, "retries": 3, "backoff": 10, "backoff_max": 15}])
    outcome, attempts = run_with_retries(broken, check, sleep=sleeps.append, uniform=lambda a, b: b)
    assert (outcome.status, attempts) == ("fail", 4)
    assert outcome.reason == "probe error: RuntimeError: bug"
    assert sleeps == [10, 15, 15]  # min(cap, base * 2**n), never above backoff_max


def test_skipped_is_not_retried():
    [check] = validate_checks([{**HTTP, "retries": 3}])
    outcome, attempts = run_with_retries(
        lambda c, t: ProbeOutcome("skipped", "why"), check, sleep=pytest.fail
    )
    assert (outcome.status, attempts) == ("skipped", 1)


# --- N-of-M ---------------------------------------------------------------------------


def test_threshold_window():
    rule = {"failures": 3, "window": 5}
    history = []
    statuses = []
    for passed in [True, False, True, False, True, False, False, True, True, True, True]:
        status, summary, history = apply_threshold(history, passed, rule)
        statuses.append(status)
        assert summary["probes"] == len(history) <= 5
    assert statuses == ["ok"] * 5 + ["fail"] * 3 + ["ok"] * 3
    assert summary == {
        "failures": 1,
        "probes": 5,
        "window": 5,
        "threshold": 3,
        "history": ["fail", "ok", "ok", "ok", "ok"],
    }
    status, summary, same = apply_threshold(history, None, rule)  # skipped: not recorded
    assert same == history and status == "ok"


def fake(results):
    """Probe table whose http/tcp outcomes come from a dict name -> iterator of statuses."""

    def probe(check, timeout):
        return ProbeOutcome(next(results[check["name"]]), "scripted")

    return {"http": probe, "tcp": probe}


def test_state_file_keeps_history_per_check(tmp_path):
    path = tmp_path / "state" / "health.json"
    checks = validate_checks([{**HTTP, "threshold": {"failures": 2, "window": 3}}, TCP])
    results = {"web": iter(["fail", "ok", "fail", "fail"]), "port": iter(["fail"] * 4)}
    healthy = [run_checks(checks, str(path), probes=fake(results))["healthy"] for _ in range(4)]
    assert healthy == [False] * 4  # the tcp check has no threshold: each failure counts
    data = json.loads(path.read_text())
    assert list(data["checks"]) == ["web"]
    assert data["checks"]["web"]["history"] == [True, False, False]
    assert (path.stat().st_mode & 0o777) != 0 and (path.parent.stat().st_mode & 0o777) == 0o700

    results = {"web": iter(["ok"]), "port": iter(["ok"])}
    result = run_checks(checks, str(path), probes=fake(results))
    web = result["checks"][0]
    assert web["status"] == "fail"  # 2 of the last 3 still failed
    assert web["window"]["history"] == ["fail", "fail", "ok"]
    assert web["reason"] == "scripted; 2 of last 3 probes failed (threshold 2 of 3)"


def test_state_history_restarts_when_the_target_changes(tmp_path):
    path = str(tmp_path / "health.json")
    rule = {"failures": 2, "window": 2}
    first = validate_checks([{**HTTP, "threshold": rule}])
    run_checks(first, path, probes=fake({"web": iter(["fail"])}))
    moved = validate_checks([{**HTTP, "url": "http://127.0.0.1:2/", "threshold": rule}])
    result = run_checks(moved, path, probes=fake({"web": iter(["fail"])}))
    assert result["checks"][0]["window"]["probes"] == 1
    assert result["healthy"] is True


def test_corrupt_state_file_warns_and_starts_over(tmp_path):
    path = tmp_path / "health.json"
    path.write_text("{not json")
    warnings = []
    checks = validate_checks([{**HTTP, "threshold": {"failures": 1, "window": 2}}])
    result = run_checks(checks, str(path), probes=fake({"web": iter(["ok"])}), warn=warnings.append)
    assert result["healthy"] is True
    assert warnings == [f"health state {path} is not valid JSON; starting over"]
    assert json.loads(path.read_text())["checks"]["web"]["history"] == [True]


def test_state_of_other_names_is_kept_and_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "health.json"
    rule = {"failures": 1, "window": 3}
    run_checks(
        validate_checks([{**TCP, "threshold": rule}]),
        str(path),
        probes=fake({"port": iter(["ok"])}),
    )
    run_checks(
        validate_checks([{**HTTP, "threshold": rule}]),
        str(path),
        probes=fake({"web": iter(["ok"])}),
    )
    before = path.read_text()
    assert set(json.loads(before)["checks"]) == {"port", "web"}
    result = run_checks(
        validate_checks([{**HTTP, "threshold": rule}]),
        str(path),
        check_mode=True,
        probes=fake({"web": iter(["fail"])}),
    )
    assert result["checks"][0]["window"]["history"] == ["ok", "fail"]  # evaluated...
    assert path.read_text() == before  # ...not written


def test_unwritable_state_path_warns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    warnings = []
    checks = validate_checks([{**HTTP, "threshold": {"failures": 1, "window": 2}}])
    result = run_checks(
        checks,
        str(blocker / "health.json"),
        probes=fake({"web": iter(["ok"])}),
        warn=warnings.append,
    )
    assert result["healthy"] is True
    assert warnings[-1].startswith("cannot write health state")


# --- composite and result -------------------------------------------------------------


def test_composite_follows_its_dependencies(tmp_path):
    raw = [
        {"name": "stack", "kind": "composite", "depends_on": ["web", "port"]},
        HTTP,
        TCP,
    ]
    checks = validate_checks(raw)
    ok = run_checks(
        checks, str(tmp_path / "s"), probes=fake({"web": iter(["ok"]), "port": iter(["ok"])})
    )
    assert [c["status"] for c in ok["checks"]] == ["ok", "ok", "ok"]
    assert [c["name"] for c in ok["checks"]] == ["stack", "web", "port"]  # input order
    bad = run_checks(
        checks, str(tmp_path / "s"), probes=fake({"web": iter(["ok"]), "port": iter(["fail"])})
    )
    assert bad["unhealthy"] == ["stack", "port"]
    assert bad["checks"][0]["reason"] == "dependencies failing: port"
    assert bad["checks"][0]["attempts"] == 0
    skipped = run_checks(
        checks, str(tmp_path / "s"), probes=fake({"web": iter(["skipped"]), "port": iter(["ok"])})
    )
    assert skipped["healthy"] is True
    assert skipped["checks"][0]["status"] == "skipped"


def test_fingerprint_depends_on_failures_not_timings(tmp_path):
    checks = validate_checks([HTTP, TCP])
    first = run_checks(
        checks, str(tmp_path / "s"), probes=fake({"web": iter(["fail"]), "port": iter(["ok"])})
    )
    again = run_checks(
        checks, str(tmp_path / "s"), probes=fake({"web": iter(["fail"]), "port": iter(["ok"])})
    )
    both = run_checks(
        checks, str(tmp_path / "s"), probes=fake({"web": iter(["fail"]), "port": iter(["fail"])})
    )
    none = run_checks(
        checks, str(tmp_path / "s"), probes=fake({"web": iter(["ok"]), "port": iter(["ok"])})
    )
    assert first["fingerprint"] == again["fingerprint"]
    assert len({first["fingerprint"], both["fingerprint"], none["fingerprint"]}) == 3
    assert none["fingerprint"] == fingerprint([])
    # Order of the checks does not matter; the target does.
    reordered = validate_checks([TCP, HTTP])
    assert fingerprint(reordered) == fingerprint(checks)
    moved = validate_checks([{**HTTP, "url": "http://127.0.0.1:2/"}, TCP])
    assert fingerprint(moved) != fingerprint(checks)
    assert first["changed"] is False


def test_postgres_passwords_are_found_and_redacted():
    checks = [
        {"name": "a", "kind": "postgres", "dsn": "host=db password='s3 cret' user=u"},
        {"name": "b", "kind": "postgres", "dsn": "postgresql://u:hunter2@db:5432/app"},
        {"name": "c", "kind": "postgres", "host": "db", "password": "pw"},
    ]
    assert sorted(runner.secret_values(checks)) == ["hunter2", "pw", "s3 cret"]
    targets = [runner.check_target(c) for c in validate_checks(checks)]
    assert targets == [
        "host=db password=*** user=u",
        "postgresql://u:***@db:5432/app",
        "host=db",
    ]
