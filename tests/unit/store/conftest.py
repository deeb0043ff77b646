"""Store fixtures. `store` runs each test on SQLite and, when the PostgreSQL server binaries
are installed, on a real PostgreSQL server started for the session (else that variant is
skipped with the reason)."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta

import pytest

from selfheal.alerts import Alert, compute_fingerprint
from selfheal.store import PostgresStore, SQLiteStore

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def make_alert(
    instance: str = "web1",
    status: str = "firing",
    *,
    name: str = "ServiceDown",
    starts_at: datetime | None = T0,
    ends_at: datetime | None = None,
    raw: object = None,
) -> Alert:
    labels = {"alertname": name, "instance": instance}
    return Alert(
        source="generic",
        status=status,
        name=name,
        labels=labels,
        annotations={"summary": f"{name} on {instance}"},
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=compute_fingerprint("generic", labels),
        generator_url="",
        received_at=T0,
        raw={"instance": instance, "status": status} if raw is None else raw,
    )


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _postgres_unavailable() -> str | None:
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "no PostgreSQL server binaries (initdb) installed"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 is not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user to run the server"
        if not shutil.which("runuser"):
            return "running as root without runuser"
    return None


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (trust auth on 127.0.0.1); yields its base DSN."""
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(reason)
    bindir = os.path.dirname(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1])
    prefix = []
    base = tempfile.mkdtemp(prefix="selfheal-store-pg-")  # reachable by the server's user
    if os.geteuid() == 0:
        prefix = [shutil.which("runuser"), "-u", "postgres", "--"]
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
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=on"
        subprocess.run(
            [*pg_ctl, "-o", options, "-w", "-t", "60", "-l", os.path.join(base, "log"), "start"],
            check=True,
            capture_output=True,
            timeout=90,
        )
        yield f"postgresql://pg@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


_schemas = itertools.count()


@pytest.fixture
def postgres_dsn(postgres_server):
    """A DSN whose search_path is a fresh, empty schema: each test its own tables."""
    import psycopg

    name = f"t{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{postgres_server}?options=-csearch_path%3D{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        db = SQLiteStore(tmp_path / "state.db")
    else:
        db = PostgresStore(request.getfixturevalue("postgres_dsn"))
    with db:
        yield db
