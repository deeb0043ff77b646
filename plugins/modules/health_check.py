# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: health_check
short_description: Probe services with read-only health checks, with retries and N-of-M thresholds
version_added: "0.1.0"
description:
  - Runs a list of read-only health checks on the target (HTTP(S) endpoints, TCP ports,
    processes, commands, free disk space, PostgreSQL queries and composites of other checks)
    and reports whether the target is healthy.
  - Each check may retry with exponential backoff and full jitter, and may require N failures
    among the last M probes before it counts as unhealthy; that history is kept in a state file
    on the target, one entry per check name.
  - The module never changes anything it checks, so it always reports C(changed=false); writing
    the state file is not a change.
  - The checks are validated before anything is probed; an invalid check fails the task with a
    message naming the field, for example C(checks[2].retries) must be >= 0.
author:
  - selfheal maintainers (@selfheal)
attributes:
  check_mode:
    support: full
    description:
      - All probes are read-only and run in check mode, except C(command) checks, which are
        skipped unless they set O(checks[].read_only=true). The state file is not written.
  diff_mode:
    support: none
    description:
      - The module reports no differences.
options:
  checks:
    description:
      - The checks to run. Names must be unique; they key the N-of-M history in O(state_path)
        and the C(depends_on) lists of composite checks.
      - Besides the common suboptions, each check takes the suboptions of its O(checks[].kind)
        only; any other key is an error.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Unique name of the check.
          - For a C(process) check without O(checks[].pidfile) or O(checks[].process_name),
            also the name of the process to look for.
        type: str
        required: true
      kind:
        description:
          - What the check probes.
          - V(http) requests O(checks[].url) and checks the status, body, latency and
            certificate.
          - V(tcp) opens a TCP connection to O(checks[].host):O(checks[].port).
          - V(process) looks for a running process by name, or by the pid in a pidfile.
          - V(command) runs O(checks[].argv) (no shell) and checks its exit code and output.
          - V(disk) checks the free space and free inodes of the filesystem of
            O(checks[].path).
          - V(postgres) runs O(checks[].query) on a PostgreSQL server (needs psycopg or
            psycopg2 on the target, else the check is skipped).
          - V(composite) is healthy when all the checks in O(checks[].depends_on) are.
        type: str
        required: true
        choices: [http, tcp, process, command, disk, postgres, composite]
      timeout:
        description:
          - Seconds one probe attempt may take. Defaults to the module's O(timeout).
        type: float
      retries:
        description:
          - How many times a failed probe is tried again in the same run (0 = once only).
          - Only the final outcome counts towards the threshold history.
        type: int
        default: 0
      backoff:
        description:
          - Base delay in seconds between attempts. Before retry number C(n) (0-based) the
            module sleeps a random time between 0 and C(min(backoff_max, backoff * 2 ** n))
            (exponential backoff with full jitter). V(0) retries at once.
        type: float
        default: 0
      backoff_max:
        description:
          - Upper bound in seconds of one backoff delay.
        type: float
        default: 30
      threshold:
        description:
          - Report the check unhealthy only when at least O(checks[].threshold.failures) of the
            last O(checks[].threshold.window) probes (this one included) failed.
          - The outcomes are kept in O(state_path); skipped probes are not recorded. The history
            starts over when the kind or target of the check changes.
          - Without a threshold, the latest probe alone decides.
        type: dict
        suboptions:
          failures:
            description:
              - Failures in the window that make the check unhealthy (N).
            type: int
            required: true
          window:
            description:
              - Number of most recent probes looked at (M), from O(checks[].threshold.failures)
                to 1000.
            type: int
            required: true
      url:
        description:
          - C(http) checks. The V(http) or V(https) URL to request. Redirects are not followed
            and proxy settings are not used.
        type: str
      method:
        description:
          - C(http) checks. The request method.
        type: str
        choices: [GET, HEAD]
        default: GET
      expect_status:
        description:
          - C(http) checks. The response statuses that count as healthy.
        type: list
        elements: int
        default: [200]
      body_regex:
        description:
          - C(http) checks. A regular expression the response body must match (searched
            anywhere in the first MiB of the body).
        type: str
      json_path:
        description:
          - C(http) checks. A dotted path into the JSON response body, such as
            V(checks.db.status); a numeric part indexes a list.
          - Without O(checks[].json_expect) the value must exist and not be null.
        type: str
      json_expect:
        description:
          - C(http) checks. The value expected at O(checks[].json_path).
        type: raw
      max_latency_ms:
        description:
          - C(http) checks. Latency budget in milliseconds for the whole request (connect,
            TLS handshake, response). A slower response fails the check.
        type: float
      validate_certs:
        description:
          - C(http) checks. Whether to verify the server certificate and host name of V(https)
            URLs.
        type: bool
        default: true
      ca_path:
        description:
          - C(http) checks. A PEM file (or a directory of hashed certificates) of the
            certificate authorities to trust instead of the system ones.
        type: path
      cert_min_days:
        description:
          - C(http) checks with an V(https) URL. Fail when the server certificate expires in
            fewer than this many days. Works with O(checks[].validate_certs=false) too.
        type: float
      headers:
        description:
          - C(http) checks. Request headers.
        type: dict
      host:
        description:
          - C(tcp) checks, the host to connect to (required).
          - C(postgres) checks, the server host or socket directory.
        type: str
      port:
        description:
          - C(tcp) checks, the port to connect to (required).
          - C(postgres) checks, the server port.
        type: int
      process_name:
        description:
          - C(process) checks. The process to look for, matched against the process name
            (C(/proc/PID/comm)) and the base name of the first word of its command line.
            Defaults to O(checks[].name).
          - Mutually exclusive with O(checks[].pidfile).
        type: str
      pidfile:
        description:
          - C(process) checks. A file holding the pid of the process that must be running.
        type: path
      argv:
        description:
          - C(command) checks. The command and its arguments, run without a shell.
        type: list
        elements: str
      expect_rc:
        description:
          - C(command) checks. The exit code that counts as healthy.
        type: int
        default: 0
      stdout_regex:
        description:
          - C(command) checks. A regular expression the standard output must match.
        type: str
      read_only:
        description:
          - C(command) checks. Declares that the command changes nothing, so it also runs in
            check mode. Otherwise the check is skipped in check mode.
        type: bool
        default: false
      path:
        description:
          - C(disk) checks. A path on the filesystem to check.
        type: path
      min_free_percent:
        description:
          - C(disk) checks. Minimum free space, in percent of the filesystem size, available
            to unprivileged users.
        type: float
      min_free_inodes_percent:
        description:
          - C(disk) checks. Minimum free inodes, in percent.
        type: float
      dsn:
        description:
          - C(postgres) checks. A libpq connection string or URI. O(checks[].host),
            O(checks[].port), O(checks[].dbname), O(checks[].user) and O(checks[].password)
            override its parts. One of O(checks[].dsn) or O(checks[].host) is required.
        type: str
      dbname:
        description:
          - C(postgres) checks. The database name.
        type: str
      user:
        description:
          - C(postgres) checks. The user name.
        type: str
      password:
        description:
          - C(postgres) checks. The password. It is removed from the module's output, but the
            module logs its arguments on the target; prefer a C(~/.pgpass) file, or set
            C(no_log) on the task.
        type: str
      query:
        description:
          - C(postgres) checks. The query to run; the check passes when it runs without error.
        type: str
        default: SELECT 1
      depends_on:
        description:
          - C(composite) checks. Names of other checks in the same task. Their order in
            O(checks) does not matter; unknown names and cycles are errors.
          - The composite fails when a dependency fails, and is skipped when none fails but
            one is skipped.
        type: list
        elements: str
  state_path:
    description:
      - The JSON file on the target that keeps the recent outcomes of the checks that have a
        O(checks[].threshold). Only written when such a check ran, and never in check mode.
      - Entries of check names not in this task are kept.
    type: path
    default: ~/.ansible/selfheal/health_state.json
  fail_on_unhealthy:
    description:
      - Fail the task when any check fails. The message lists the failing checks and their
        reasons; the usual return values are still returned.
    type: bool
    default: false
  timeout:
    description:
      - Default for O(checks[].timeout), in seconds.
    type: float
    default: 10
notes:
  - Runs on the target, with the Python standard library only; the C(postgres) kind uses
    psycopg (3) or psycopg2 when one of them is installed.
  - C(process) checks read C(/proc) and work on Linux only.
seealso:
  - name: selfheal health checks
    description: User guide of the module (docs/health_check.md in the project).
    link: https://example.invalid/selfheal/selfheal/-/blob/main/docs/health_check.md
"""

EXAMPLES = r"""
- name: Check a selfheal HTTP health endpoint (status "ok" in the JSON body)
  selfheal.core.health_check:
    checks:
      - name: api
        kind: http
        url: http://127.0.0.1:8080/healthz
        expect_status: [200]
        json_path: status
        json_expect: ok
        max_latency_ms: 500
  register: api_health

- name: One sub-check of that endpoint, tolerating blips (unhealthy when 3 of the last 5 fail)
  selfheal.core.health_check:
    checks:
      - name: api-db
        kind: http
        url: https://api.example.com/healthz
        expect_status: [200, 503]
        json_path: checks.db.status
        json_expect: ok
        cert_min_days: 14
        retries: 2
        backoff: 0.5
        threshold:
          failures: 3
          window: 5

- name: Several kinds at once; fail the task when anything is unhealthy
  selfheal.core.health_check:
    fail_on_unhealthy: true
    timeout: 5
    checks:
      - name: web
        kind: composite
        depends_on: [nginx, port-443, root-disk]
      - name: nginx
        kind: process
        pidfile: /run/nginx.pid
      - name: port-443
        kind: tcp
        host: 127.0.0.1
        port: 443
      - name: root-disk
        kind: disk
        path: /
        min_free_percent: 10
        min_free_inodes_percent: 5
      - name: config
        kind: command
        argv: [nginx, -t]
        read_only: true
      - name: db
        kind: postgres
        host: 127.0.0.1
        port: 5432
        dbname: app
        user: monitor
        query: SELECT 1

- name: Act on the result
  ansible.builtin.debug:
    msg: "{{ api_health.unhealthy | join(', ') }} unhealthy ({{ api_health.fingerprint[:12] }})"
  when: not api_health.healthy
"""

RETURN = r"""
healthy:
  description: Whether no check has status V(fail). Skipped checks do not make it false.
  returned: success or failure under O(fail_on_unhealthy)
  type: bool
  sample: false
unhealthy:
  description: Names of the checks with status V(fail), in the order of O(checks).
  returned: success or failure under O(fail_on_unhealthy)
  type: list
  elements: str
  sample: [api]
fingerprint:
  description:
    - SHA-256 (hex) over the sorted names, kinds and targets of the failing checks; timings
      and reasons do not enter it. The same failures give the same fingerprint, so it can
      deduplicate alerts. When all is healthy it is the fingerprint of no failures.
  returned: success or failure under O(fail_on_unhealthy)
  type: str
  sample: 4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945
checks:
  description: One entry per check, in the order of O(checks).
  returned: success or failure under O(fail_on_unhealthy)
  type: list
  elements: dict
  contains:
    name:
      description: The check's name.
      type: str
      sample: api
    kind:
      description: The check's kind.
      type: str
      sample: http
    status:
      description:
        - V(ok), V(fail) or V(skipped) (not run in check mode, postgres driver missing, or
          a composite whose dependencies were skipped).
        - Under a threshold, V(fail) only when enough recent probes failed.
      type: str
      sample: fail
    latency_ms:
      description: Duration of the last probe attempt in milliseconds; null when not measured.
      type: float
      sample: 12.3
    reason:
      description: Why the check has its status, for example the budget a slow response broke.
      type: str
      sample: HTTP status 503, expected 200
    attempts:
      description: Probe attempts made in this run (0 when nothing was probed).
      type: int
      sample: 1
    window:
      description: The recent history, for checks with a threshold; null otherwise.
      type: dict
      sample:
        failures: 1
        probes: 5
        window: 5
        threshold: 3
        history: [ok, ok, fail, ok, ok]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfheal.core.plugins.module_utils.health_runner import (
    HealthCheckError,
    run_module,
    secret_values,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="dict", required=True),
            state_path=dict(type="path", default="~/.ansible/selfheal/health_state.json"),
            fail_on_unhealthy=dict(type="bool", default=False),
            timeout=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    module.no_log_values.update(secret_values(module.params["checks"]))
    try:
        result = run_module(module.params, check_mode=module.check_mode, warn=module.warn)
    except HealthCheckError as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
