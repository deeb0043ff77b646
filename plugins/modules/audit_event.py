#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: audit_event
short_description: Write an explicit event to the selfheal tamper-evident audit trail
description:
  - Appends one hash-chained, HMAC-sealed record to the audit trail, for events that are no
    task result of their own, such as C(approval.granted) or C(break_glass.used).
  - Runs on the controller through its action plugin; the trail is the controller's.
  - Context not given as options comes from variables (C(selfheal_incident_id),
    C(selfheal_decision), C(selfheal_actor), C(awx_user_name), C(awx_job_id),
    C(selfheal_audit_trail), C(selfheal_audit_key_file)), then from the environment
    (C(SELFHEAL_INCIDENT_ID), C(SELFHEAL_DECISION), C(SELFHEAL_ACTOR),
    C(SELFHEAL_AUDIT_TRAIL), C(SELFHEAL_AUDIT_KEY_FILE), C(SELFHEAL_AUDIT_KEYS)).
  - Secrets are masked before the record is written; O(data) of a C(no_log) task is hidden.
  - The record is written in check mode too (marked C(check_mode)), since an audit trail of
    a dry run is still an audit trail.
version_added: 0.1.0
author: selfheal maintainers (@selfheal)
requirements:
  - the C(selfheal) Python package on the controller
options:
  event:
    description: What happened, as a dotted name (becomes the record's C(action)).
    type: str
    required: true
  target:
    description: What it concerns (a host, a service); defaults to the inventory host.
    type: str
  outcome:
    description: The result (for example C(granted), C(denied), C(used)).
    type: str
  decision:
    description: The decision behind it (for example C(approved)).
    type: str
  reasons:
    description: Why, as a list of sentences.
    type: list
    elements: str
    default: []
  data:
    description: Any further detail (secrets are masked).
    type: dict
    default: {}
  incident_id:
    description: The incident it belongs to.
    type: str
  run_id:
    description: The run it belongs to.
    type: str
  actor:
    description: Who acted; defaults to the variables and environment above, else the
      controller user.
    type: str
  trail:
    description: Audit trail directory on the controller.
    type: path
  key_file:
    description: Keyring file on the controller (mode 0600; generated on first use).
    type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The event is recorded in check mode too, marked C(check_mode).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: all
    details: The event is written on the controller, whatever the target.
notes:
  - The module file only documents the action and fails when run without its action plugin.
seealso:
  - name: selfheal audit documentation
    description: Record format, key rotation, verification.
    link: https://example.invalid/selfheal/selfheal/-/tree/main/docs/audit.md
"""

EXAMPLES = r"""
- name: Record the approval that lets the restart go ahead
  selfheal.core.audit_event:
    event: approval.granted
    target: "{{ inventory_hostname }}/nginx"
    decision: approved
    outcome: granted
    reasons:
      - "change CHG-1234 approved by the on-call lead"
    data:
      approver: "{{ approver }}"

- name: Record break-glass access
  selfheal.core.audit_event:
    event: break_glass.used
    outcome: used
    incident_id: INC-42
"""

RETURN = r"""
seq:
  description: Sequence number of the record written.
  returned: success
  type: int
  sample: 1042
hash:
  description: SHA-256 of the record written (the next record's C(prev)).
  returned: success
  type: str
  sample: 9f2c0e7d5b1a4e3f8c6d2b0a9e8f7c6d5b4a3e2f1d0c9b8a7e6f5d4c3b2a1f0e
trail:
  description: The trail directory written to.
  returned: success
  type: str
  sample: /var/lib/selfheal/audit
"""

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    event=dict(type="str", required=True),
    target=dict(type="str"),
    outcome=dict(type="str"),
    decision=dict(type="str"),
    reasons=dict(type="list", elements="str", default=[]),
    data=dict(type="dict", default={}),
    incident_id=dict(type="str"),
    run_id=dict(type="str"),
    actor=dict(type="str"),
    trail=dict(type="path"),
    key_file=dict(type="path"),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(
        msg="selfheal.core.audit_event writes the controller's audit trail through its action "
        "plugin; it cannot run as a module on a target"
    )


if __name__ == "__main__":
    main()
