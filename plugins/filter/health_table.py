# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that summarise registered health_check results across hosts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence
from ansible.module_utils.six import string_types

# One row per host: its verdict and, when not healthy, what failed.
VERDICT_HEALTHY = "healthy"
VERDICT_UNHEALTHY = "UNHEALTHY"
VERDICT_UNREACHABLE = "UNREACHABLE"
VERDICT_NO_CHECKS = "no checks"
VERDICT_ERROR = "ERROR"


def _rows(hosts, hostvars, result_var):
    if not is_sequence(hosts) or isinstance(hosts, string_types):
        raise AnsibleFilterError("health_table: the input must be a list of host names")
    rows = []
    for host in sorted(hosts):
        try:
            result = hostvars[host].get(result_var)
        except KeyError:
            raise AnsibleFilterError("health_table: %s is not in hostvars" % host) from None
        rows.append((host, *_verdict(result)))
    return rows


def _verdict(result):
    """(verdict, detail) for one host's registered result."""
    if not isinstance(result, dict) or (result.get("skipped") and "healthy" not in result):
        return VERDICT_NO_CHECKS, "no health_checks defined for this host"
    if result.get("unreachable"):
        lines = str(result.get("msg", "")).strip().splitlines()
        return VERDICT_UNREACHABLE, lines[0] if lines else "host unreachable"
    if "healthy" not in result:
        return VERDICT_ERROR, str(result.get("msg", "the health check did not run"))
    if result["healthy"]:
        total = len(result.get("checks", []))
        return VERDICT_HEALTHY, "%d check%s passed" % (total, "" if total == 1 else "s")
    failing = [
        "%s (%s)" % (check.get("name"), check.get("reason") or check.get("status"))
        for check in result.get("checks", [])
        if check.get("status") == "fail"
    ]
    return VERDICT_UNHEALTHY, "; ".join(failing) or "unhealthy"


def health_table(hosts, hostvars, result_var="health_result"):
    """Lines of a fixed-width table: HOST, STATUS, DETAIL, one row per host."""
    rows = [("HOST", "STATUS", "DETAIL"), *_rows(hosts, hostvars, result_var)]
    widths = [max(len(str(row[i])) for row in rows) for i in (0, 1)]
    return [
        "%s  %s  %s" % (str(h).ljust(widths[0]), str(v).ljust(widths[1]), d) for h, v, d in rows
    ]


def health_failing(hosts, hostvars, result_var="health_result"):
    """Hosts whose checks failed, could not be reached, or errored."""
    return [
        host
        for host, verdict, _detail in _rows(hosts, hostvars, result_var)
        if verdict in (VERDICT_UNHEALTHY, VERDICT_UNREACHABLE, VERDICT_ERROR)
    ]


class FilterModule(object):
    def filters(self):
        return {"health_table": health_table, "health_failing": health_failing}
