"""`selfheal policy validate|explain`: check a policy file; show what it decides for an alert."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from selfheal.errors import ConfigError
from selfheal.policy.model import parse_time


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "policy", help="validate a remediation policy, or explain its decision for an alert"
    )
    verbs = parser.add_subparsers(dest="policy_verb", metavar="COMMAND")
    verbs.required = True

    validate = verbs.add_parser("validate", help="check a policy file (exit 2 on errors)")
    validate.add_argument("file", metavar="FILE", help="policy.yml")
    validate.add_argument("--json", action="store_true", help="print a JSON summary")
    validate.set_defaults(func=run_validate)

    explain = verbs.add_parser(
        "explain",
        help="the decision and every reason for an alert (exit 0 auto, 1 anything else)",
    )
    explain.add_argument("--policy", required=True, metavar="FILE", help="policy.yml")
    explain.add_argument(
        "--alert",
        required=True,
        metavar="FILE",
        help="Alertmanager webhook JSON, or one alert ({labels: ...}); '-' reads stdin",
    )
    explain.add_argument(
        "--inventory",
        metavar="FILE",
        help="known targets: an Ansible YAML inventory or a {host: tags} mapping "
        "(default: the hosts the policy's services list)",
    )
    explain.add_argument("--state", metavar="DB", help="SQLite state database (default: empty)")
    explain.add_argument("--at", metavar="TIME", help="ISO 8601 time to decide at (default: now)")
    explain.add_argument("--requester", help="who asks (for approvals)")
    explain.add_argument("--break-glass", metavar="REASON", help="ask to override a freeze")
    explain.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format"
    )
    explain.set_defaults(func=run_explain)


def _read_data(path: str, what: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", path) from exc
    try:
        return yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid JSON/YAML: {exc}", path) from exc


def alerts_from(data: Any, path: str) -> list[dict[str, str]]:
    """Label sets from an Alertmanager webhook payload, a list of alerts, or one alert."""
    if isinstance(data, dict) and "alerts" in data:
        items = data["alerts"]
        common = data.get("commonLabels") or {}
    elif isinstance(data, list):
        items, common = data, {}
    else:
        items, common = [data], {}
    if not isinstance(items, list) or not items:
        raise ConfigError("no alerts in the file", path)
    out = []
    for i, alert in enumerate(items):
        if not isinstance(alert, dict):
            raise ConfigError("an alert must be a mapping", f"{path}: alerts[{i}]")
        labels = alert.get("labels", alert)
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ConfigError("labels must map names to strings", f"{path}: alerts[{i}].labels")
        out.append({**common, **labels})
    return out


def run_validate(args) -> int:
    from selfheal.policy import load_policy

    policy = load_policy(args.file)
    summary = {
        "file": args.file,
        "valid": True,
        "services": len(policy.services),
        "runbooks": len(policy.runbooks),
        "routes": len(policy.routes),
        "windows": len(policy.windows),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.file}: valid (version {policy.version}): {summary['services']} services, "
            f"{summary['runbooks']} runbooks, {summary['routes']} routes, "
            f"{summary['windows']} windows"
        )
    return 0


def run_explain(args) -> int:
    from selfheal.policy import MemoryState, Request, SQLiteState, evaluate, load_policy
    from selfheal.policy.inventory import inventory_from_data

    policy = load_policy(args.policy)
    labels_list = alerts_from(_read_data(args.alert, "alert"), args.alert)
    inventory = None
    if args.inventory:
        try:
            inventory = inventory_from_data(policy, _read_data(args.inventory, "inventory"))
        except ValueError as exc:
            raise ConfigError(str(exc), args.inventory) from exc
    now = parse_time(args.at)
    state = SQLiteState(args.state) if args.state else MemoryState()
    decisions = []
    for labels in labels_list:
        request = Request(
            labels=labels,
            inventory=inventory,
            requester=args.requester,
            break_glass=args.break_glass,
        )
        decisions.append((labels, evaluate(policy, request, state, now)))
    if args.format == "json":
        payload = [{"alert": labels, **d.to_dict()} for labels, d in decisions]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        for i, (labels, decision) in enumerate(decisions):
            if i:
                print()
            print(format_decision(labels, decision))
    return 0 if all(d.mode == "auto" for _, d in decisions) else 1


def format_decision(labels: dict[str, str], decision) -> str:
    name = labels.get("alertname", "(alert)")
    rest = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    lines = [f"alert     {name}{{{rest}}}", f"decision  {decision.mode.upper()}"]
    if decision.runbook:
        lines.append(f"runbook   {decision.runbook} (risk {decision.risk})")
    if decision.route:
        lines.append(f"route     {decision.route}")
    if decision.service or decision.target:
        env = f"  environment {decision.environment}" if decision.environment else ""
        service = f" (service {decision.service})" if decision.service else ""
        lines.append(f"target    {decision.target}{service}{env}")
    if decision.approvers:
        a = decision.approvers
        who = ", ".join([*sorted(a.users), *(f"@{g}" for g in sorted(a.groups))]) or "(nobody)"
        lines.append(
            f"approvers {who}; quorum {a.quorum}; on timeout ({a.to_dict()['timeout']})"
            f" {a.on_timeout}"
        )
    if decision.break_glass:
        lines.append(f"break-glass  {decision.break_glass_reason} (audited)")
    if decision.cost_alert:
        lines.append("cost      ALERT: over the daily cost budget")
    if decision.escalation:
        lines.append("escalate  " + " -> ".join(s["target"] for s in decision.escalation))
    if decision.incident:
        lines.append(f"incident  open one: {decision.incident['link']}")
    lines.append("reasons")
    width = max(len(r.code) for r in decision.reasons)
    for r in decision.reasons:
        lines.append(f"  {r.code:<{width}}  {r.effect:<8}  {r.message}")
    return "\n".join(lines)
