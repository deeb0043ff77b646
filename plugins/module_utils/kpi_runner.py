# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What kpi_baseline does: read the points, update the baseline in the state file, report.

Stdlib only; Python 3.9 syntax. The state file holds ``{"series": {name: state}}``, the
format ``selfheal detect --state`` uses too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import json
import math
import os
import tempfile
import time
from datetime import datetime, timezone

from ansible_collections.selfheal.core.plugins.module_utils.kpi_detector import (
    KIND_DIRECTION,
    DetectorConfig,
    KpiDetector,
)


class KpiBaselineError(Exception):
    def __init__(self, msg, **result):
        super(KpiBaselineError, self).__init__(msg)
        self.msg = msg
        self.result = result


def parse_time(value):
    """Epoch seconds from a number or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise ValueError("not a time: %r" % (value,))
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def parse_value(value):
    """A float, or None for a missing point (null, empty, NaN)."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise ValueError("not a number: %r" % (value,))
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        if text.lower() in ("", "nan", "null", "none", "na"):
            return None
        number = float(text)
    return None if math.isnan(number) else number


def read_series_file(path):
    points = []
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < 2:
                raise ValueError("%s:%d: expected timestamp,value" % (path, number))
            try:
                points.append((parse_time(row[0]), parse_value(row[1])))
            except ValueError:
                if number == 1:
                    continue  # header
                raise ValueError("%s:%d: bad row %r" % (path, number, ",".join(row))) from None
    return points


def parse_values(values, now, step):
    """Items are [timestamp, value] pairs, {timestamp, value} dicts or bare values.

    Bare values are spaced ``step`` seconds apart, the last one at ``now``.
    """
    points = []
    bare = [item for item in values if not isinstance(item, (list, tuple, dict))]
    k = 0
    for index, item in enumerate(values):
        try:
            if isinstance(item, dict):
                if "timestamp" not in item or "value" not in item:
                    raise ValueError("needs timestamp and value")
                points.append((parse_time(item["timestamp"]), parse_value(item["value"])))
            elif isinstance(item, (list, tuple)):
                if len(item) != 2:
                    raise ValueError("needs [timestamp, value]")
                points.append((parse_time(item[0]), parse_value(item[1])))
            else:
                t = now - (len(bare) - 1 - k) * step
                k += 1
                points.append((t, parse_value(item)))
        except (TypeError, ValueError) as exc:
            raise KpiBaselineError("values[%d]: %s" % (index, exc)) from None
    return points


def load_state(path):
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or not isinstance(data.get("series", {}), dict):
        raise ValueError("not a KPI baseline state file")
    return data.get("series", {})


def save_state(path, series):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=".kpi-baseline-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"series": series}, handle)
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_module(params, check_mode=False, now=None):
    """The module's result dict; raises KpiBaselineError with the message on bad input."""
    now = time.time() if now is None else now
    name = params["name"]
    kind = params["kind"]
    if params.get("series_path"):
        try:
            points = read_series_file(params["series_path"])
        except (OSError, ValueError) as exc:
            raise KpiBaselineError("cannot read series_path: %s" % exc) from None
    else:
        points = parse_values(params.get("values") or [], now, params["step"])
    overrides = {"direction": params.get("direction") or KIND_DIRECTION[kind]}
    if params.get("threshold") is not None:
        overrides["alarm"] = params["threshold"]
    try:
        config = DetectorConfig(**overrides)
    except ValueError as exc:
        raise KpiBaselineError(str(exc)) from None
    state_path = params["state_path"]
    try:
        states = load_state(state_path)
    except (OSError, ValueError) as exc:
        raise KpiBaselineError("cannot read state_path: %s" % exc) from None
    if name in states:
        try:
            detector = KpiDetector.from_state(states[name], config)
        except ValueError as exc:
            raise KpiBaselineError("state_path, series %s: %s" % (name, exc)) from None
    else:
        detector = KpiDetector(config, name=name, kind=kind)
    detector.name = name
    last_t = detector.last_t
    worst = None
    anomalies = []
    learned = 0
    for t, value in sorted(points, key=lambda p: p[0]):
        if not math.isnan(last_t) and t <= last_t:
            continue  # learned already
        found = detector.step(t, value)
        if found["value"] is not None:
            learned += 1
        if worst is None or found["score"] >= worst["score"]:
            worst = found
        if found["anomalous"]:
            anomalies.append(found)
    changed = learned > 0
    if changed and not check_mode:
        states[name] = detector.to_state()
        try:
            save_state(state_path, states)
        except OSError as exc:
            raise KpiBaselineError("cannot write state_path: %s" % exc) from None
    result = {
        "changed": changed,
        "name": name,
        "points": len(points),
        "learned": learned,
        "trained": detector.n,
        "score": worst["score"] if worst else 0.0,
        "anomalous": bool(anomalies),
        "reason": worst["reason"] if worst else "%s: no new points" % name,
        "timestamp": worst["timestamp"] if worst else None,
        "value": worst["value"] if worst else None,
        "expected": worst["expected"] if worst else None,
        "anomalies": anomalies,
        "threshold": config.alarm,
        "state_path": state_path,
    }
    return result
