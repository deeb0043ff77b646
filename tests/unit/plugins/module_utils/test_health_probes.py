"""The probe kinds against real local servers, sockets, processes and filesystems."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types

import pytest
from ansible_collections.selfheal.core.plugins.module_utils import health_probes as probes
from ansible_collections.selfheal.core.plugins.module_utils.health_runner import (
    validate_checks,
)


def check(**raw):
    """One validated check (defaults filled in), as the runner hands it to a probe."""
    raw.setdefault("name", "c")
    return validate_checks([raw], default_timeout=5)[0]


def selfheal_endpoint(status="ok", db="ok"):
    """What selfheal.health endpoints serve: 200 when ok, 503 otherwise."""
    body = {
        "status": status,
        "checks": {"db": {"status": db, "latency_ms": 1.5, "reason": "", "cached": False}},
    }
    return lambda handler: (200 if status == "ok" else 503, body, {})


# --- http -----------------------------------------------------------------------------


def test_http_ok_with_json_path(http_server):
    server = http_server({"/health": selfheal_endpoint()})
    outcome = probes.probe_http(
        check(kind="http", url=server.url("/health"), json_path="status", json_expect="ok"), 5
    )
    assert outcome.status == "ok", outcome.reason
    assert outcome.latency_ms is not None and outcome.latency_ms >= 0


def test_http_unhealthy_endpoint_fails_on_status_and_nested_json_path(http_server):
    server = http_server({"/health": selfheal_endpoint(status="fail", db="fail")})
    outcome = probes.probe_http(check(kind="http", url=server.url("/health")), 5)
    assert outcome.status == "fail"
    assert "HTTP status 503, expected 200" in outcome.reason

    nested = check(
        kind="http",
        url=server.url("/health"),
        expect_status=[200, 503],
        json_path="checks.db.status",
        json_expect="ok",
    )
    outcome = probes.probe_http(nested, 5)
    assert outcome.status == "fail"
    assert outcome.reason == 'json_path checks.db.status is "fail", expected "ok"'


def test_http_json_path_missing_and_not_json(http_server):
    server = http_server(
        {"/json": lambda h: (200, {"a": [1, {"b": True}]}, {}), "/text": lambda h: (200, "hi", {})}
    )
    assert (
        probes.probe_http(check(kind="http", url=server.url("/json"), json_path="a.1.b"), 5).status
        == "ok"
    )
    assert (
        probes.probe_http(
            check(kind="http", url=server.url("/json"), json_path="a.1.b", json_expect=True), 5
        ).status
        == "ok"
    )
    missing = probes.probe_http(check(kind="http", url=server.url("/json"), json_path="a.2"), 5)
    assert missing.reason == "json_path a.2 not found in the body"
    text = probes.probe_http(check(kind="http", url=server.url("/text"), json_path="a"), 5)
    assert text.reason == "body is not JSON (json_path a)"


def test_http_body_regex_head_and_headers(http_server):
    seen = {}

    def route(handler):
        seen["token"] = handler.headers.get("X-Token")
        seen["method"] = handler.command
        return 200, "service is READY", {}

    server = http_server({"/": route})
    url = server.url("/")
    ok = probes.probe_http(
        check(kind="http", url=url, body_regex="READY", headers={"X-Token": "t"}), 5
    )
    assert ok.status == "ok", ok.reason
    assert seen == {"token": "t", "method": "GET"}
    bad = probes.probe_http(check(kind="http", url=url, body_regex="^ALIVE"), 5)
    assert bad.status == "fail" and "body_regex" in bad.reason
    head = probes.probe_http(check(kind="http", url=url, method="head"), 5)
    assert head.status == "ok" and seen["method"] == "HEAD"


def test_http_slow_endpoint_breaches_latency_budget(http_server):
    def slow(handler):
        time.sleep(0.3)
        return 200, {"status": "ok"}, {}

    server = http_server({"/slow": slow})
    outcome = probes.probe_http(check(kind="http", url=server.url("/slow"), max_latency_ms=100), 5)
    assert outcome.status == "fail"
    assert "max_latency_ms budget of 100" in outcome.reason
    assert outcome.latency_ms >= 300
    relaxed = probes.probe_http(check(kind="http", url=server.url("/slow"), max_latency_ms=5000), 5)
    assert relaxed.status == "ok", relaxed.reason


def test_http_timeout_and_refused(http_server, free_port):
    def hang(handler):
        time.sleep(1.5)
        return 200, "late", {}

    server = http_server({"/hang": hang})
    outcome = probes.probe_http(check(kind="http", url=server.url("/hang")), 0.3)
    assert outcome.status == "fail"
    assert outcome.reason == "timed out after 0.3s"
    refused = probes.probe_http(check(kind="http", url=f"http://127.0.0.1:{free_port}/"), 2)
    assert (refused.status, refused.reason) == ("fail", "connection refused")


# --- https ----------------------------------------------------------------------------


def test_https_ca_path_verification(http_server, certs):
    server = http_server({"/": selfheal_endpoint()}, tls=certs["good"])
    url = server.url("/")
    trusted = probes.probe_http(check(kind="http", url=url, ca_path=str(certs["good"][0])), 5)
    assert trusted.status == "ok", trusted.reason

    stranger = probes.probe_http(check(kind="http", url=url, ca_path=str(certs["other"][0])), 5)
    assert stranger.status == "fail"
    assert stranger.reason.startswith("TLS certificate verification failed")

    system = probes.probe_http(check(kind="http", url=url), 5)  # self-signed: not trusted
    assert system.status == "fail" and "verification failed" in system.reason

    unverified = probes.probe_http(check(kind="http", url=url, validate_certs=False), 5)
    assert unverified.status == "ok", unverified.reason


def test_https_expiring_certificate_is_flagged(http_server, certs):
    server = http_server({"/": selfheal_endpoint()}, tls=certs["expiring"])
    ca = str(certs["expiring"][0])
    outcome = probes.probe_http(
        check(kind="http", url=server.url("/"), ca_path=ca, cert_min_days=14), 5
    )
    assert outcome.status == "fail"
    assert "expires in 3.0 days" in outcome.reason  # minus the seconds the test took
    assert "cert_min_days 14" in outcome.reason
    # Also without verification, and fine under a smaller minimum.
    unverified = check(kind="http", url=server.url("/"), validate_certs=False, cert_min_days=14)
    assert "expires in 3.0 days" in probes.probe_http(unverified, 5).reason
    short = check(kind="http", url=server.url("/"), ca_path=ca, cert_min_days=2)
    assert probes.probe_http(short, 5).status == "ok"


def test_certificate_not_after_reads_der(certs):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    for cert_path, _ in certs.values():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        der = cert.public_bytes(serialization.Encoding.DER)
        assert probes.certificate_not_after(der) == int(cert.not_valid_after_utc.timestamp())
    with pytest.raises(ValueError):
        probes.certificate_not_after(b"\x30\x05\x01")


# --- tcp ------------------------------------------------------------------------------


def test_tcp_open_and_closed(free_port):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        outcome = probes.probe_tcp(check(kind="tcp", host="127.0.0.1", port=port), 2)
        assert outcome.status == "ok", outcome.reason
    closed = probes.probe_tcp(check(kind="tcp", host="127.0.0.1", port=free_port), 2)
    assert (closed.status, closed.reason) == ("fail", "connection refused")


# --- process --------------------------------------------------------------------------


@pytest.fixture
def sleeper(tmp_path):
    """A sleeping process whose comm is a unique name (a symlink to sleep)."""
    name = f"hc{os.getpid() % 100000}sl"
    link = tmp_path / name
    link.symlink_to(shutil.which("sleep"))
    proc = subprocess.Popen([str(link), "60"])
    yield name, proc
    proc.kill()
    proc.wait()


def _found(name, pid, timeout=20.0):
    """find_processes(name) once it lists pid (a loaded machine may be slow to exec)."""
    deadline = time.monotonic() + timeout
    found = probes.find_processes(name)
    while pid not in found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = probes.find_processes(name)
    return found


def test_process_by_comm_and_by_argv0(sleeper, tmp_path):
    name, proc = sleeper
    assert _found(name, proc.pid) == [proc.pid]
    outcome = probes.probe_process(check(kind="process", name="x", process_name=name), 2)
    assert outcome.status == "ok", outcome.reason

    alias = f"selfheal-argv0-{os.getpid()}"
    renamed = subprocess.Popen(["bash", "-c", f"exec -a {alias} sleep 60"])
    try:
        assert _found(alias, renamed.pid) == [renamed.pid], renamed.poll()
        # With no process_name, the check's own name is the process to look for.
        named = probes.probe_process(check(kind="process", name=alias), 2)
        assert named.status == "ok", named.reason
    finally:
        renamed.kill()
        renamed.wait()
    gone = probes.probe_process(check(kind="process", name=alias), 2)
    assert (gone.status, gone.reason) == ("fail", f"no process named {alias}")


def test_process_by_pidfile(sleeper, tmp_path):
    _, proc = sleeper
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{proc.pid}\n")
    outcome = probes.probe_process(check(kind="process", pidfile=str(pidfile)), 2)
    assert outcome.status == "ok", outcome.reason

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    dead = probes.probe_process(check(kind="process", pidfile=str(pidfile)), 2)
    assert (dead.status, dead.reason) == ("fail", f"pid {proc.pid} from {pidfile} is not running")

    pidfile.write_text("garbage")
    assert (
        "does not hold a pid"
        in probes.probe_process(check(kind="process", pidfile=str(pidfile)), 2).reason
    )
    missing = probes.probe_process(check(kind="process", pidfile=str(tmp_path / "none.pid")), 2)
    assert missing.status == "fail" and "cannot read pidfile" in missing.reason


# --- command --------------------------------------------------------------------------


def test_command_rc_stdout_and_errors(tmp_path):
    py = sys.executable
    ok = probes.probe_command(
        check(kind="command", argv=[py, "-c", "print('ready 42')"], stdout_regex=r"ready \d+"), 5
    )
    assert ok.status == "ok", ok.reason
    nomatch = probes.probe_command(
        check(kind="command", argv=[py, "-c", "print('x')"], stdout_regex="ready"), 5
    )
    assert nomatch.status == "fail" and "stdout_regex" in nomatch.reason
    rc = probes.probe_command(
        check(kind="command", argv=[py, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]),
        5,
    )
    assert rc.status == "fail"
    assert rc.reason.endswith("exited 3, expected 0; stderr: boom")
    expected_rc = probes.probe_command(
        check(kind="command", argv=[py, "-c", "raise SystemExit(3)"], expect_rc=3), 5
    )
    assert expected_rc.status == "ok"
    missing = probes.probe_command(check(kind="command", argv=[str(tmp_path / "nope")]), 5)
    assert missing.status == "fail" and missing.reason.startswith("cannot run")
    slow = probes.probe_command(check(kind="command", argv=["sleep", "5"]), 0.2)
    assert slow.reason == "sleep timed out after 0.2s"


def test_command_argv_is_not_a_shell(tmp_path):
    marker = tmp_path / "marker"
    outcome = probes.probe_command(check(kind="command", argv=["echo", f"; touch {marker}"]), 5)
    assert outcome.status == "ok"
    assert not marker.exists()


# --- disk -----------------------------------------------------------------------------


def test_disk_free_percent(tmp_path):
    ok = probes.probe_disk(check(kind="disk", path=str(tmp_path), min_free_percent=0), 2)
    assert ok.status == "ok" and "space free" in ok.reason
    full = probes.probe_disk(check(kind="disk", path=str(tmp_path), min_free_percent=100), 2)
    assert full.status == "fail" and "below min_free_percent 100" in full.reason
    missing = probes.probe_disk(
        check(kind="disk", path=str(tmp_path / "no"), min_free_percent=1), 2
    )
    assert missing.status == "fail" and "cannot stat" in missing.reason


def test_disk_free_inodes(tmp_path):
    stat = os.statvfs(tmp_path)
    outcome = probes.probe_disk(
        check(kind="disk", path=str(tmp_path), min_free_inodes_percent=100), 2
    )
    if stat.f_files == 0:
        assert outcome.status == "ok" and "no inode counts" in outcome.reason
    elif stat.f_favail < stat.f_files:
        assert outcome.status == "fail" and "min_free_inodes_percent 100" in outcome.reason
    loose = probes.probe_disk(check(kind="disk", path=str(tmp_path), min_free_inodes_percent=0), 2)
    assert loose.status == "ok"


# --- postgres -------------------------------------------------------------------------


def test_postgres_skipped_without_driver(monkeypatch):
    monkeypatch.setattr(probes, "load_postgres_driver", lambda: None)
    outcome = probes.probe_postgres(check(kind="postgres", host="127.0.0.1"), 2)
    assert outcome.status == "skipped"
    assert outcome.reason == "postgres driver not installed (psycopg or psycopg2)"


def test_postgres_driver_gets_dsn_and_overrides(monkeypatch):
    calls = []

    class Cursor:
        description = ("one",)

        def execute(self, query):
            calls.append(("execute", query))

        def fetchone(self):
            return (1,)

        def close(self):
            pass

    class Connection:
        def cursor(self):
            return Cursor()

        def close(self):
            calls.append(("close",))

    def connect(dsn, **params):
        calls.append(("connect", dsn, params))
        if params.get("dbname") == "down":
            raise RuntimeError("connection to server failed\nIs the server running?")
        return Connection()

    driver = types.SimpleNamespace(connect=connect)
    monkeypatch.setattr(probes, "load_postgres_driver", lambda: driver)
    ok = probes.probe_postgres(
        check(kind="postgres", dsn="host=db", port=6432, user="u", password="pw"), 3
    )
    assert ok.status == "ok", ok.reason
    assert calls[0] == (
        "connect",
        "host=db",
        {"connect_timeout": 3, "port": 6432, "user": "u", "password": "pw"},
    )
    assert calls[1:] == [("execute", "SELECT 1"), ("close",)]
    down = probes.probe_postgres(check(kind="postgres", host="h", dbname="down"), 3)
    assert (down.status, down.reason) == ("fail", "postgres: connection to server failed")


def _initdb():
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return found[-1] if found else None


def _server_prefix():
    """Command prefix running the server's tools as a non-root user, or None if impossible."""
    if os.geteuid() != 0:
        return []
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--"] if runuser else None


@pytest.mark.skipif(_initdb() is None, reason="no PostgreSQL server binaries (initdb) installed")
@pytest.mark.skipif(
    probes.load_postgres_driver() is None, reason="neither psycopg nor psycopg2 is installed"
)
@pytest.mark.skipif(
    _server_prefix() is None, reason="running as root without a postgres user to run the server"
)
def test_postgres_real_server():
    import pwd
    import tempfile

    bindir = os.path.dirname(_initdb())
    prefix = _server_prefix()
    # Not under pytest's tmp_path: the server's user must be able to reach it.
    base = tempfile.mkdtemp(prefix="selfheal-pg-")
    if prefix:
        account = pwd.getpwnam("postgres")
        os.chown(base, account.pw_uid, account.pw_gid)
    data = os.path.join(base, "data")
    pg_ctl = [*prefix, os.path.join(bindir, "pg_ctl"), "-D", data]
    try:
        subprocess.run(
            [*prefix, os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "pg"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [*pg_ctl, "-o", options, "-w", "-t", "60", "-l", os.path.join(base, "log"), "start"],
            check=True,
            capture_output=True,
            timeout=90,
        )
        target = {"kind": "postgres", "host": "127.0.0.1", "port": port, "user": "pg"}
        ok = probes.probe_postgres(check(**target, dbname="postgres"), 5)
        assert ok.status == "ok", ok.reason
        dsn = probes.probe_postgres(
            check(kind="postgres", dsn=f"postgresql://pg@127.0.0.1:{port}/postgres"), 5
        )
        assert dsn.status == "ok", dsn.reason
        bad = probes.probe_postgres(check(**target, dbname="postgres", query="SELECT nope"), 5)
        assert bad.status == "fail" and "nope" in bad.reason
        missing = probes.probe_postgres(check(**target, dbname="no_such_db"), 5)
        assert missing.status == "fail" and "no_such_db" in missing.reason
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
