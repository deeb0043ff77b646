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
script in ``--client`` mode (asyncio, HTTP/1.1 keep-alive, one alert per request, 1,000
distinct fingerprints so most alerts are duplicates of open incidents).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
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


def _body(i: int, alertname: str = "BenchAlert", host: str | None = None) -> bytes:
    labels = {"alertname": alertname, "instance": f"node{i % 1000:04d}", "job": "bench"}
    if host:
        labels["host"] = host
        labels["service"] = "bench"
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "benchmark"},
        "startsAt": "2026-11-26T00:00:00Z",
    }
    return json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()


def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /alerts/alertmanager HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _roundtrip(reader, writer, payload: bytes) -> int:
    writer.write(payload)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _fixed(port: int, rate: float, duration: float, max_conn: int) -> dict:
    idle: asyncio.Queue = asyncio.Queue()
    opened = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    tasks = []

    async def one(i: int, due: float) -> None:
        nonlocal opened
        if idle.empty() and opened < max_conn:
            opened += 1
            idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
        reader, writer = await idle.get()
        try:
            status = await _roundtrip(reader, writer, _request(port, _body(i)))
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            status = 0
            opened -= 1
            writer.close()
        else:
            idle.put_nowait((reader, writer))
        statuses[status] = statuses.get(status, 0) + 1
        if 200 <= status < 300:
            latencies.append(time.perf_counter() - due)

    start = time.perf_counter()
    total = int(rate * duration)
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return _summary("fixed", rate, elapsed, latencies, statuses, opened)


async def _max(port: int, connections: int, duration: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            status = await _roundtrip(reader, writer, _request(port, _body(next(counter))))
            statuses[status] = statuses.get(status, 0) + 1
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - sent)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return _summary("max", None, time.perf_counter() - start, latencies, statuses, connections)


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
    if args.mode == "fixed":
        out = asyncio.run(_fixed(args.port, args.rate, args.duration, args.max_connections))
    else:
        out = asyncio.run(_max(args.port, args.max_connections, args.duration))
    print(json.dumps(out))


# -- the server side ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(tmp: Path, port: int, workers: int) -> Path:
    import yaml

    book = tmp / "one_task.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "{{ target }}",
                    "gather_facts": False,
                    "tasks": [{"name": "One task", "ansible.builtin.debug": {"msg": "healed"}}],
                }
            ]
        )
    )
    (tmp / "inventory.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}})
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
                "runbooks": {"one_task": {"playbook": str(book), "risk": "low"}},
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
                "poll_s": 0.2,
                "log_level": "ERROR",
                "tokens": [{"name": "bench", "token": TOKEN}],
            }
        )
    )
    return config


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("selfheal serve exited early")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("selfheal serve did not get ready")


def _client(port: int, mode: str, rate: float, duration: float, conns: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            "--mode",
            mode,
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--max-connections",
            str(conns),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _first_task_latency(tmp: Path, port: int, count: int) -> dict:
    import http.client

    db = tmp / "state/selfheal.db"
    latencies = []
    for i in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = _body(100000 + i, alertname="BenchDown", host="localhost").replace(
            b'"node', b'"first' + str(i).encode() + b"-"
        )
        sent = time.time()
        conn.request(
            "POST",
            "/alerts/alertmanager",
            body,
            {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        reply = json.loads(conn.getresponse().read())
        conn.close()
        incident = reply["results"][0]["incident_id"]
        deadline = time.monotonic() + 120
        start = None
        while time.monotonic() < deadline and start is None:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                row = c.execute(
                    "SELECT private_data_dir, status FROM runs WHERE incident_id = ?", (incident,)
                ).fetchone()
            if row and row[0] and row[1] in ("succeeded", "failed"):
                for path in glob.glob(f"{row[0]}/artifacts/*/job_events/*.json"):
                    event = json.loads(Path(path).read_text())
                    if event.get("event") == "playbook_on_task_start":
                        created = datetime.fromisoformat(event["created"]).timestamp()
                        start = created if start is None else min(start, created)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fixed", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
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
    port = _free_port()
    config = _setup(tmp, port, args.workers)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfheal.cli", "serve", "--config", str(config)],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        _wait_ready(port, proc)
        results = [
            _client(port, "fixed", args.rate, args.duration, args.max_connections),
            _client(port, "max", 0, args.duration, args.max_connections),
            _first_task_latency(tmp, port, args.first_task),
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
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
