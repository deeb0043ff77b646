"""Test data for the policy engine: a small policy built in code."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from selfheal.policy import compile_policy

WEB_HOSTS = [f"web-{i:02d}" for i in range(1, 11)]

BASE = {
    "version": 1,
    "risk_tiers": {
        "high": {"mode": "approval", "approval": {"users": ["alice"], "groups": ["sre-leads"]}},
    },
    "break_glass": {"groups": ["incident-commanders"], "quorum": 2, "timeout": "15m"},
    "limits": {
        "runs_per_target": {"count": 3, "per": "1h"},
        "max_unhealthy": "30%",
        "storm_cooldown": "15m",
        "circuit_breaker": {"failures": 3, "window": "1h", "cooldown": "10m"},
        "escalate_after_failures": 5,
    },
    "compliance": {"required_tags": ["selfheal_managed"]},
    "services": {
        "web": {"hosts": WEB_HOSTS, "environment": "prod", "escalation": "pd:web"},
        "db": {"hosts": ["db-01", "db-02"], "environment": "prod", "max_unhealthy": 1},
    },
    "runbooks": {
        "restart": {"playbook": "restart.yml", "risk": "low", "cost": 1},
        "clear_disk": {"playbook": "clear.yml", "risk": "medium"},
        "failover": {"job_template": "Failover", "risk": "high", "cost": 10},
        "rebuild": {"job_template": "Rebuild", "risk": "critical", "url": "https://rb/rebuild"},
    },
    "routes": [
        {
            "name": "web-down",
            "match": {"alertname": "Down", "service": "web"},
            "runbook": "restart",
        },
        {"name": "db-down", "match": {"alertname": "Down", "service": "db"}, "runbook": "failover"},
        {"name": "disk", "match_re": {"alertname": "Disk.*"}, "runbook": "clear_disk"},
        {
            "name": "brain",
            "match": {"alertname": "SplitBrain"},
            "service": "db",
            "escalate": [{"target": "dba", "timeout": "15m"}, {"target": "cto"}],
        },
    ],
}

INVENTORY = {h: {"selfheal_managed": True} for h in [*WEB_HOSTS, "db-01", "db-02"]}
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # a Wednesday


def make_policy(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        data[key] = value
    return compile_policy(data)
