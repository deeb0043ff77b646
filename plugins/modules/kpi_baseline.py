#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kpi_baseline
short_description: Learn a KPI's normal behaviour on the target and score new points
description:
  - Updates the baseline of one KPI series (latency, error rate, throughput) kept in a state
    file on the target with new points, and scores each new point against the baseline
    learned from the points before it, with a human reason such as
    C(p99 latency 3.1x its usual Tuesday 14:00 level).
  - The baseline learns daily and weekly seasonality, follows level shifts and keeps a
    constant amount of state per series. Points at or before the last point already learned
    are skipped, so the same file can be fed again as it grows.
  - Reports the highest-scoring new point and every anomalous one.
  - The state file uses the format of C(selfheal detect --state), so a baseline can move
    between the module and the command line.
version_added: 0.1.0
author: selfheal maintainers (@selfheal)
options:
  name:
    description: The KPI's name, the key of its baseline in the state file and the subject
      of the reasons.
    type: str
    required: true
  state_path:
    description: The state file on the target (JSON; created when missing).
    type: path
    default: ~/.ansible/selfheal/kpi_baseline.json
  series_path:
    description:
      - A CSV file on the target with rows C(timestamp,value); a header line is skipped.
      - Timestamps are epoch seconds or ISO 8601 (UTC unless an offset is given); an empty
        value or C(NaN) is a missing point.
      - Mutually exclusive with O(values).
    type: path
  values:
    description:
      - New points, each a C([timestamp, value]) pair, a dict with C(timestamp) and C(value),
        or a bare value.
      - Bare values are spaced O(step) seconds apart, the last one at the current time.
      - Mutually exclusive with O(series_path).
    type: list
    elements: raw
  step:
    description: Seconds between bare values of O(values).
    type: float
    default: 300
  kind:
    description: The kind of KPI; it sets which deviations count unless O(direction) does.
    type: str
    choices: [latency, error_rate, throughput, generic]
    default: generic
  direction:
    description: Which deviations count; defaults to V(up) for V(latency) and V(error_rate),
      V(both) otherwise.
    type: str
    choices: [up, down, both]
  threshold:
    description: The score in (0, 1) at or above which a point is anomalous (default 0.1).
    type: float
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The points are scored, but the state file is not written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Runs on the target with the Python standard library only.
  - C(changed) is true when new points were learned (or would be, in check mode).
seealso:
  - name: selfheal detection documentation
    description: The method, its parameters and its NAB scores.
    link: https://example.invalid/selfheal/selfheal/-/tree/main/docs/detection.md
"""

EXAMPLES = r"""
- name: Score the latest p99 latency against its baseline
  selfheal.core.kpi_baseline:
    name: p99 latency
    kind: latency
    values:
      - ["2026-03-03T14:00:00Z", 412.0]
  register: kpi

- name: Raise the anomaly
  ansible.builtin.debug:
    msg: "{{ kpi.reason }}"
  when: kpi.anomalous

- name: Learn from a whole exported series
  selfheal.core.kpi_baseline:
    name: checkout throughput
    kind: throughput
    series_path: /var/lib/metrics/checkout_rps.csv
    state_path: /var/lib/selfheal/kpi_baseline.json
"""

RETURN = r"""
anomalous:
  description: Whether any new point scored at or above the threshold.
  returned: success
  type: bool
  sample: true
score:
  description: The highest anomaly score of the new points, in [0, 1).
  returned: success
  type: float
  sample: 0.87
reason:
  description: Why the highest-scoring new point scored as it did.
  returned: success
  type: str
  sample: "p99 latency 3.1x its usual Tuesday 14:00 level (412 vs 133)"
timestamp:
  description: Epoch seconds of the highest-scoring new point; null without new points.
  returned: success
  type: float
  sample: 1772546400.0
value:
  description: Its value.
  returned: success
  type: float
  sample: 412.0
expected:
  description: What the baseline expected there.
  returned: success
  type: float
  sample: 133.0
anomalies:
  description: Every anomalous new point, oldest first.
  returned: success
  type: list
  elements: dict
  contains:
    timestamp:
      description: Epoch seconds.
      type: float
    value:
      description: The value.
      type: float
    score:
      description: The anomaly score.
      type: float
    anomalous:
      description: Always true here.
      type: bool
    expected:
      description: What the baseline expected.
      type: float
    context:
      description: Which baseline predicted (recent, hour of day, hour of week).
      type: str
    reason:
      description: The human reason.
      type: str
name:
  description: The KPI's name.
  returned: success
  type: str
  sample: p99 latency
points:
  description: Points given.
  returned: success
  type: int
  sample: 1
learned:
  description: New points with a value (points already learned and missing points excluded).
  returned: success
  type: int
  sample: 1
trained:
  description: Points the baseline has learned in all, this run included.
  returned: success
  type: int
  sample: 2016
threshold:
  description: The threshold used.
  returned: success
  type: float
  sample: 0.1
state_path:
  description: The state file.
  returned: success
  type: str
  sample: /root/.ansible/selfheal/kpi_baseline.json
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.selfheal.core.plugins.module_utils.kpi_runner import (
    KpiBaselineError,
    run_module,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state_path=dict(type="path", default="~/.ansible/selfheal/kpi_baseline.json"),
            series_path=dict(type="path"),
            values=dict(type="list", elements="raw"),
            step=dict(type="float", default=300),
            kind=dict(
                type="str",
                default="generic",
                choices=["latency", "error_rate", "throughput", "generic"],
            ),
            direction=dict(type="str", choices=["up", "down", "both"]),
            threshold=dict(type="float"),
        ),
        mutually_exclusive=[["series_path", "values"]],
        required_one_of=[["series_path", "values"]],
        supports_check_mode=True,
    )
    try:
        result = run_module(module.params, check_mode=module.check_mode)
    except KpiBaselineError as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
