"""Dispatcher intake benchmark against a real `selfheal serve`, load from a second process.

    python benchmarks/dispatcher_intake.py                      # 1,000/s for 10 s, max for 10 s
    python benchmarks/dispatcher_intake.py --rate 500 --duration 5 --max-connections 32

Phases:
1. fixed offered rate (open loop: a request is due every 1/rate s whether or not earlier
   ones finished; latency counts from the due time, so queueing is not hidden);
2. maximum rate (closed loop: N connections, each sending the next request on its reply);
3. alert -> first task: distinct alerts that the policy sends to a one-task runbook, one at a
   time; from the POST to the first task's start event in the run's ansible-runner artifacts.

Every 2xx means the alert was committed to the SQLite store (WAL, synchronous=FULL):
concurrent requests share one transaction (group commit). The load generator is this
script in ``--client`` mode (asyncio protocol, HTTP/1.1 keep-alive, one Alertmanager v4
notification of one alert per request, 1,000 distinct alerts so most are duplicates of open
incidents). `eda_side_by_side.py` drives ansible-rulebook with the same client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"
DISTINCT = 1000  # distinct alerts cycled through by the load generator


def alertmanager_body(
    i: int, alertname: str = "BenchAlert", host: str | None = None, instance: str | None = None
) -> bytes:
    """One Alertmanager webhook notification (version 4) carrying one firing alert."""
    labels = {
        "alertname": alertname,
        "instance": instance or f"node{i % DISTINCT:04d}:9100",
        "job": "bench",
        "severity": "warning",
    }
    if host:
        labels["host"] = host
        labels["service"] = "bench"
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "benchmark alert"},
        "startsAt": "2026-11-26T00:00:00.000000000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        # Alertmanager's own fingerprint: a hash of the label set
        "fingerprint": hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16],
    }
    return json.dumps(
        {
            "receiver": "bench",
            "status": "firing",
            "alerts": [alert],
            "groupLabels": {"alertname": alertname},
            "commonLabels": labels,
            "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager:9093",
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}"}}',
            "truncatedAlerts": 0,
        }
    ).encode()


def http_request(port: int, path: str, body: bytes, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# -- the load generator (a second process) ---------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight: cheaper than streams, so
    the load generator takes less of the CPU it shares with the server."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(0)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            eol = head.find(b"\r\n", at)
            length = int(head[at + 15 : eol if eol >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        self.buffer = self.buffer[end + 4 + length :]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result(status)

    async def send(self, payload: bytes) -> int:
        if self.closed:
            return 0
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)  # type: ignore[union-attr]
        return await self.waiter


async def _connect(port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(_Connection, "127.0.0.1", port)
    return conn


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def fixed_rate(
    port: int, payloads: list[bytes], rate: float, duration: float, max_conn: int
) -> dict:
    """Open loop: request i is due at start + i/rate; latency counts from the due time."""
    idle: list[_Connection] = []
    opened = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    slots = asyncio.Semaphore(max_conn)

    async def one(i: int, due: float) -> None:
        nonlocal opened
        async with slots:
            try:
                if idle:
                    conn = idle.pop()
                else:
                    opened += 1
                    conn = await _connect(port)
            except OSError:
                statuses[0] = statuses.get(0, 0) + 1
                return
            status = await conn.send(payloads[i % len(payloads)])
            if not conn.closed:
                idle.append(conn)
        statuses[status] = statuses.get(status, 0) + 1
        if 200 <= status < 300:
            latencies.append(time.perf_counter() - due)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * duration)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for conn in idle:
        conn.transport.close()  # type: ignore[union-attr]
    return _summary("fixed", rate, elapsed, latencies, statuses, opened)


async def closed_loop(port: int, payloads: list[bytes], connections: int, duration: float) -> dict:
    """Closed loop: each connection sends its next request when the reply came."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))
    conns = [await _connect(port) for _ in range(connections)]
    stop = time.perf_counter() + duration

    async def worker(conn: _Connection) -> None:
        while time.perf_counter() < stop and not conn.closed:
            sent = time.perf_counter()
            status = await conn.send(payloads[next(counter) % len(payloads)])
            statuses[status] = statuses.get(status, 0) + 1
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - sent)
        conn.transport.close()  # type: ignore[union-attr]

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return _summary("max", None, time.perf_counter() - start, latencies, statuses, connections)


async def storm(port: int, payload: bytes, connections: int, count: int, limit: float) -> dict:
    """`count` copies of one request, as fast as `connections` connections send them; what
    has no answer after `limit` seconds counts as status 0."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    left = iter(range(count))
    conns = [await _connect(port) for _ in range(connections)]

    async def worker(conn: _Connection) -> None:
        for _ in left:
            sent = time.perf_counter()
            status = await conn.send(payload)
            statuses[status] = statuses.get(status, 0) + 1
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - sent)
            if conn.closed:
                break
        conn.transport.close()  # type: ignore[union-attr]

    start = time.perf_counter()
    tasks = [asyncio.create_task(worker(c)) for c in conns]
    _, pending = await asyncio.wait(tasks, timeout=limit)
    for task in pending:
        task.cancel()
    unanswered = count - sum(statuses.values())
    if unanswered:
        statuses[0] = statuses.get(0, 0) + unanswered
    return _summary("storm", None, time.perf_counter() - start, latencies, statuses, connections)


def _summary(phase, rate, elapsed, latencies, statuses, connections) -> dict:
    return {
        "phase": phase,
        "offered_per_s": rate,
        "accepted_per_s": round(len(latencies) / elapsed, 1),
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "p50_ms": round(_pct(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 2),
        "connections": connections,
    }


def client_main(args) -> None:
    try:  # the client is lighter on uvloop when it is installed
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    token = args.token or None
    payloads = [
        http_request(args.port, args.path, alertmanager_body(i), token) for i in range(DISTINCT)
    ]
    if args.mode == "storm":
        body = alertmanager_body(0, alertname="BenchDown", host="localhost", instance="storm")
        payload = http_request(args.port, args.path, body, token)
        coro = storm(args.port, payload, args.max_connections, args.count, args.duration)
    elif args.mode == "fixed":
        coro = fixed_rate(args.port, payloads, args.rate, args.duration, args.max_connections)
    else:
        coro = closed_loop(args.port, payloads, args.max_connections, args.duration)
    print(json.dumps(asyncio.run(coro)))


def run_client(
    port: int,
    mode: str,
    rate: float,
    duration: float,
    conns: int,
    *,
    path: str = "/alerts/alertmanager",
    token: str = TOKEN,
    count: int = 0,
) -> dict:
    """Run the load generator as a second process; its JSON summary."""
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--client",
            "--mode",
            mode,
            "--port",
            str(port),
            "--path",
            path,
            "--token",
            token,
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--max-connections",
            str(conns),
            "--count",
            str(count),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration * 3 + 60,
    )
    return json.loads(out.stdout)


# -- the server side ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_selfheal_config(tmp: Path, port: int, workers: int, playbook: Path | None = None) -> Path:
    """A dispatcher config: SQLite store, one token, a policy sending `BenchDown` alerts to
    a one-task runbook on localhost (every other alert is recorded and escalated)."""
    import yaml

    if playbook is None:
        playbook = tmp / "one_task.yml"
        playbook.write_text(
            yaml.safe_dump(
                [
                    {
                        "name": "One task",
                        "hosts": "{{ target }}",
                        "gather_facts": False,
                        "tasks": [{"name": "One task", "ansible.builtin.debug": {"msg": "healed"}}],
                    }
                ]
            )
        )
    (tmp / "inventory.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                }
            }
        )
    )
    (tmp / "policy.yml").write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "limits": {
                    "runs_per_target": {"count": 100000, "per": "1h"},
                    "max_unhealthy": "100%",
                    "circuit_breaker": {"failures": 1000, "window": "1h", "cooldown": "1m"},
                },
                "services": {"bench": {"hosts": ["localhost"]}},
                "runbooks": {"one_task": {"playbook": str(playbook), "risk": "low"}},
                "routes": [
                    {
                        "name": "bench",
                        "match": {"alertname": "BenchDown"},
                        "runbook": "one_task",
                        "target_label": "host",
                    }
                ],
            }
        )
    )
    config = tmp / "dispatcher.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{port}",
                "store": "state/selfheal.db",
                "policy": "policy.yml",
                "inventory": "inventory.yml",
                "workers": workers,
                "log_level": "ERROR",
                "tokens": [{"name": "bench", "token": TOKEN}],
            }
        )
    )
    return config


def start_selfheal(tmp: Path, config: Path, env: dict | None = None) -> subprocess.Popen:
    environ = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "selfheal.cli", "serve", "--config", str(config)],
        cwd=tmp,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "serve.log").open("wb"),
        start_new_session=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group this script started, SIGKILL it if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def wait_ready(
    port: int, proc: subprocess.Popen, url: str = "/readyz", timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited early (rc {proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{url}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not get ready")


def post(port: int, path: str, body: bytes, token: str | None = TOKEN) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", path, body, headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def first_task_start(private_data_dir: str) -> float | None:
    """The earliest `playbook_on_task_start` event time in a run's runner artifacts."""
    start = None
    for path in glob.glob(f"{private_data_dir}/artifacts/*/job_events/*.json"):
        try:
            event = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if event.get("event") == "playbook_on_task_start":
            created = datetime.fromisoformat(event["created"]).timestamp()
            start = created if start is None else min(start, created)
    return start


def _first_task_latency(tmp: Path, port: int, count: int) -> dict:
    db = tmp / "state/selfheal.db"
    latencies = []
    for i in range(count):
        body = alertmanager_body(i, alertname="BenchDown", host="localhost", instance=f"ft{i}")
        sent = time.time()
        status, reply = post(port, "/alerts/alertmanager", body)
        if status != 202:
            continue
        incident = json.loads(reply)["results"][0]["incident_id"]
        deadline = time.monotonic() + 120
        start = None
        while time.monotonic() < deadline and start is None:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                row = c.execute(
                    "SELECT private_data_dir, status FROM runs WHERE incident_id = ?", (incident,)
                ).fetchone()
            if row and row[0] and row[1] in ("succeeded", "failed"):
                start = first_task_start(row[0])
                break
            time.sleep(0.05)
        if start is not None:
            latencies.append(start - sent)
    return {
        "phase": "alert_to_first_task",
        "runs": len(latencies),
        "p50_ms": round(_pct(latencies, 0.5) * 1000, 1),
        "p95_ms": round(_pct(latencies, 0.95) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fixed", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/alerts/alertmanager", help=argparse.SUPPRESS)
    parser.add_argument("--token", default=TOKEN, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered alerts/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument("--first-task", type=int, default=10, help="alert->task samples")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="selfheal-bench-"))
    port = free_port()
    config = write_selfheal_config(tmp, port, args.workers)
    proc = start_selfheal(tmp, config)
    try:
        wait_ready(port, proc)
        results = [
            run_client(port, "fixed", args.rate, args.duration, args.max_connections),
            run_client(port, "max", 0, args.duration, args.max_connections),
        ]
        if args.first_task:
            results.append(_first_task_latency(tmp, port, args.first_task))
    finally:
        stop(proc)
    with sqlite3.connect(tmp / "state/selfheal.db") as c:
        stored = c.execute("SELECT count(*) FROM alerts").fetchone()[0]
    for r in results:
        if r["phase"] == "alert_to_first_task":
            print(
                f"alert -> first task      runs {r['runs']:>3}   p50 {r['p50_ms']:8.1f} ms"
                f"   p95 {r['p95_ms']:8.1f} ms"
            )
        else:
            offered = f"{r['offered_per_s']:.0f}/s" if r["offered_per_s"] else "max"
            print(
                f"intake offered {offered:>7}   accepted {r['accepted_per_s']:8.1f}/s"
                f"   p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms"
                f"   conns {r['connections']:>3}   statuses {r['statuses']}"
            )
    print(f"alerts stored: {stored}")
    if args.keep:
        print(f"state kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
