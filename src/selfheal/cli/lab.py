"""`selfheal lab up|down|status`: a small fleet of SSH-reachable hosts on this machine."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SPEC_OPTIONS = (
    "hosts",
    "mode",
    "netns_prefix",
    "bridge",
    "subnet",
    "ssh_port_base",
    "web_port",
    "prometheus_port",
    "alertmanager_port",
    "web_command",
    "postgres",
    "postgres_port",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="bring a local lab fleet (namespaces with sshd + supervisord) up or down",
        description="A lab fleet on this machine: N hosts, each a network namespace on a "
        "private bridge (or a 127.0.0.x address with --mode loopback) running sshd and "
        "supervisord with a demo web service, plus a generated Ansible inventory.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        help="where the lab keeps its files (default: $SELFHEAL_LAB_DIR or "
        "~/.local/state/selfheal/lab)",
    )
    common.add_argument("--hosts", type=int, help="number of hosts (default 3)")
    common.add_argument(
        "--mode",
        choices=("netns", "loopback"),
        help="netns (default; needs root) or loopback (127.0.0.x addresses, no root)",
    )
    common.add_argument("--netns-prefix", help="namespace names (default selfheal-lab-)")
    common.add_argument("--bridge", help="bridge name; veths are named after it (default shlab0)")
    common.add_argument(
        "--subnet", help="IPv4 network (default 10.77.0.0/24; loopback 127.0.0.0/24)"
    )
    common.add_argument(
        "--ssh-port-base", type=int, help="sshd port (netns, default 22) or base (loopback 2220)"
    )
    common.add_argument("--web-port", type=int, help="demo web service port (default 8080)")
    common.add_argument("--prometheus-port", type=int, help="with --monitoring (default 9090)")
    common.add_argument("--alertmanager-port", type=int, help="with --monitoring (default 9093)")
    common.add_argument(
        "--web-command",
        help="what each host runs as `web` instead of the demo service: a template with "
        "{python}, {address}, {port}, {name}",
    )
    common.add_argument(
        "--postgres",
        action="store_true",
        default=None,
        help="also run PostgreSQL: a primary on the first host, a streaming replica on the second",
    )
    common.add_argument("--postgres-port", type=int, help="with --postgres (default 5432)")
    common.add_argument("--json", action="store_true", help="print JSON")

    up = actions.add_parser("up", parents=[common], help="create the hosts (idempotent)")
    up.add_argument(
        "--monitoring",
        action="store_true",
        help="also run Prometheus and Alertmanager on 127.0.0.1 scraping the hosts",
    )
    up.add_argument(
        "--monitoring-dir",
        type=Path,
        help="the monitoring/ directory with the configs (default: the checkout's)",
    )
    up.add_argument("--timeout", type=float, default=60.0, help="readiness wait (seconds)")
    up.set_defaults(func=run_up)
    down = actions.add_parser("down", parents=[common], help="remove everything the lab made")
    down.set_defaults(func=run_down)
    status = actions.add_parser("status", parents=[common], help="a table of the hosts' health")
    status.set_defaults(func=run_status)


def _lab(args):
    from selfheal.lab import Lab, LabSpec, default_state_dir

    state_dir = args.state_dir or default_state_dir()
    recorded = Lab.existing(state_dir)
    given = {k: getattr(args, k) for k in SPEC_OPTIONS if getattr(args, k) is not None}
    if recorded and (args.action != "up" or not given):
        return recorded  # down/status (and a bare second `up`) act on what is recorded
    return Lab(LabSpec(state_dir=state_dir, **given))


def run_up(args) -> int:
    from selfheal.lab import monitoring

    lab = _lab(args)
    started = time.monotonic()
    results = lab.up(timeout=args.timeout)
    extra = monitoring.start(lab, args.monitoring_dir) if args.monitoring else []
    elapsed = time.monotonic() - started
    if args.json:
        payload = {
            "state_dir": str(lab.spec.state_dir),
            "inventory": str(lab.spec.inventory),
            "hosts": [
                {"host": r.name, "address": r.address, "result": r.summary, "actions": r.actions}
                for r in results
            ],
            "monitoring": lab.record.get("monitoring"),
            "seconds": round(elapsed, 2),
        }
        print(json.dumps(payload, indent=2))
        return 0
    for r in results:
        print(f"{r.name:8} {r.address:15} {r.summary}")
    for line in extra:
        print(line)
    print(f"inventory: {lab.spec.inventory}")
    print(f"lab up in {elapsed:.1f}s (state: {lab.spec.state_dir})")
    return 0


def run_down(args) -> int:
    lab = _lab(args)
    started = time.monotonic()
    done = lab.down()
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"removed": done, "seconds": round(elapsed, 2)}, indent=2))
        return 0
    for line in done:
        print(line)
    print(f"lab down in {elapsed:.1f}s" if done else "nothing to remove: the lab is down")
    return 0


def run_status(args) -> int:
    lab = _lab(args)
    info = lab.status()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0 if info["healthy"] else 1
    if not info["recorded"]:
        print(f"no lab is up in {info['state_dir']} (start one with `selfheal lab up`)")
        return 1
    header: tuple[str, ...] = ("HOST", "ADDRESS", "SSH", "SSHD", "SUPERVISORD", "WEB")
    rows = [
        (h["host"], h["address"], str(h["ssh_port"]), h["sshd"], h["supervisord"], h["web"])
        for h in info["hosts"]
    ]
    if any("postgres" in h for h in info["hosts"]):
        header += ("POSTGRES",)
        rows = [(*r, h.get("postgres", "-")) for r, h in zip(rows, info["hosts"], strict=True)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"inventory: {info['inventory']}")
    for name, entry in (info.get("monitoring") or {}).items():
        print(f"{name}: {entry.get('url')}")
    return 0 if info["healthy"] else 1
