# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import getpass
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

# One argument spec: the module file documents it, the action enforces it.
from ansible_collections.selfheal.core.plugins.modules.remediation_gate import ARGUMENT_SPEC

try:
    from selfheal.errors import SelfhealError
    from selfheal.policy import MemoryState, Request, SQLiteState, evaluate, load_policy
    from selfheal.policy.model import parse_time
    from selfheal.policy.inventory import tags_from_hostvars

    HAS_SELFHEAL = True
    SELFHEAL_IMPORT_ERROR = None
except ImportError as exc:
    HAS_SELFHEAL = False
    SELFHEAL_IMPORT_ERROR = exc


class ActionModule(ActionBase):
    """Ask the selfheal policy whether a remediation step may run (see the module docs)."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def _hostvars(self, task_vars, host):
        hostvars = task_vars.get("hostvars") or {}
        try:
            return dict(hostvars[host])
        except Exception:
            return None

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del validation
        if not HAS_SELFHEAL:
            raise AnsibleActionFail(
                "selfheal.core.remediation_gate needs the selfheal Python package on the "
                "controller (pip install selfheal): %s" % to_text(SELFHEAL_IMPORT_ERROR)
            )

        policy_path = args.get("policy_path") or os.environ.get("SELFHEAL_POLICY")
        if not policy_path:
            raise AnsibleActionFail(
                "no policy: set the policy_path option or the SELFHEAL_POLICY environment variable"
            )
        state_path = args.get("state_path") or os.environ.get("SELFHEAL_STATE")
        target = args.get("target") or to_text(task_vars.get("inventory_hostname"))
        labels = dict((to_text(k), to_text(v)) for k, v in (args.get("alert_labels") or {}).items())
        try:
            policy = load_policy(policy_path)
            now = parse_time(args.get("at"))
        except SelfhealError as exc:
            raise AnsibleActionFail("remediation_gate: %s" % to_text(exc)) from exc

        # Known hosts are the play's inventory; tags come from each host's variables.
        all_hosts = list((task_vars.get("groups") or {}).get("all") or [])
        service = args.get("service")
        need_all = bool(
            service and service in policy.services and policy.services[service].hosts is None
        )
        inventory = {}
        for host in all_hosts:
            if host == target or need_all:
                hostvars = self._hostvars(task_vars, host)
                inventory[host] = tags_from_hostvars(policy, hostvars) if hostvars else {}
            else:
                inventory[host] = {}
        if target not in inventory and target == task_vars.get("inventory_hostname"):
            inventory[target] = tags_from_hostvars(policy, task_vars)

        request = Request(
            labels=labels,
            runbook=args["runbook"],
            target=target,
            service=service,
            requester=self._requester(args, task_vars),
            request_id=args.get("request_id"),
            inventory=inventory,
            break_glass=args.get("break_glass"),
        )
        state = None
        try:
            state = SQLiteState(state_path) if state_path else MemoryState()
            decision = evaluate(policy, request, state, now)
        except SelfhealError as exc:
            raise AnsibleActionFail("remediation_gate: %s" % to_text(exc)) from exc
        finally:
            if state is not None and hasattr(state, "close"):
                state.close()

        payload = decision.to_dict()
        blocking = [
            r for r in payload["reasons"] if r["effect"] != "info" and r["effect"] != "auto"
        ]
        result.update(
            changed=False,
            decision=payload,
            mode=decision.mode,
            allowed=decision.mode == "auto",
            reasons=payload["reasons"],
            request_id=decision.request_id,
            break_glass=decision.break_glass,
        )
        if decision.mode != "auto" and args["fail_on_deny"]:
            why = "; ".join("%s: %s" % (r["code"], r["message"]) for r in blocking)
            result.update(
                failed=True,
                msg="remediation_gate: %s is %s for %s (%s)"
                % (decision.runbook, decision.mode, target, why or "no reason given"),
            )
        return result

    @staticmethod
    def _requester(args, task_vars):
        """Who asks: given, else the launching AWX user, else the local user; never nobody
        (an approval without a requester could be approved by whoever raised it)."""
        for value in (
            args.get("requester"),
            os.environ.get("SELFHEAL_REQUESTER"),
            task_vars.get("awx_user_name"),
            task_vars.get("tower_user_name"),
        ):
            if value:
                return to_text(value)
        try:
            return "local:" + getpass.getuser()
        except (KeyError, OSError):
            return "local:uid-%d" % os.getuid()
