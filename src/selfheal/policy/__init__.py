"""The policy engine: one policy file decides, for every proposed remediation, whether it runs
automatically, waits for approval, is refused, or is left to a human -- and says why.

    policy = load_policy("policy.yml")
    decision = evaluate(policy, Request(labels=alert_labels), state, now)

The dispatcher, the `selfheal.core.remediation_gate` action plugin and the CLI all call
`evaluate`; see docs/policy.md for the file format and the guardrails.
"""

from selfheal.policy.approvals import (
    ApprovalResult,
    Approvals,
    approval_status,
    approve,
    open_approval,
)
from selfheal.policy.engine import (
    Decision,
    Reason,
    Request,
    begin_run,
    evaluate,
    finish_run,
    locate,
    record_decision,
)
from selfheal.policy.model import Policy, compile_policy, load_policy, parse_duration, schema
from selfheal.policy.state import Lock, MemoryState, SQLiteState, State

__all__ = [
    "ApprovalResult",
    "Approvals",
    "Decision",
    "Lock",
    "MemoryState",
    "Policy",
    "Reason",
    "Request",
    "SQLiteState",
    "State",
    "approval_status",
    "approve",
    "begin_run",
    "compile_policy",
    "evaluate",
    "finish_run",
    "load_policy",
    "locate",
    "open_approval",
    "parse_duration",
    "record_decision",
    "schema",
]
