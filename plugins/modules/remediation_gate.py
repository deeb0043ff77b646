#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: remediation_gate
short_description: Ask the selfheal policy whether a remediation step may run
description:
  - Evaluates the selfheal remediation policy on the controller for one proposed action
    (runbook, target, service, alert labels) and returns its decision - C(auto), C(approval),
    C(manual) or C(deny) - with every reason.
  - Call it before a risky step. By default (O(fail_on_deny=true)) the task fails unless the
    decision is C(auto), with the reasons in the message; with O(fail_on_deny=false) it
    returns the decision for the play to branch on.
  - Known targets are the play's inventory. A target's compliance tags come from its host
    variable C(selfheal_tags) (a list of names or C(name=value), or a mapping) and from the
    host variables the policy names in C(compliance.tag_vars).
  - The alert labels are untrusted data; they only select among what the policy already names.
  - Guardrails that count runs, failures, locks and cost read the shared state database
    (O(state_path)); without one they see an empty history.
version_added: 0.1.0
author: selfheal maintainers (@selfheal)
requirements:
  - the C(selfheal) Python package on the controller
options:
  runbook:
    description: The runbook (a name in the policy's C(runbooks)) this step carries out.
    type: str
    required: true
  target:
    description: The host acted on; defaults to the inventory host. It must be in the inventory.
    type: str
  service:
    description: The service (a name in the policy's C(services)) the target belongs to.
    type: str
  alert_labels:
    description: Labels of the alert that triggered the remediation.
    type: dict
    default: {}
  policy_path:
    description:
      - Policy file on the controller.
      - Defaults to the C(SELFHEAL_POLICY) environment variable.
    type: path
  state_path:
    description:
      - SQLite state database on the controller, shared with the dispatcher.
      - Defaults to the C(SELFHEAL_STATE) environment variable; without either the state is
        empty.
    type: path
  fail_on_deny:
    description: Fail the task unless the decision is C(auto).
    type: bool
    default: true
  requester:
    description:
      - Who asks (approvals refuse self-approval). Defaults to C(SELFHEAL_REQUESTER), else the
        AWX / Automation Controller user who launched the job (C(awx_user_name)), else the
        local user running the play. Every request has a requester.
    type: str
  request_id:
    description: Identifier of the request, for approvals and the audit trail.
    type: str
  break_glass:
    description:
      - Ask to override a freeze window, with this reason. The decision then needs approval
        and carries C(break_glass=true) for the audit trail.
    type: str
  at:
    description: Decide as of this ISO 8601 time instead of now (what-if checks, tests).
    type: str
attributes:
  check_mode:
    description: Can run in check mode and return the same decision without changing anything.
    support: full
    details: Only evaluates; nothing changes in either mode.
  diff_mode:
    description: Would return details on what has changed in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: all
notes:
  - The module file only documents the action and fails when run without its action plugin.
seealso:
  - name: selfheal policy documentation
    description: Policy file format, modes, freeze windows and guardrails.
    link: https://example.invalid/selfheal/selfheal/-/tree/main/docs/policy.md
"""

EXAMPLES = r"""
- name: Stop here unless the policy lets the restart run automatically
  selfheal.core.remediation_gate:
    runbook: restart_service
    service: web
    alert_labels: "{{ alert.labels | default({}) }}"

- name: Ask, and branch on the answer
  selfheal.core.remediation_gate:
    runbook: failover_db
    service: db
    target: db-01
    policy_path: /etc/selfheal/policy.yml
    state_path: /var/lib/selfheal/state.db
    fail_on_deny: false
  register: gate

- name: Fail over only when allowed
  ansible.builtin.debug:
    msg: "failing over"
  when: gate.mode == 'auto'

- name: Say why not
  ansible.builtin.debug:
    msg: "{{ gate.reasons | map(attribute='message') | list }}"
  when: gate.mode != 'auto'
"""

RETURN = r"""
mode:
  description: The decision - C(auto), C(approval), C(manual) or C(deny).
  returned: always
  type: str
  sample: auto
allowed:
  description: Whether the step may run now (the mode is C(auto)).
  returned: always
  type: bool
  sample: true
reasons:
  description: Every reason, in evaluation order.
  returned: always
  type: list
  elements: dict
  contains:
    code:
      description: Reason code, for example C(freeze), C(budget), C(blast_radius), C(compliance).
      type: str
    message:
      description: The explanation.
      type: str
    effect:
      description: What the reason asks for - C(info), C(auto), C(approval), C(manual), C(deny).
      type: str
  sample: [{"code": "risk_tier", "message": "risk low: runs automatically", "effect": "auto"}]
request_id:
  description: Identifier of the request (given, or derived from its content and time).
  returned: always
  type: str
  sample: req-1f2e3d4c5b6a7988
break_glass:
  description: Whether the decision overrides a freeze by break-glass (needs approval; audit it).
  returned: always
  type: bool
  sample: false
decision:
  description: The whole decision (runbook, service, target, environment, risk, approvers,
    escalation, incident, cost alert, windows, reasons).
  returned: always
  type: dict
  sample: {"mode": "auto", "runbook": "restart_service", "target": "web-01", "risk": "low"}
"""

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    runbook=dict(type="str", required=True),
    target=dict(type="str"),
    service=dict(type="str"),
    alert_labels=dict(type="dict", default={}),
    policy_path=dict(type="path"),
    state_path=dict(type="path"),
    fail_on_deny=dict(type="bool", default=True),
    requester=dict(type="str"),
    request_id=dict(type="str"),
    break_glass=dict(type="str"),
    at=dict(type="str"),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(
        msg="selfheal.core.remediation_gate evaluates the policy on the controller through its "
        "action plugin; it cannot run as a module on a target"
    )


if __name__ == "__main__":
    main()
