# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Probe kinds of the health_check module.

Each probe takes one validated check (a dict, see health_runner) and the timeout in
seconds, performs one read-only observation and returns a ProbeOutcome. Probes never
raise for an unhealthy target: an error talking to the target is a failed outcome with a
reason. Runs on targets: standard library only (Python 3.9+), postgres drivers optional.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import importlib
import json
import os
import re
import socket
import ssl
import subprocess
import time

import http.client as http_client
from urllib.parse import urlsplit

OK = "ok"
FAIL = "fail"
SKIPPED = "skipped"

BODY_LIMIT = 1024 * 1024
POSTGRES_DRIVER_MISSING = "postgres driver not installed (psycopg or psycopg2)"


class ProbeOutcome(object):
    """Result of one probe attempt."""

    __slots__ = ("latency_ms", "reason", "status")

    def __init__(self, status, reason="", latency_ms=None):
        self.status = status
        self.reason = reason
        self.latency_ms = latency_ms

    def __repr__(self):
        return "ProbeOutcome(%r, %r, %r)" % (self.status, self.reason, self.latency_ms)


def _elapsed_ms(start):
    return round((time.monotonic() - start) * 1000.0, 1)


def _describe_error(exc, timeout):
    """Short, human reason for a network error."""
    if isinstance(exc, socket.timeout):
        return "timed out after %ss" % timeout
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed: %s" % (exc.verify_message or exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "name resolution failed: %s" % exc
    return "%s: %s" % (type(exc).__name__, exc)


# --- X.509 validity (DER) -------------------------------------------------------------


def _der_item(data, pos):
    """(tag, content, next position) of the DER item starting at pos."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:end], end


def _der_time(tag, raw):
    text = raw.decode("ascii")
    if not text.endswith("Z"):
        raise ValueError("certificate time is not UTC: %s" % text)
    text = text[:-1]
    if tag == 0x17:  # UTCTime YYMMDDHHMM[SS]
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000
        rest = text[2:]
    elif tag == 0x18:  # GeneralizedTime YYYYMMDDHHMM[SS][.fff]
        year = int(text[:4])
        rest = text[4:].split(".")[0]
    else:
        raise ValueError("unexpected certificate time tag 0x%02x" % tag)
    rest = rest.ljust(10, "0")
    fields = (year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]))
    return calendar.timegm((*fields, int(rest[8:10]), 0, 0, 0))


def _der_content(data, pos=0):
    return _der_item(data, pos)[1]


def _der_next(data, pos):
    return _der_item(data, pos)[2]


def certificate_not_after(der):
    """Expiry (epoch seconds, UTC) of a DER-encoded X.509 certificate."""
    tbs = _der_content(_der_content(der))  # Certificate -> TBSCertificate
    pos = 0
    if tbs[:1] == b"\xa0":  # explicit version
        pos = _der_next(tbs, pos)
    for field in ("serialNumber", "signature", "issuer"):
        try:
            pos = _der_next(tbs, pos)
        except ValueError:
            raise ValueError("truncated certificate at %s" % field) from None
    validity = _der_content(tbs, pos)
    after = _der_next(validity, 0)  # skip notBefore
    tag, raw, end = _der_item(validity, after)
    if end != len(validity):
        raise ValueError("unexpected certificate validity")
    return _der_time(tag, raw)


# --- http -----------------------------------------------------------------------------


def _tls_context(check):
    if not check["validate_certs"]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    ca_path = check.get("ca_path")
    if ca_path:
        if os.path.isdir(ca_path):
            return ssl.create_default_context(capath=ca_path)
        return ssl.create_default_context(cafile=ca_path)
    return ssl.create_default_context()


def json_lookup(document, path):
    """Value at a dotted path ("checks.db.status"; digits index lists). KeyError if absent."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            try:
                value = value[int(part)]
            except IndexError:
                raise KeyError(path) from None
        else:
            raise KeyError(path)
    return value


def _json_equal(actual, expected):
    """JSON value equality; booleans never equal numbers; "200" matches 200 (templating)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        if isinstance(actual, bool) and isinstance(expected, bool):
            return actual is expected
        if isinstance(actual, bool) and isinstance(expected, str):
            return json.dumps(actual) == expected.strip().lower()
        return False
    if actual == expected:
        return True
    if isinstance(expected, str) and isinstance(actual, (int, float)):
        return expected.strip() in (str(actual), json.dumps(actual))
    return False


def _check_body(check, body):
    """Reason the body fails the body_regex/json_path expectations, or None."""
    text = body.decode("utf-8", "replace")
    if check.get("body_regex") and not re.search(check["body_regex"], text):
        return "body does not match body_regex %r" % check["body_regex"]
    path = check.get("json_path")
    if path:
        try:
            document = json.loads(text)
        except ValueError:
            return "body is not JSON (json_path %s)" % path
        try:
            value = json_lookup(document, path)
        except KeyError:
            return "json_path %s not found in the body" % path
        if "json_expect" in check:
            if not _json_equal(value, check["json_expect"]):
                return "json_path %s is %s, expected %s" % (
                    path,
                    json.dumps(value),
                    json.dumps(check["json_expect"]),
                )
        elif value is None:
            return "json_path %s is null" % path
    return None


def probe_http(check, timeout, now=time.time):
    parts = urlsplit(check["url"])
    https = parts.scheme == "https"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if https:
        connection = http_client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=_tls_context(check)
        )
    else:
        connection = http_client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = dict(check.get("headers") or {})
    headers.setdefault("User-Agent", "selfheal-health-check")
    start = time.monotonic()
    try:
        try:
            connection.connect()
            der = connection.sock.getpeercert(binary_form=True) if https else None
            connection.request(check["method"], target, headers=headers)
            response = connection.getresponse()
            body = b"" if check["method"] == "HEAD" else response.read(BODY_LIMIT)
        finally:
            connection.close()
    except (OSError, http_client.HTTPException) as exc:
        return ProbeOutcome(FAIL, _describe_error(exc, timeout), _elapsed_ms(start))
    latency = _elapsed_ms(start)

    if response.status not in check["expect_status"]:
        reason = "HTTP status %s, expected %s" % (
            response.status,
            ", ".join(str(s) for s in check["expect_status"]),
        )
        return ProbeOutcome(FAIL, reason, latency)
    reason = _check_body(check, body)
    if reason:
        return ProbeOutcome(FAIL, reason, latency)
    budget = check.get("max_latency_ms")
    if budget is not None and latency > budget:
        reason = "latency %.1f ms exceeds the max_latency_ms budget of %s ms" % (latency, budget)
        return ProbeOutcome(FAIL, reason, latency)
    min_days = check.get("cert_min_days")
    if min_days is not None and https:
        try:
            not_after = certificate_not_after(der)
        except (TypeError, ValueError) as exc:
            return ProbeOutcome(FAIL, "cannot read the server certificate: %s" % exc, latency)
        days_left = (not_after - now()) / 86400.0
        if days_left < min_days:
            expiry = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(not_after))
            if days_left < 0:
                reason = "server certificate expired %.1f days ago (%s)" % (-days_left, expiry)
            else:
                reason = "server certificate expires in %.1f days (%s), fewer than %s" % (
                    days_left,
                    expiry,
                    "cert_min_days %s" % min_days,
                )
            return ProbeOutcome(FAIL, reason, latency)
    return ProbeOutcome(OK, "HTTP %s in %.1f ms" % (response.status, latency), latency)


# --- tcp ------------------------------------------------------------------------------


def probe_tcp(check, timeout):
    start = time.monotonic()
    try:
        sock = socket.create_connection((check["host"], check["port"]), timeout=timeout)
    except OSError as exc:
        return ProbeOutcome(FAIL, _describe_error(exc, timeout), _elapsed_ms(start))
    sock.close()
    latency = _elapsed_ms(start)
    return ProbeOutcome(OK, "connected to %s:%s" % (check["host"], check["port"]), latency)


# --- process --------------------------------------------------------------------------

PROC = "/proc"


def _read(path, mode="r"):
    with open(path, mode) as handle:
        return handle.read()


def _read_text(path):
    """File content as text; bytes that are not UTF-8 (process names can hold any) replaced."""
    return _read(path, "rb").decode("utf-8", "replace")


def _pid_state(pid):
    """Process state letter from /proc/<pid>/stat, None when there is no such process."""
    try:
        stat = _read_text(os.path.join(PROC, str(pid), "stat"))
    except (IOError, OSError):
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return _pid_state(pid) not in ("Z", "X")


def find_processes(name):
    """PIDs (other than ours) whose comm or argv[0] basename equals name."""
    # The kernel truncates comm to 15 characters.
    comm_names = (name,) if len(name) <= 15 else (name, name[:15])
    found = []
    for entry in os.listdir(PROC):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        base = os.path.join(PROC, entry)
        try:
            comm = _read_text(os.path.join(base, "comm")).rstrip("\n")
            cmdline = _read(os.path.join(base, "cmdline"), "rb")
        except (IOError, OSError):
            continue  # exited meanwhile, or not ours to read
        argv0 = cmdline.split(b"\0", 1)[0].decode("utf-8", "replace")
        matches = comm in comm_names or os.path.basename(argv0) == name
        if matches and _pid_state(entry) not in (None, "Z", "X"):
            found.append(int(entry))
    return sorted(found)


def probe_process(check, timeout):
    if check.get("pidfile"):
        pidfile = check["pidfile"]
        try:
            text = _read_text(pidfile).strip()
        except (IOError, OSError) as exc:
            return ProbeOutcome(FAIL, "cannot read pidfile %s: %s" % (pidfile, exc.strerror))
        if not text.isdigit() or int(text) <= 0:
            return ProbeOutcome(FAIL, "pidfile %s does not hold a pid: %r" % (pidfile, text[:40]))
        pid = int(text)
        if _pid_alive(pid):
            return ProbeOutcome(OK, "pid %s from %s is running" % (pid, pidfile))
        return ProbeOutcome(FAIL, "pid %s from %s is not running" % (pid, pidfile))
    if not os.path.isdir(PROC):
        return ProbeOutcome(FAIL, "no %s to look processes up in" % PROC)
    name = check["process_name"]
    pids = find_processes(name)
    if pids:
        shown = ", ".join(str(p) for p in pids[:5])
        return ProbeOutcome(OK, "%d process(es) named %s: %s" % (len(pids), name, shown))
    return ProbeOutcome(FAIL, "no process named %s" % name)


# --- command --------------------------------------------------------------------------


def _tail(data, limit=200):
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def probe_command(check, timeout):
    argv = check["argv"]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeOutcome(FAIL, "%s timed out after %ss" % (argv[0], timeout), _elapsed_ms(start))
    except OSError as exc:
        reason = "cannot run %s: %s" % (argv[0], exc.strerror or exc)
        return ProbeOutcome(FAIL, reason, _elapsed_ms(start))
    latency = _elapsed_ms(start)
    if proc.returncode != check["expect_rc"]:
        reason = "%s exited %s, expected %s" % (argv[0], proc.returncode, check["expect_rc"])
        if proc.stderr.strip():
            reason += "; stderr: %s" % _tail(proc.stderr)
        return ProbeOutcome(FAIL, reason, latency)
    pattern = check.get("stdout_regex")
    if pattern and not re.search(pattern, proc.stdout.decode("utf-8", "replace")):
        reason = "%s output does not match stdout_regex %r" % (argv[0], pattern)
        return ProbeOutcome(FAIL, reason, latency)
    return ProbeOutcome(OK, "%s exited %s" % (argv[0], proc.returncode), latency)


# --- disk -----------------------------------------------------------------------------


def probe_disk(check, timeout):
    path = check["path"]
    try:
        stat = os.statvfs(path)
    except OSError as exc:
        return ProbeOutcome(FAIL, "cannot stat %s: %s" % (path, exc.strerror or exc))
    notes = []
    minimum = check.get("min_free_percent")
    if minimum is not None:
        if stat.f_blocks <= 0:
            return ProbeOutcome(FAIL, "%s reports no blocks" % path)
        free = 100.0 * stat.f_bavail / stat.f_blocks
        if free < minimum:
            reason = "%s has %.1f%% free space, below min_free_percent %s" % (path, free, minimum)
            return ProbeOutcome(FAIL, reason)
        notes.append("%.1f%% space free" % free)
    minimum = check.get("min_free_inodes_percent")
    if minimum is not None:
        if stat.f_files <= 0:
            notes.append("no inode counts on this filesystem")
        else:
            free = 100.0 * stat.f_favail / stat.f_files
            if free < minimum:
                reason = "%s has %.1f%% free inodes, below min_free_inodes_percent %s" % (
                    path,
                    free,
                    minimum,
                )
                return ProbeOutcome(FAIL, reason)
            notes.append("%.1f%% inodes free" % free)
    return ProbeOutcome(OK, "%s: %s" % (path, ", ".join(notes)))


# --- postgres -------------------------------------------------------------------------


def load_postgres_driver():
    """The first importable DB-API driver (psycopg, then psycopg2), or None."""
    for name in ("psycopg", "psycopg2"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def probe_postgres(check, timeout):
    driver = load_postgres_driver()
    if driver is None:
        return ProbeOutcome(SKIPPED, POSTGRES_DRIVER_MISSING)
    params = {"connect_timeout": max(1, round(timeout))}
    for key in ("host", "port", "dbname", "user", "password"):
        if check.get(key) is not None:
            params[key] = check[key]
    start = time.monotonic()
    try:
        connection = driver.connect(check.get("dsn") or "", **params)
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(check["query"])
                if cursor.description is not None:
                    cursor.fetchone()
            finally:
                cursor.close()
        finally:
            connection.close()
    except Exception as exc:  # the drivers' errors share no base class importable here
        message = str(exc).strip().splitlines()
        detail = message[0] if message else type(exc).__name__
        return ProbeOutcome(FAIL, "postgres: %s" % detail, _elapsed_ms(start))
    latency = _elapsed_ms(start)
    return ProbeOutcome(OK, "query succeeded in %.1f ms" % latency, latency)


PROBES = {
    "http": probe_http,
    "tcp": probe_tcp,
    "process": probe_process,
    "command": probe_command,
    "disk": probe_disk,
    "postgres": probe_postgres,
}
