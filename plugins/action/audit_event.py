# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import getpass
import os

from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

# One argument spec: the module file documents it, the action enforces it.
from ansible_collections.selfheal.core.plugins.modules.audit_event import ARGUMENT_SPEC

try:
    from selfheal.audit import AuditTrail, Keyring, record_hash, canonical
    from selfheal.audit.trail import default_trail

    HAS_SELFHEAL = True
except ImportError:
    HAS_SELFHEAL = False


class ActionModule(ActionBase):
    """Write the event on the controller (see the audit_event module's documentation)."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del validation
        if not HAS_SELFHEAL:
            result.update(
                failed=True,
                msg="selfheal.core.audit_event needs the selfheal Python package on the controller",
            )
            return result

        def context(option, var, env):
            value = args.get(option)
            if value in (None, ""):
                value = task_vars.get(var)
            if value in (None, ""):
                value = os.environ.get(env)
            return to_text(value) if value not in (None, "") else None

        user = (
            context("actor", "selfheal_actor", "SELFHEAL_ACTOR")
            or task_vars.get("awx_user_name")
            or task_vars.get("tower_user_name")
        )
        if not user:
            try:
                user = getpass.getuser()
            except Exception:
                user = None
        awx_job = task_vars.get("awx_job_id") or task_vars.get("tower_job_id")
        data = dict(args.get("data") or {})
        if self._task.check_mode:
            data["check_mode"] = True
        event = {
            "action": args["event"],
            "target": args.get("target") or to_text(task_vars.get("inventory_hostname")),
            "outcome": args.get("outcome"),
            "decision": context("decision", "selfheal_decision", "SELFHEAL_DECISION"),
            "reasons": args.get("reasons") or [],
            "incident_id": context("incident_id", "selfheal_incident_id", "SELFHEAL_INCIDENT_ID"),
            "run_id": context("run_id", "selfheal_run_id", "SELFHEAL_RUN_ID"),
            "actor": {
                "user": to_text(user) if user else None,
                "dispatcher": os.environ.get("SELFHEAL_DISPATCHER") or ("awx" if awx_job else None),
                "awx_job_id": to_text(awx_job) if awx_job is not None else None,
            },
            "data": data,
            "no_log": bool(self._task.no_log),
        }
        trail_dir = context("trail", "selfheal_audit_trail", "SELFHEAL_AUDIT_TRAIL") or to_text(
            default_trail()
        )
        key_file = context("key_file", "selfheal_audit_key_file", "SELFHEAL_AUDIT_KEY_FILE")
        warnings = []
        try:
            keyring = Keyring.load(key_file, notice=warnings.append)
            with AuditTrail(trail_dir, keyring) as trail:
                record = trail.append(event)
        except Exception as exc:
            result.update(
                failed=True,
                msg="could not write the audit event to %s: %s" % (trail_dir, to_text(exc)),
            )
            return result
        if warnings:
            result["warnings"] = warnings
        result.update(
            changed=True, seq=record["seq"], hash=record_hash(canonical(record)), trail=trail_dir
        )
        return result
