# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Validation, retries with backoff, N-of-M history and the result of health_check.

Runs on targets: standard library only, Python 3.9+.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import json
import os
import random
import re
import tempfile
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from urllib.parse import urlsplit, urlunsplit

from ansible_collections.selfheal.core.plugins.module_utils.health_probes import (
    FAIL,
    OK,
    PROBES,
    SKIPPED,
    ProbeOutcome,
)

KINDS = ("http", "tcp", "process", "command", "disk", "postgres", "composite")
COMMON_KEYS = ("name", "kind", "timeout", "retries", "backoff", "backoff_max", "threshold")
KIND_KEYS = {
    "http": (
        "url",
        "method",
        "expect_status",
        "body_regex",
        "json_path",
        "json_expect",
        "max_latency_ms",
        "validate_certs",
        "ca_path",
        "cert_min_days",
        "headers",
    ),
    "tcp": ("host", "port"),
    "process": ("name", "pidfile", "process_name"),
    "command": ("argv", "expect_rc", "stdout_regex", "read_only"),
    "disk": ("path", "min_free_percent", "min_free_inodes_percent"),
    "postgres": ("dsn", "host", "port", "dbname", "user", "password", "query"),
    "composite": ("depends_on",),
}
DEFAULT_TIMEOUT = 10.0
DEFAULT_BACKOFF_MAX = 30.0
STATE_VERSION = 1
TRUE_STRINGS = ("yes", "on", "1", "true", "y", "t")
FALSE_STRINGS = ("no", "off", "0", "false", "n", "f")


class HealthCheckError(Exception):
    """Invalid input, or unhealthy under fail_on_unhealthy; `result` holds what was found."""

    def __init__(self, msg, result=None):
        super(HealthCheckError, self).__init__(msg)
        self.msg = msg
        self.result = result or {}


# --- validation -----------------------------------------------------------------------


class _Errors(object):
    def __init__(self):
        self.messages = []

    def add(self, field, message):
        self.messages.append("%s: %s" % (field, message))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(errors, field, value, minimum=None, exclusive=False, maximum=None, integer=False):
    """value as int/float (numeric strings accepted), or None after recording an error."""
    kind = "an integer" if integer else "a number"
    parsed = value
    if isinstance(value, str):
        try:
            parsed = int(value.strip()) if integer else float(value.strip())
        except ValueError:
            errors.add(field, "must be %s; got %r" % (kind, value))
            return None
    elif not _is_number(value) or (integer and isinstance(value, float) and value != int(value)):
        errors.add(field, "must be %s; got %r" % (kind, value))
        return None
    if integer:
        parsed = int(parsed)
    if minimum is not None:
        if exclusive and parsed <= minimum:
            errors.add(field, "must be > %s" % minimum)
            return None
        if not exclusive and parsed < minimum:
            errors.add(field, "must be >= %s" % minimum)
            return None
    if maximum is not None and parsed > maximum:
        errors.add(field, "must be <= %s" % maximum)
        return None
    return parsed


def _boolean(errors, field, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_STRINGS + FALSE_STRINGS:
        return value.strip().lower() in TRUE_STRINGS
    errors.add(field, "must be a boolean; got %r" % (value,))
    return None


def _text(errors, field, value, required=False):
    if value is None:
        if required:
            errors.add(field, "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        errors.add(field, "must be a non-empty string; got %r" % (value,))
        return None
    return value


def _path(errors, field, value, required=False):
    value = _text(errors, field, value, required)
    return None if value is None else os.path.expanduser(os.path.expandvars(value))


def _regex(errors, field, value):
    value = _text(errors, field, value)
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as exc:
        errors.add(field, "invalid regular expression: %s" % exc)
        return None
    return value


def _validate_http(errors, where, raw, check):
    url = raw.get("url")
    if url is None:
        errors.add(where + ".url", "is required")
    else:
        parts = None
        if isinstance(url, str):
            try:
                parts = urlsplit(url.strip())
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            errors.add(where + ".url", "not a valid http(s) URL: %r" % (url,))
        else:
            check["url"] = url.strip()
    method = raw.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in ("GET", "HEAD"):
        errors.add(where + ".method", "must be one of GET, HEAD; got %r" % (method,))
    else:
        check["method"] = method.upper()
    statuses = raw.get("expect_status", [200])
    if not isinstance(statuses, list):
        statuses = [statuses]
    parsed = []
    for index, status in enumerate(statuses):
        field = "%s.expect_status[%d]" % (where, index)
        value = _number(errors, field, status, minimum=100, maximum=599, integer=True)
        if value is not None:
            parsed.append(value)
    if not statuses:
        errors.add(where + ".expect_status", "must list at least one status")
    check["expect_status"] = parsed
    check["body_regex"] = _regex(errors, where + ".body_regex", raw.get("body_regex"))
    check["json_path"] = _text(errors, where + ".json_path", raw.get("json_path"))
    if "json_expect" in raw:
        if check["json_path"] is None:
            errors.add(where + ".json_expect", "needs json_path")
        check["json_expect"] = raw["json_expect"]
    if raw.get("max_latency_ms") is not None:
        check["max_latency_ms"] = _number(
            errors, where + ".max_latency_ms", raw["max_latency_ms"], minimum=0, exclusive=True
        )
    check["validate_certs"] = _boolean(
        errors, where + ".validate_certs", raw.get("validate_certs", True)
    )
    check["ca_path"] = _path(errors, where + ".ca_path", raw.get("ca_path"))
    if raw.get("cert_min_days") is not None:
        check["cert_min_days"] = _number(
            errors, where + ".cert_min_days", raw["cert_min_days"], minimum=0
        )
        if check.get("url", "").startswith("http:"):
            errors.add(where + ".cert_min_days", "needs an https URL")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in headers.items()
    ):
        errors.add(where + ".headers", "must be a dict of header names to string values")
    else:
        check["headers"] = dict((k, str(v)) for k, v in headers.items())


def _validate_port(errors, field, value, required):
    if value is None:
        if required:
            errors.add(field, "is required")
        return None
    return _number(errors, field, value, minimum=1, maximum=65535, integer=True)


def _validate_tcp(errors, where, raw, check):
    check["host"] = _text(errors, where + ".host", raw.get("host"), required=True)
    check["port"] = _validate_port(errors, where + ".port", raw.get("port"), True)


def _validate_process(errors, where, raw, check):
    # The process to look for: `pidfile`, else `process_name`, else the check's `name`.
    name = _text(errors, where + ".process_name", raw.get("process_name"))
    pidfile = _path(errors, where + ".pidfile", raw.get("pidfile"))
    if name is not None and pidfile is not None:
        errors.add(where, "a process check takes one of process_name, pidfile; not both")
    if pidfile is None and name is None:
        name = check.get("name")
    check["process_name"] = name
    check["pidfile"] = pidfile


def _validate_command(errors, where, raw, check):
    argv = raw.get("argv")
    if argv is None:
        errors.add(where + ".argv", "is required")
    elif isinstance(argv, str):
        errors.add(where + ".argv", "must be a list of arguments, not a shell string")
    elif (
        not isinstance(argv, list)
        or not argv
        or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in argv)
    ):
        errors.add(where + ".argv", "must be a non-empty list of strings")
    else:
        check["argv"] = [str(a) for a in argv]
    check["expect_rc"] = _number(
        errors, where + ".expect_rc", raw.get("expect_rc", 0), minimum=-255, integer=True
    )
    check["stdout_regex"] = _regex(errors, where + ".stdout_regex", raw.get("stdout_regex"))
    check["read_only"] = _boolean(errors, where + ".read_only", raw.get("read_only", False))


def _validate_disk(errors, where, raw, check):
    check["path"] = _path(errors, where + ".path", raw.get("path"), required=True)
    present = False
    for key in ("min_free_percent", "min_free_inodes_percent"):
        if raw.get(key) is not None:
            present = True
            check[key] = _number(errors, "%s.%s" % (where, key), raw[key], minimum=0, maximum=100)
    if not present:
        errors.add(where, "a disk check needs min_free_percent or min_free_inodes_percent")


def _validate_postgres(errors, where, raw, check):
    check["dsn"] = _text(errors, where + ".dsn", raw.get("dsn"))
    for key in ("host", "dbname", "user"):
        check[key] = _text(errors, "%s.%s" % (where, key), raw.get(key))
    password = raw.get("password")
    if password is not None and not isinstance(password, str):
        errors.add(where + ".password", "must be a string")
    check["password"] = password
    check["port"] = _validate_port(errors, where + ".port", raw.get("port"), False)
    if raw.get("dsn") is None and raw.get("host") is None:
        errors.add(where, "a postgres check needs dsn or host")
    check["query"] = _text(errors, where + ".query", raw.get("query", "SELECT 1"))


def _validate_composite(errors, where, raw, check):
    deps = raw.get("depends_on")
    if not isinstance(deps, list) or not deps or not all(isinstance(d, str) for d in deps):
        errors.add(where + ".depends_on", "must be a non-empty list of check names")
        check["depends_on"] = []
    else:
        check["depends_on"] = list(deps)


VALIDATORS = {
    "http": _validate_http,
    "tcp": _validate_tcp,
    "process": _validate_process,
    "command": _validate_command,
    "disk": _validate_disk,
    "postgres": _validate_postgres,
    "composite": _validate_composite,
}


def _validate_threshold(errors, field, value):
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.add(field, "must be a dict with failures and window")
        return None
    unknown = sorted(set(value) - set(("failures", "window")))
    if unknown:
        errors.add(field, "unknown key(s): %s" % ", ".join(str(k) for k in unknown))
    failures = value.get("failures")
    window = value.get("window")
    if failures is None or window is None:
        errors.add(field, "needs both failures and window")
        return None
    failures = _number(errors, field + ".failures", failures, minimum=1, integer=True)
    window = _number(errors, field + ".window", window, minimum=1, maximum=1000, integer=True)
    if failures is None or window is None:
        return None
    if failures > window:
        errors.add(field + ".failures", "must be <= window (%s); got %s" % (window, failures))
        return None
    return {"failures": failures, "window": window}


def _validate_one(errors, index, raw, default_timeout):
    where = "checks[%d]" % index
    if not isinstance(raw, dict):
        errors.add(where, "must be a dict; got %s" % type(raw).__name__)
        return None
    check = {"index": index}
    check["name"] = _text(errors, where + ".name", raw.get("name"), required=True)
    kind = raw.get("kind")
    if kind not in KINDS:
        if kind is None:
            errors.add(where + ".kind", "is required (one of %s)" % ", ".join(KINDS))
        else:
            errors.add(where + ".kind", "must be one of %s; got %r" % (", ".join(KINDS), kind))
        return None
    check["kind"] = kind
    unknown = sorted(str(k) for k in set(raw) - set(COMMON_KEYS) - set(KIND_KEYS[kind]))
    if unknown:
        errors.add(where, "unknown key(s) for kind %s: %s" % (kind, ", ".join(unknown)))
    check["timeout"] = _number(
        errors, where + ".timeout", raw.get("timeout", default_timeout), minimum=0, exclusive=True
    )
    check["retries"] = _number(errors, where + ".retries", raw.get("retries", 0), 0, integer=True)
    check["backoff"] = _number(errors, where + ".backoff", raw.get("backoff", 0), minimum=0)
    check["backoff_max"] = _number(
        errors, where + ".backoff_max", raw.get("backoff_max", DEFAULT_BACKOFF_MAX), minimum=0
    )
    check["threshold"] = _validate_threshold(errors, where + ".threshold", raw.get("threshold"))
    VALIDATORS[kind](errors, where, raw, check)
    return check


def order_checks(checks):
    """Checks in an order where every composite follows its dependencies.

    Raises HealthCheckError naming the field on unknown names and cycles.
    """
    by_name = dict((c["name"], c) for c in checks)
    errors = _Errors()
    for check in checks:
        for position, dep in enumerate(check.get("depends_on") or []):
            if dep not in by_name:
                errors.add(
                    "checks[%d].depends_on[%d]" % (check["index"], position),
                    "unknown check name %r" % dep,
                )
            elif dep == check["name"]:
                errors.add(
                    "checks[%d].depends_on[%d]" % (check["index"], position),
                    "a check cannot depend on itself",
                )
    if errors.messages:
        raise HealthCheckError("invalid checks: " + "; ".join(errors.messages))

    ordered = []
    state = {}  # name -> "visiting" | "done"

    def visit(check, path):
        name = check["name"]
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name) :], name]
            raise HealthCheckError(
                "invalid checks: checks[%d].depends_on: dependency cycle %s"
                % (check["index"], " -> ".join(cycle))
            )
        state[name] = "visiting"
        for dep in check.get("depends_on") or []:
            visit(by_name[dep], [*path, name])
        state[name] = "done"
        ordered.append(check)

    for check in checks:
        visit(check, [])
    return ordered


def validate_checks(checks, default_timeout=DEFAULT_TIMEOUT):
    """Normalised copies of the checks; HealthCheckError naming every bad field."""
    errors = _Errors()
    if not isinstance(checks, list):
        raise HealthCheckError("invalid checks: checks: must be a list of dicts")
    validated = []
    seen = {}
    for index, raw in enumerate(checks):
        check = _validate_one(errors, index, raw, default_timeout)
        if check is None:
            continue
        name = check.get("name")
        if name is not None:
            if name in seen:
                errors.add(
                    "checks[%d].name" % index,
                    "duplicate name %r (also checks[%d].name)" % (name, seen[name]),
                )
            else:
                seen[name] = index
        validated.append(check)
    if errors.messages:
        raise HealthCheckError("invalid checks: " + "; ".join(errors.messages))
    return validated


def secret_values(checks):
    """Passwords given in postgres checks (to hide from output and logs)."""
    found = []
    for check in checks if isinstance(checks, list) else []:
        if isinstance(check, dict):
            password = check.get("password")
            if isinstance(password, str) and password:
                found.append(password)
            dsn = check.get("dsn")
            if isinstance(dsn, str):
                found.extend(_dsn_passwords(dsn))
    return found


_DSN_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _dsn_passwords(dsn):
    found = [m.group(2).strip("'") for m in _DSN_KEYWORD_PASSWORD.finditer(dsn)]
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            found.append(password)
    return [p for p in found if p]


def redact_dsn(dsn):
    """The DSN with any password removed."""
    redacted = _DSN_KEYWORD_PASSWORD.sub(r"\1***", dsn)
    if "://" in redacted:
        try:
            parts = urlsplit(redacted)
        except ValueError:
            return redacted
        if parts.password:
            host = parts.netloc.rsplit("@", 1)[-1]
            netloc = "%s:***@%s" % (parts.username or "", host)
            redacted = urlunsplit(parts._replace(netloc=netloc))
    return redacted


# --- retries and N-of-M ---------------------------------------------------------------


def backoff_delay(attempt, base, cap, uniform=random.uniform):
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2 ** attempt))."""
    ceiling = min(cap, base * (2**attempt))
    if ceiling <= 0:
        return 0.0
    return uniform(0, ceiling)


def run_with_retries(probe, check, sleep=time.sleep, uniform=random.uniform):
    """(outcome, attempts): probe until it passes or 1 + retries attempts have failed."""
    attempts = 0
    while True:
        start = time.monotonic()
        try:
            outcome = probe(check, check["timeout"])
        except Exception as exc:  # a probe bug must not take the other checks down
            outcome = ProbeOutcome(FAIL, "probe error: %s: %s" % (type(exc).__name__, exc))
        if outcome.latency_ms is None and outcome.status != SKIPPED:
            outcome.latency_ms = round((time.monotonic() - start) * 1000.0, 1)
        attempts += 1
        if outcome.status != FAIL or attempts > check["retries"]:
            return outcome, attempts
        delay = backoff_delay(attempts - 1, check["backoff"], check["backoff_max"], uniform)
        if delay > 0:
            sleep(delay)


def check_target(check):
    """What a check looks at (no secrets, no timings): part of the fingerprint."""
    kind = check["kind"]
    if kind == "http":
        return "%s %s" % (check["method"], check["url"])
    if kind == "tcp":
        return "%s:%s" % (check["host"], check["port"])
    if kind == "process":
        if check.get("pidfile"):
            return "pidfile:" + check["pidfile"]
        return "name:" + check["process_name"]
    if kind == "command":
        return json.dumps(check["argv"])
    if kind == "disk":
        return check["path"]
    if kind == "postgres":
        parts = [redact_dsn(check["dsn"])] if check.get("dsn") else []
        for key in ("host", "port", "dbname", "user"):
            if check.get(key) is not None:
                parts.append("%s=%s" % (key, check[key]))
        return " ".join(parts)
    return ",".join(sorted(check["depends_on"]))


def _signature(check):
    """Changes when what a check looks at changes: its history then starts over."""
    text = json.dumps([check["kind"], check_target(check)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fingerprint(failing):
    """sha256 over the sorted (name, kind, target) of the failing checks."""
    items = sorted([c["name"], c["kind"], check_target(c)] for c in failing)
    text = json.dumps(items, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def apply_threshold(history, passed, threshold):
    """(status, window summary, new history) under an N-of-M threshold.

    `passed` is the latest probe (None when it was skipped: not recorded).
    """
    window = threshold["window"]
    if passed is not None:
        history = ([*list(history), bool(passed)])[-window:]
    else:
        history = list(history)[-window:]
    failures = sum(1 for h in history if not h)
    summary = {
        "failures": failures,
        "probes": len(history),
        "window": window,
        "threshold": threshold["failures"],
        "history": [OK if h else FAIL for h in history],
    }
    status = FAIL if failures >= threshold["failures"] else OK
    return status, summary, history


# --- state file -----------------------------------------------------------------------


class StateStore(object):
    """N-of-M histories, one per check name, in a JSON file (written atomically, locked)."""

    def __init__(self, path, warn=None):
        self.path = os.path.expanduser(path)
        self.warn = warn or (lambda msg: None)

    def _load_file(self, quiet=False):
        warn = (lambda msg: None) if quiet else self.warn
        try:
            with open(self.path) as handle:
                data = json.load(handle)
        except (IOError, OSError) as exc:
            if exc.errno != errno.ENOENT:
                warn("cannot read health state %s: %s" % (self.path, exc.strerror))
            return {}
        except ValueError:
            warn("health state %s is not valid JSON; starting over" % self.path)
            return {}
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return {}
        checks = data.get("checks")
        return checks if isinstance(checks, dict) else {}

    def load(self, checks):
        entries = self._load_file()
        found = {}
        for check in checks:
            entry = entries.get(check["name"])
            if isinstance(entry, dict) and entry.get("signature") == _signature(check):
                history = entry.get("history")
                if isinstance(history, list):
                    found[check["name"]] = [bool(h) for h in history]
        return found

    def save(self, updates, now=time.time):
        """Merge [(check, history)] into the file (entries of other names are kept)."""
        directory = os.path.dirname(self.path) or "."
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
            with open(self.path + ".lock", "a") as lock:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                self._write(updates, directory, now)
        except (IOError, OSError) as exc:
            self.warn("cannot write health state %s: %s" % (self.path, exc.strerror or exc))

    def _write(self, updates, directory, now):
        entries = self._load_file(quiet=True)  # already warned about when loading
        for check, history in updates:
            entries[check["name"]] = {
                "signature": _signature(check),
                "history": history,
                "updated": int(now()),
            }
        data = {"version": STATE_VERSION, "checks": entries}
        handle, temporary = tempfile.mkstemp(prefix=".health_state.", dir=directory)
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(data, out, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise


# --- running --------------------------------------------------------------------------


def _composite_outcome(check, results):
    failed = [d for d in check["depends_on"] if results[d]["status"] == FAIL]
    skipped = [d for d in check["depends_on"] if results[d]["status"] == SKIPPED]
    if failed:
        return ProbeOutcome(FAIL, "dependencies failing: %s" % ", ".join(failed))
    if skipped:
        return ProbeOutcome(SKIPPED, "dependencies skipped: %s" % ", ".join(skipped))
    return ProbeOutcome(OK, "all %d dependencies ok" % len(check["depends_on"]))


def run_checks(
    checks,
    state_path,
    check_mode=False,
    sleep=time.sleep,
    uniform=random.uniform,
    probes=None,
    warn=None,
):
    """Probe validated checks; the module result (without `failed`)."""
    probes = probes or PROBES
    store = StateStore(state_path, warn)
    with_threshold = [c for c in checks if c["threshold"]]
    histories = store.load(with_threshold) if with_threshold else {}
    updates = []
    results = {}
    for check in order_checks(checks):
        attempts = 0
        if check["kind"] == "composite":
            outcome = _composite_outcome(check, results)
        elif check["kind"] == "command" and check_mode and not check["read_only"]:
            outcome = ProbeOutcome(
                SKIPPED, "command not run in check mode (set read_only: true to run it)"
            )
        else:
            outcome, attempts = run_with_retries(probes[check["kind"]], check, sleep, uniform)
        entry = {
            "name": check["name"],
            "kind": check["kind"],
            "status": outcome.status,
            "latency_ms": outcome.latency_ms,
            "reason": outcome.reason,
            "attempts": attempts,
            "window": None,
        }
        if check["threshold"]:
            passed = None if outcome.status == SKIPPED else outcome.status == OK
            status, summary, history = apply_threshold(
                histories.get(check["name"], []), passed, check["threshold"]
            )
            entry["window"] = summary
            if outcome.status != SKIPPED:
                entry["status"] = status
                if passed is not None:
                    updates.append((check, history))
                verdict = "%d of last %d probes failed (threshold %d of %d)" % (
                    summary["failures"],
                    summary["probes"],
                    check["threshold"]["failures"],
                    check["threshold"]["window"],
                )
                entry["reason"] = "%s; %s" % (outcome.reason, verdict)
        results[check["name"]] = entry

    if updates and not check_mode:
        store.save(updates)

    ordered = [results[c["name"]] for c in checks]
    failing = [c for c in checks if results[c["name"]]["status"] == FAIL]
    return {
        "changed": False,
        "healthy": not failing,
        "checks": ordered,
        "unhealthy": [c["name"] for c in failing],
        "fingerprint": fingerprint(failing),
    }


def run_module(params, check_mode=False, sleep=time.sleep, uniform=random.uniform, warn=None):
    """Everything main() does: HealthCheckError for bad input and for fail_on_unhealthy."""
    default_timeout = params.get("timeout")
    if default_timeout is None:
        default_timeout = DEFAULT_TIMEOUT
    if not (_is_number(default_timeout) and default_timeout > 0):
        raise HealthCheckError("timeout: must be > 0; got %r" % (default_timeout,))
    checks = validate_checks(params.get("checks"), default_timeout)
    state_path = params.get("state_path") or "~/.ansible/selfheal/health_state.json"
    result = run_checks(checks, state_path, check_mode, sleep, uniform, warn=warn)
    if params.get("fail_on_unhealthy") and not result["healthy"]:
        details = [
            "%s (%s: %s)" % (entry["name"], entry["kind"], entry["reason"])
            for entry in result["checks"]
            if entry["status"] == FAIL
        ]
        raise HealthCheckError("unhealthy: " + "; ".join(details), result)
    return result
