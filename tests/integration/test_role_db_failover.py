"""PostgreSQL failover for real, on the lab's primary/replica pair (`selfheal lab up
--postgres`, its own state dir, namespaces, bridge and subnet): rows written on the primary,
the primary killed, playbooks/failover_db.yml through the policy gate (decision `approval`,
then approved), the replica promoted, fenced old primary, clients repointed, no committed
row lost; check mode and a second run change nothing; refusals are clear."""

from __future__ import annotations

import configparser
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import REPO, ansible_bin

pytestmark = pytest.mark.integration

psycopg = pytest.importorskip("psycopg")

TAG = (os.getpid() + 7) % 1000
PLAYBOOK = REPO / "playbooks/failover_db.yml"
ROWS = 200


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, PostgreSQL as the postgres user)"
    for tool in ("supervisord", "supervisorctl", "ssh", "ssh-keygen", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        return "sshd is not installed"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return "PostgreSQL is not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no postgres user"
    return None


def _lab(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfheal.cli", "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if reason := _missing():
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("fo")
    state = base / "s"
    opts = [
        "--state-dir", str(state), "--hosts", "3", "--postgres",
        "--netns-prefix", f"shfo{TAG}-", "--bridge", f"shfo{TAG}",
        "--subnet", f"10.79.{TAG % 250}.0/24",
    ]  # fmt: skip
    try:
        up = _lab("up", "--json", *opts)
        assert up.returncode == 0, up.stdout + up.stderr
        info = json.loads(up.stdout)
        inventory = yaml.safe_load(Path(info["inventory"]).read_text())
        hosts = inventory["all"]["children"]["lab"]["hosts"]
        yield {
            "base": base,
            "state": state,
            "inventory": info["inventory"],
            "hosts": hosts,
            "password": (state / "postgres.pass").read_text().strip(),
        }
    finally:
        down = _lab("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stdout + down.stderr


def _connect(lab, host: str):
    return psycopg.connect(
        host=lab["hosts"][host]["ansible_host"],
        port=5432,
        user="postgres",
        password=lab["password"],
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def _in_recovery(lab, host: str) -> bool:
    with _connect(lab, host) as conn:
        return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def _policy(lab) -> Path:
    path = lab["base"] / "policy.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "compliance": {
                    "required_tags": ["selfheal_managed"],
                    "tag_vars": ["selfheal_managed"],
                },
                "services": {"db": {"hosts": ["lab1", "lab2"], "owner": "dba", "max_unhealthy": 1}},
                "runbooks": {"failover_db": {"playbook": "failover_db.yml", "risk": "high"}},
                "risk_tiers": {
                    "high": {
                        "mode": "approval",
                        "approval": {"users": ["alice"], "quorum": 1, "timeout": "30m"},
                    }
                },
            }
        )
    )
    return path


def _failover(lab, *args: str, **extra) -> subprocess.CompletedProcess:
    servers = {"primary": "lab1", "replica": "lab2"} if "target" not in extra else {}
    extra_vars = {
        **servers,
        "selfheal_db_password": lab["password"],
        "selfheal_db_failover": {
            "client_hosts": ["lab3"],
            "client_ini": str(lab["base"] / "pgbouncer.ini"),
            "client_databases": ["app"],
        },
        **extra,
    }
    env = {
        **os.environ,
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        "ANSIBLE_TIMEOUT": "20",
        "SELFHEAL_POLICY": str(_policy(lab)),
        "SELFHEAL_STATE": str(lab["base"] / "state.db"),
    }
    return subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", lab["inventory"], "-e", json.dumps(extra_vars),
         *args, str(PLAYBOOK)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
        check=False,
    )  # fmt: skip


def _recap(stdout: str, host: str = "lab2") -> str:
    return next(line for line in stdout.splitlines() if line.startswith(f"{host} "))


def _kill_primary(lab) -> None:
    config = lab["hosts"]["lab1"]["selfheal_services"]["postgres"]["supervisor_config"]
    ctl = ["supervisorctl", "-c", config]
    pid = int(subprocess.run([*ctl, "pid", "postgres"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip())  # fmt: skip
    os.kill(pid, signal.SIGKILL)  # a crash, not a clean shutdown
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = subprocess.run([*ctl, "status", "postgres"], capture_output=True, text=True,
                                timeout=30, check=False).stdout  # fmt: skip
        if "RUNNING" not in status:
            return
        time.sleep(0.2)
    raise AssertionError("the primary did not die")


def test_failover_promotes_the_replica_without_losing_rows(lab) -> None:
    with _connect(lab, "lab1") as primary:
        primary.execute("CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL)")
        for i in range(ROWS):  # each its own committed transaction
            primary.execute("INSERT INTO orders VALUES (%s, %s)", (i, f"order {i}"))
        primary_lsn = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    # Streaming replication is asynchronous: a row counts as safe once the replica has it.
    with _connect(lab, "lab2") as replica:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lag = replica.execute(
                "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", (primary_lsn,)
            ).fetchone()[0]
            if lag <= 0:
                break
            time.sleep(0.2)
        assert replica.execute("SELECT count(*) FROM orders").fetchone()[0] == ROWS
    assert _in_recovery(lab, "lab2")

    # The policy says `approval` for a high-risk runbook: without the approval, nothing.
    unapproved = _failover(lab)
    assert unapproved.returncode != 0
    assert "the policy decision is approval" in unapproved.stdout
    assert "needs approval" in unapproved.stdout
    assert _in_recovery(lab, "lab2")

    # A target that fails the compliance tags is refused, approved or not.
    refused = _failover(
        lab, selfheal_decision="approved", db_failover_required_tags={"env": "production"}
    )
    assert refused.returncode != 0
    assert "not cleared for automated remediation" in refused.stdout
    assert _in_recovery(lab, "lab2")

    # The old primary still answers and fencing is off: promotion is refused.
    unfenced = _failover(lab, selfheal_decision="approved", db_failover_fence=False)
    assert unfenced.returncode != 0
    assert "refusing to promote lab2: the old primary lab1" in unfenced.stdout
    assert "still accepts connections" in unfenced.stdout
    assert _in_recovery(lab, "lab2")

    _kill_primary(lab)
    ini = lab["base"] / "pgbouncer.ini"

    dry = _failover(lab, "--check", selfheal_decision="approved")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "changed=0" not in _recap(dry.stdout)
    assert _in_recovery(lab, "lab2")
    assert not ini.exists()

    run = _failover(lab, selfheal_decision="approved")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "changed=0" not in _recap(run.stdout)
    assert not _in_recovery(lab, "lab2")

    # Clients now point at lab2, and through that entry every committed row is there.
    parser = configparser.ConfigParser()
    parser.read(ini)
    entry = dict(kv.split("=", 1) for kv in parser["databases"]["app"].split())
    assert entry["host"] == lab["hosts"]["lab2"]["ansible_host"]
    with psycopg.connect(
        host=entry["host"], port=int(entry["port"]), user="postgres",
        password=lab["password"], dbname="postgres", autocommit=True,
    ) as new:  # fmt: skip
        assert new.execute("SELECT count(*) FROM orders").fetchone()[0] == ROWS
        new.execute("INSERT INTO orders VALUES (%s, 'after failover')", (ROWS,))
        assert new.execute("SELECT count(*) FROM orders").fetchone()[0] == ROWS + 1

    # The old primary is fenced: a restart would come back read-only.
    data_dir = Path(lab["hosts"]["lab1"]["selfheal_services"]["postgres"]["data_dir"])
    assert (data_dir / "standby.signal").exists()

    # As the dispatcher runs it: only the failed primary as target, the replica from the
    # inventory (selfheal_postgres_role).
    again = _failover(lab, target="lab1", selfheal_decision="approved")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in _recap(again.stdout)
    assert "failed=0" in _recap(again.stdout)
