# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: audit
type: notification
short_description: Record plays and tasks in the selfheal tamper-evident audit trail
description:
  - Appends one hash-chained, HMAC-sealed record for every play start and end, for every
    task result on every host (ok, changed, failed, unreachable, skipped) with its diff when
    there is one, and for the end of the playbook with its per-host stats.
  - Records carry the remediation context that the dispatcher or AWX passes through
    environment variables or extra vars (C(selfheal_incident_id), C(selfheal_runbook),
    C(selfheal_decision), C(selfheal_actor); AWX's C(awx_job_id) and C(awx_user_name)).
  - Secrets never enter a record. Results of C(no_log) tasks are hidden and known secret
    shapes (passwords, tokens, bearer headers, AWS keys, private keys, DSN passwords) masked.
  - The callback never breaks a play. When the trail cannot be written it warns and keeps
    the record in the spool directory; the next append retries it first.
  - Needs the C(selfheal) Python package on the controller; without it the callback warns
    and disables itself.
author: selfheal maintainers (@selfheal)
version_added: 0.1.0
requirements:
  - the C(selfheal) Python package on the controller
  - enabling in configuration (C(callbacks_enabled = selfheal.core.audit))
options:
  trail:
    description:
      - Directory of the audit trail.
      - Defaults to C($XDG_STATE_HOME/selfheal/audit) (C(~/.local/state/selfheal/audit)).
    type: path
    env:
      - name: SELFHEAL_AUDIT_TRAIL
    ini:
      - section: callback_selfheal_audit
        key: trail
  key_file:
    description:
      - Keyring file (JSON, mode 0600); generated on first use when missing.
      - The environment variable C(SELFHEAL_AUDIT_KEYS) takes precedence over any file.
      - Defaults to C(~/.config/selfheal/audit-keys.json).
    type: path
    env:
      - name: SELFHEAL_AUDIT_KEY_FILE
    ini:
      - section: callback_selfheal_audit
        key: key_file
  spool_dir:
    description:
      - Where records that could not be appended wait for the next append.
      - Defaults to C(.spool) beside the trail directory's name (C(<trail>.spool)).
    type: path
    env:
      - name: SELFHEAL_AUDIT_SPOOL
    ini:
      - section: callback_selfheal_audit
        key: spool_dir
  actor:
    description:
      - Who acts (the user); defaults to AWX's C(awx_user_name), else the controller user.
    type: str
    env:
      - name: SELFHEAL_ACTOR
    ini:
      - section: callback_selfheal_audit
        key: actor
  dispatcher:
    description: What dispatched the run (for example C(selfheal-dispatcher) or C(awx)).
    type: str
    env:
      - name: SELFHEAL_DISPATCHER
    ini:
      - section: callback_selfheal_audit
        key: dispatcher
  incident_id:
    description: Incident the run remediates; the extra var C(selfheal_incident_id) wins.
    type: str
    env:
      - name: SELFHEAL_INCIDENT_ID
    ini:
      - section: callback_selfheal_audit
        key: incident_id
  runbook:
    description: Runbook being executed; the extra var C(selfheal_runbook) wins.
    type: str
    env:
      - name: SELFHEAL_RUNBOOK
    ini:
      - section: callback_selfheal_audit
        key: runbook
  decision:
    description: Decision that allowed the run (for example C(auto) or C(approved)); the
      extra var C(selfheal_decision) wins.
    type: str
    env:
      - name: SELFHEAL_DECISION
    ini:
      - section: callback_selfheal_audit
        key: decision
  run_id:
    description: Id of this run; a random one when not given.
    type: str
    env:
      - name: SELFHEAL_RUN_ID
    ini:
      - section: callback_selfheal_audit
        key: run_id
"""

import getpass
import os
import uuid

from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.callback import CallbackBase

try:
    from selfheal.audit import AuditTrail, Keyring
    from selfheal.audit.trail import default_trail

    HAS_SELFHEAL = True
except ImportError:
    HAS_SELFHEAL = False

MAX_TEXT = 4000


def _short(value):
    text = to_text(value, errors="surrogate_or_replace")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "...(truncated)"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "selfheal.core.audit"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display=display)
        self._trail = None
        self._context = {}
        self._play = None
        self._playbook = None
        self._failed_open = False
        if not HAS_SELFHEAL:
            self._display.warning(
                "selfheal.core.audit: the selfheal Python package is not installed on the "
                "controller; the audit callback is disabled"
            )
            self.disabled = True

    # -- plumbing ---------------------------------------------------------------------

    def _option(self, name):
        try:
            return self.get_option(name)
        except KeyError:
            return None

    def _open(self):
        if self._trail is not None or self._failed_open:
            return self._trail
        trail = self._option("trail") or str(default_trail())
        spool = self._option("spool_dir") or trail.rstrip("/") + ".spool"
        try:
            keyring = Keyring.load(self._option("key_file"), notice=self._display.warning)
            self._trail = AuditTrail(trail, keyring, spool_dir=spool)
        except Exception as exc:  # never break the play
            self._failed_open = True
            self._display.warning(
                "selfheal.core.audit: cannot open the audit trail %s: %s" % (trail, to_text(exc))
            )
        return self._trail

    def _record(self, action, target=None, outcome=None, data=None):
        if self.disabled:
            return
        ctx = self._context
        event = {
            "action": action,
            "target": target,
            "outcome": outcome,
            "actor": ctx.get("actor"),
            "incident_id": ctx.get("incident_id"),
            "decision": ctx.get("decision"),
            "run_id": ctx.get("run_id"),
            "reasons": ctx.get("reasons") or [],
            "data": dict(data or {}, runbook=ctx.get("runbook")),
        }
        try:
            trail = self._open()
            if trail is None:
                from selfheal.audit import spool_event

                spool = self._option("spool_dir") or (
                    (self._option("trail") or str(default_trail())).rstrip("/") + ".spool"
                )
                spool_event(spool, event)
                return
            _record, error = trail.append_or_spool(event)
            if error is not None:
                self._display.warning(
                    "selfheal.core.audit: could not append to the audit trail (%s); the "
                    "record was %s" % (to_text(error), "spooled" if trail.spool_dir else "lost")
                )
        except Exception as exc:  # never break the play
            self._display.warning("selfheal.core.audit: audit record failed: %s" % to_text(exc))

    def _set_context(self, play):
        extra = {}
        try:
            extra = dict(play.get_variable_manager().extra_vars)
        except Exception:
            extra = {}
        if self._context:
            # extra vars are the same for every play of a run; keep the first resolution
            return

        def pick(var, option):
            value = extra.get(var)
            return to_text(value) if value not in (None, "") else self._option(option)

        awx_job = extra.get("awx_job_id") or extra.get("tower_job_id")
        if awx_job is None and (os.environ.get("AWX_HOST") or os.environ.get("TOWER_HOST")):
            awx_job = os.environ.get("JOB_ID")
        user = (
            pick("selfheal_actor", "actor")
            or extra.get("awx_user_name")
            or extra.get("tower_user_name")
        )
        if not user:
            try:
                user = getpass.getuser()
            except Exception:
                user = None
        reasons = extra.get("selfheal_reasons") or []
        if not isinstance(reasons, list):
            reasons = [to_text(reasons)]
        self._context = {
            "actor": {
                "user": to_text(user) if user else None,
                "dispatcher": self._option("dispatcher") or ("awx" if awx_job else None),
                "awx_job_id": to_text(awx_job) if awx_job is not None else None,
            },
            "incident_id": pick("selfheal_incident_id", "incident_id"),
            "runbook": pick("selfheal_runbook", "runbook"),
            "decision": pick("selfheal_decision", "decision"),
            "reasons": [to_text(r) for r in reasons],
            "run_id": self._option("run_id") or to_text(uuid.uuid4()),
        }

    # -- plays --------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        self._playbook = os.path.basename(to_text(getattr(playbook, "_file_name", "") or ""))

    def _end_play(self):
        if self._play is not None:
            name, hosts = self._play
            self._record("play.end", target=hosts, data={"play": name, "playbook": self._playbook})
            self._play = None

    def v2_playbook_on_play_start(self, play):
        self._set_context(play)
        self._end_play()
        name = to_text(play.get_name()).strip()
        hosts = play.hosts
        hosts = ",".join(to_text(h) for h in hosts) if isinstance(hosts, list) else to_text(hosts)
        self._play = (name, hosts)
        self._record(
            "play.start",
            target=hosts,
            data={"play": name, "playbook": self._playbook, "check_mode": bool(play.check_mode)},
        )

    def v2_playbook_on_stats(self, stats):
        self._end_play()
        summary = {}
        for host in sorted(stats.processed.keys()):
            summary[host] = stats.summarize(host)
        failed = any(s.get("failures") or s.get("unreachable") for s in summary.values())
        self._record(
            "playbook.end",
            target=",".join(summary) or None,
            outcome="failed" if failed else "ok",
            data={"playbook": self._playbook, "stats": summary},
        )
        if self._trail is not None:
            try:
                self._trail.close()
            except Exception as exc:
                self._display.warning("selfheal.core.audit: closing the trail: %s" % to_text(exc))
            self._trail = None

    # -- tasks --------------------------------------------------------------------------

    def _task_event(self, result, outcome, extra=None):
        task = result._task
        res = result._result if isinstance(result._result, dict) else {}
        no_log = bool(getattr(task, "no_log", False)) or bool(res.get("_ansible_no_log"))
        data = {
            "task": to_text(task.get_name()).strip(),
            "task_uuid": to_text(task._uuid),
            "module": to_text(task.action),
            "play": self._play[0] if self._play else None,
            "changed": bool(res.get("changed")),
        }
        if getattr(task, "check_mode", False):
            data["check_mode"] = True
        if no_log:
            data["no_log"] = True
            data["result"] = {"censored": "hidden: no_log"}
        else:
            for key in ("msg", "rc", "stderr", "reason", "skip_reason", "false_condition"):
                if res.get(key) not in (None, ""):
                    data[key] = _short(res[key])
            if res.get("diff"):
                data["diff"] = res["diff"]
            if isinstance(res.get("results"), list):
                data["items"] = [
                    {
                        "changed": bool(r.get("changed")),
                        "failed": bool(r.get("failed")),
                        "skipped": bool(r.get("skipped")),
                    }
                    for r in res["results"]
                    if isinstance(r, dict)
                ]
        if extra:
            data.update(extra)
        self._record("task", target=to_text(result._host.get_name()), outcome=outcome, data=data)

    def v2_runner_on_ok(self, result):
        self._task_event(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task_event(result, "failed", {"ignore_errors": bool(ignore_errors)})

    def v2_runner_on_unreachable(self, result):
        self._task_event(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._task_event(result, "skipped")

    def v2_runner_on_async_failed(self, result):
        self._task_event(result, "failed", {"async": True})
