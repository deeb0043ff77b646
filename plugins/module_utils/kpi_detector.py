# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The KPI baselining detector for targets: stdlib only, Python 3.9 syntax.

The same algorithm and state format as the controller's ``selfheal.baseline`` (a test keeps
the two in step), so a state file can move between the module and ``selfheal detect``.
Strictly online: a point is scored from the points before it, then learned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday
KINDS = ("latency", "error_rate", "throughput", "generic")
KIND_DIRECTION = {"latency": "up", "error_rate": "up", "throughput": "both", "generic": "both"}
STATE_VERSION = 1

DEFAULTS = (
    ("level_alpha", 0.1),
    ("error_alpha", 0.02),
    ("season_alpha", 0.25),
    ("season_min_visits", 3),
    ("spread_alpha", 0.01),
    ("spread_floor", 0.02),
    ("surprise_cap", 1000.0),
    ("record_decay", 0.9995),
    ("surprise_weight", 0.1),
    ("drift_weight", 0.2),
    ("block", 144),
    ("blocks", 8),
    ("warmup", 100),
    ("alarm", 0.1),
    ("hold", 150),
    ("escalate", 1.5),
    ("direction", "both"),
)


class DetectorConfig(object):
    """Tuning knobs (see the controller's DetectorConfig); unknown keys are ignored."""

    def __init__(self, **overrides):
        for key, default in DEFAULTS:
            value = overrides.get(key, default)
            if value is None:
                value = default
            setattr(self, key, type(default)(value))
        if self.direction not in ("up", "down", "both"):
            raise ValueError("direction must be up, down or both")
        if self.block < 1 or self.blocks < 1:
            raise ValueError("block and blocks must be at least 1")
        if not 0.0 < self.alarm < 1.0:
            raise ValueError("alarm must be in (0, 1)")

    def as_dict(self):
        return dict((item[0], getattr(self, item[0])) for item in DEFAULTS)


def context_label(model, t):
    hour = int(t // 3600)
    if model == 2:
        weekday = WEEKDAYS[(hour // 24 + _EPOCH_WEEKDAY) % 7]
        return "usual %s %02d:00 level" % (weekday, hour % 24)
    if model == 1:
        return "usual %02d:00 level" % (hour % 24)
    return "recent level"


def _fmt(value):
    if value == 0 or 0.01 <= abs(value) < 100:
        return "%.3g" % value
    if 100 <= abs(value) < 1e6:
        return "%.0f" % value
    return "%.3g" % value


class KpiDetector(object):
    """Online anomaly scores for one KPI series: ``update(t, value)`` -> score in [0, 1)."""

    def __init__(self, config=None, name="KPI", kind="generic"):
        self.config = config or DetectorConfig()
        self.name = name
        self.kind = kind
        self._dir = {"both": 0, "up": 1, "down": -1}[self.config.direction]
        self.n = 0
        self.level = 0.0
        self.err = [0.0, 0.0, 0.0]
        self.day_mean = [0.0] * 24
        self.day_n = [0] * 24
        self.week_mean = [0.0] * 168
        self.week_n = [0] * 168
        self.vmean = 0.0
        self.spread = 0.0
        self.record = 0.0
        self.drift_record = 0.0
        self.blk_hi = []
        self.blk_lo = []
        self.blk_i = 0
        self.cur_hi = -math.inf
        self.cur_lo = math.inf
        self.hold_left = 0
        self.hold_score = 0.0
        self.last_t = math.nan
        self.step_s = 0.0
        self._why = ()

    def update(self, t, x):
        """Score the point against the model so far, then learn it."""
        if x is None or not math.isfinite(x):
            self._why = ()
            return 0.0
        cfg = self.config
        hour = int(t // 3600)
        hw = (hour + 24 * _EPOCH_WEEKDAY) % 168
        hd = hour % 24
        err = self.err
        n = self.n
        if n == 0:
            self.level = self.vmean = x
            err[0] = err[1] = err[2] = abs(x) * 0.01 or 1.0
        # The predictor with the smallest usual error (seasonal ones once they have history).
        pred = self.level
        model = 0
        best = err[0]
        dn = self.day_n[hd]
        wn = self.week_n[hw]
        if dn >= cfg.season_min_visits and err[1] < best:
            pred, model, best = self.day_mean[hd], 1, err[1]
        if wn >= cfg.season_min_visits and err[2] < best:
            pred, model, best = self.week_mean[hw], 2, err[2]
        floor = 1e-9 + 1e-3 * abs(pred) + cfg.spread_floor * self.spread
        dev = x - pred
        if self._dir and dev * self._dir < 0:
            dev = 0.0
        surprise = abs(dev) / (best if best > floor else floor)
        if surprise > cfg.surprise_cap:
            surprise = cfg.surprise_cap
        # Range of the trailing window (the blocks and the block being filled).
        hi, lo = self.cur_hi, self.cur_lo
        if self.blk_hi:
            v = self.blk_hi[-1] if len(self.blk_hi) == 1 else max(self.blk_hi)
            hi = v if v > hi else hi
            v = self.blk_lo[-1] if len(self.blk_lo) == 1 else min(self.blk_lo)
            lo = v if v < lo else lo
        # Drift: how far the recent level, this point included, is from the long-run mean.
        drift = self.level + cfg.level_alpha * (x - self.level) - self.vmean
        if self._dir and drift * self._dir < 0:
            drift = 0.0
        elif drift < 0.0:
            drift = -drift
        score = 0.0
        drifted = False
        if n >= cfg.warmup:
            r = 0.0
            if self.record > 0.0:
                r = cfg.surprise_weight * (surprise / self.record - 1.0)
            ex = x - hi if x > hi else (lo - x if x < lo else 0.0)
            if ex > 0.0 and self._dir and (x - hi) * self._dir < 0 and (lo - x) * self._dir > 0:
                ex = 0.0
            if ex > 0.0 and self.blk_hi:  # a range needs one full block
                rn = ex / (self.spread if self.spread > floor else floor)
                # A new extreme of a short history is weaker evidence than one of a long
                # history: weigh it by how much of the trailing window is filled.
                rn *= len(self.blk_hi) / cfg.blocks
                if rn > r:
                    r = rn
            if self.drift_record > 0.0:
                rd = cfg.drift_weight * (drift / self.drift_record - 1.0)
                if rd > r:
                    r = rd
                    drifted = True
            if r > 0.0:
                score = r / (1.0 + r)
            if self.hold_left > 0 and score <= self.hold_score * cfg.escalate:
                self.hold_left -= 1
                score = 0.0
            elif score >= cfg.alarm:
                self.hold_left = cfg.hold
                self.hold_score = score
        self._why = (x, pred, model, t, hi, lo, drifted, self.vmean)
        # Learn.
        ea = cfg.error_alpha
        e = abs(x - self.level)
        cap = 6.0 * err[0]
        err[0] += ea * ((e if e < cap else cap) - err[0])
        sa = cfg.season_alpha
        if dn:
            m = self.day_mean[hd]
            e, cap = abs(x - m), 6.0 * err[1]
            err[1] += ea * ((e if e < cap else cap) - err[1])
            self.day_mean[hd] = m + (sa if dn > 1 else 0.5) * (x - m)
            if dn < 1000:
                self.day_n[hd] = dn + 1
        else:
            self.day_mean[hd] = x
            self.day_n[hd] = 1
        if wn:
            m = self.week_mean[hw]
            e, cap = abs(x - m), 6.0 * err[2]
            err[2] += ea * ((e if e < cap else cap) - err[2])
            self.week_mean[hw] = m + (sa if wn > 1 else 0.5) * (x - m)
            if wn < 1000:
                self.week_n[hw] = wn + 1
        else:
            self.week_mean[hw] = x
            self.week_n[hw] = 1
        self.level += cfg.level_alpha * (x - self.level)
        va = cfg.spread_alpha if n > 20 else 1.0 / (n + 1)
        dv = x - self.vmean
        self.vmean += va * dv
        self.spread += va * ((dv if dv > 0 else -dv) - self.spread)
        decayed = self.record * cfg.record_decay
        self.record = decayed if decayed > surprise else surprise
        if n > 20:  # once the long-run mean has settled
            decayed = self.drift_record * cfg.record_decay
            self.drift_record = decayed if decayed > drift else drift
        if x > self.cur_hi:
            self.cur_hi = x
        if x < self.cur_lo:
            self.cur_lo = x
        self.blk_i += 1
        if self.blk_i >= cfg.block:
            self.blk_hi.append(self.cur_hi)
            self.blk_lo.append(self.cur_lo)
            if len(self.blk_hi) > cfg.blocks:
                del self.blk_hi[0], self.blk_lo[0]
            self.blk_i = 0
            self.cur_hi = -math.inf
            self.cur_lo = math.inf
        dt = t - self.last_t
        if dt > 0.0:  # False for the first point (NaN) and for repeated times
            if self.step_s == 0.0:
                self.step_s = dt
            else:  # gaps (missing points) count as at most two steps
                cap = 2.0 * self.step_s
                self.step_s += 0.05 * ((dt if dt < cap else cap) - self.step_s)
        self.last_t = t
        self.n = n + 1
        return score

    def step(self, t, x):
        """``update`` plus the explanation, as a dict."""
        score = self.update(t, x)
        if not self._why:
            return {
                "timestamp": t,
                "value": None,
                "score": 0.0,
                "anomalous": False,
                "expected": None,
                "context": "",
                "reason": "%s: no value" % self.name,
            }
        x, pred, model, t, hi, lo, drifted, usual = self._why
        context = context_label(model, t)
        if abs(pred) > 1e-12 and x / pred > 0:
            ratio = x / pred
            if ratio >= 1.0:
                what = "%.1f\u00d7 its %s" % (ratio, context)
            else:
                what = "%.0f%% below its %s" % ((1.0 - ratio) * 100, context)
            reason = "%s %s (%s vs %s)" % (self.name, what, _fmt(x), _fmt(pred))
        else:
            reason = "%s at %s vs its %s of %s" % (self.name, _fmt(x), context, _fmt(pred))
        span = self._window_text()
        if hi > -math.inf and x > hi:
            reason += ", above its %s high of %s" % (span, _fmt(hi))
        elif lo < math.inf and x < lo:
            reason += ", below its %s low of %s" % (span, _fmt(lo))
        elif drifted:
            reason += ", its recent level drifted to %s from %s" % (_fmt(self.level), _fmt(usual))
        return {
            "timestamp": t,
            "value": x,
            "score": score,
            "anomalous": score >= self.config.alarm,
            "expected": pred,
            "context": context,
            "reason": reason,
        }

    def _window_text(self):
        points = len(self.blk_hi) * self.config.block + self.blk_i
        seconds = points * self.step_s
        if seconds >= 2 * 86400:
            return "%.0f-day" % (seconds / 86400)
        if seconds >= 2 * 3600:
            return "%.0f-hour" % (seconds / 3600)
        return "%d-point" % points

    def to_state(self):
        """A JSON-ready snapshot; its size does not grow with the number of points."""
        return {
            "version": STATE_VERSION,
            "name": self.name,
            "kind": self.kind,
            "config": self.config.as_dict(),
            "n": self.n,
            "level": self.level,
            "err": list(self.err),
            "day_mean": list(self.day_mean),
            "day_n": list(self.day_n),
            "week_mean": list(self.week_mean),
            "week_n": list(self.week_n),
            "vmean": self.vmean,
            "spread": self.spread,
            "record": self.record,
            "drift_record": self.drift_record,
            "blk_hi": list(self.blk_hi),
            "blk_lo": list(self.blk_lo),
            "blk_i": self.blk_i,
            "cur_hi": None if self.cur_hi == -math.inf else self.cur_hi,
            "cur_lo": None if self.cur_lo == math.inf else self.cur_lo,
            "hold_left": self.hold_left,
            "hold_score": self.hold_score,
            "last_t": None if self.last_t != self.last_t else self.last_t,
            "step_s": self.step_s,
        }

    @classmethod
    def from_state(cls, state, config=None):
        """Rebuild a detector from ``to_state``; raises ValueError on a malformed state."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError("unsupported or malformed detector state")
        try:
            cfg = config or DetectorConfig(**(state.get("config") or {}))
            det = cls(cfg, name=str(state.get("name", "KPI")), kind=str(state.get("kind", "")))
            det.n = int(state["n"])
            det.level = float(state["level"])
            det.err = [float(v) for v in state["err"]]
            det.day_mean = [float(v) for v in state["day_mean"]]
            det.day_n = [int(v) for v in state["day_n"]]
            det.week_mean = [float(v) for v in state["week_mean"]]
            det.week_n = [int(v) for v in state["week_n"]]
            det.vmean = float(state["vmean"])
            det.spread = float(state["spread"])
            det.record = float(state["record"])
            det.drift_record = float(state.get("drift_record", 0.0))  # absent in older states
            det.blk_hi = [float(v) for v in state["blk_hi"]][-cfg.blocks :]
            det.blk_lo = [float(v) for v in state["blk_lo"]][-cfg.blocks :]
            det.blk_i = int(state["blk_i"])
            cur_hi, cur_lo = state.get("cur_hi"), state.get("cur_lo")
            det.cur_hi = -math.inf if cur_hi is None else float(cur_hi)
            det.cur_lo = math.inf if cur_lo is None else float(cur_lo)
            det.hold_left = int(state["hold_left"])
            det.hold_score = float(state.get("hold_score", 0.0))
            last_t = state.get("last_t")
            det.last_t = math.nan if last_t is None else float(last_t)
            det.step_s = float(state.get("step_s", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError("malformed detector state: %s" % exc) from None
        if (
            len(det.err) != 3
            or len(det.day_mean) != 24
            or len(det.day_n) != 24
            or len(det.week_mean) != 168
            or len(det.week_n) != 168
            or len(det.blk_hi) != len(det.blk_lo)
        ):
            raise ValueError("malformed detector state: wrong table sizes")
        return det
