# -*- coding: utf-8 -*-
# Copyright: (c) 2026, selfheal maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A streaming, constant-memory KPI anomaly detector: the one implementation.

The Ansible module ``kpi_baseline`` runs it on targets (standard library only, Python 3.9
syntax) and the controller's ``selfheal.baseline`` re-exports it, so ``selfheal detect``,
the KPI watcher and the module share the algorithm and the state format.

Every point is scored from the points before it only, and learned afterwards: the detector is
strictly online. Per series it keeps a few dozen numbers plus fixed-size tables (24 hour-of-day
and 168 hour-of-week buckets, ``blocks`` block extremes), whatever the number of points.

Three views of a point are scored; the largest wins:

- **Surprise against the baseline.** Three predictors compete: ``recent`` (an exponentially
  weighted level, which follows level shifts), ``daily`` (the usual value at this hour of the
  day) and ``weekly`` (at this hour of this weekday); seasonal buckets decay, so the pattern
  can change. The one with the smallest running error predicts; the point's surprise is its
  error over that usual error. Only a surprise beyond the largest one seen so far counts (the
  record is forgotten slowly, see below), so a noisy series does not alarm on its noise.
- **Novelty of the level.** How far the value goes beyond the highest (or lowest) value of
  the trailing window (``blocks`` blocks of ``block`` points, about 8 days at 5-minute
  steps), in units of the series' usual spread, weighted by ``novelty_weight``.
- **Drift of the level.** How far the recent level (this point included) is from the
  long-run mean, beyond the largest such drift seen so far (a record like the surprise's).

The records of surprise and drift are forgotten at a rate that slows as the series grows: the
memory is the series' whole history, at least ``1 / (1 - record_decay)`` points and at most
``record_horizon`` points. The longer a series has been watched, the more a point must stand
out to be news, so a long series does not alarm more often than a short one.

The score is ``r / (1 + r)`` of the largest view ``r``, in [0, 1). It does not depend on the
alarm threshold: a score at or above ``hold_from`` starts a hold, and the ``hold`` points
after it score 0 unless they score ``escalate`` times higher, so one incident raises one
alarm. A score at or above ``alarm`` is a detection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday
KINDS = ("latency", "error_rate", "throughput", "generic")
# Which way a deviation is harmful, by kind of KPI (a throughput drop or surge both matter).
KIND_DIRECTION = {"latency": "up", "error_rate": "up", "throughput": "both", "generic": "both"}
STATE_VERSION = 1
_R_CAP = 1e6  # the largest view counted: scores stay below 1 in floating point

# (name, default, meaning): one configuration serves every series, nothing is fitted per series.
PARAMETERS = (
    ("level_alpha", 0.1, "weight of the newest value in the recent level"),
    ("error_alpha", 0.02, "weight of the newest error in the predictors' usual errors"),
    ("season_alpha", 0.25, "weight of a new visit in a seasonal bucket"),
    ("season_min_visits", 3, "visits before a seasonal bucket may predict"),
    ("spread_alpha", 0.01, "weight of the newest value in the series' usual spread"),
    ("spread_floor", 0.02, "usual errors are at least this fraction of the spread"),
    ("surprise_cap", 1000.0, "surprise (error over usual error) is capped here"),
    ("record_decay", 0.9995, "per point: the fastest the records are forgotten"),
    ("record_horizon", 20000, "points: the longest memory of the records"),
    ("surprise_weight", 0.1, "weight of a surprise beyond its record"),
    ("drift_weight", 0.2, "weight of a level drift beyond its record"),
    ("novelty_weight", 0.5, "weight of a value beyond the trailing range, in spreads"),
    ("block", 144, "points per block of the trailing range"),
    ("blocks", 16, "blocks in the trailing range"),
    ("warmup", 100, "points before any score is given"),
    ("alarm", 0.1, "score at or above which a point is a detection"),
    ("hold_from", 0.02, "score at or above which a hold starts"),
    ("hold", 150, "points after a hold starts that score 0..."),
    ("escalate", 1.5, "...unless they score above this times the score that started it"),
    ("direction", "both", "up, down or both: which deviations count"),
)
DEFAULTS = tuple((name, default) for name, default, _help in PARAMETERS)
_NAMES = frozenset(name for name, _default in DEFAULTS)


class DetectorConfig(object):
    """Tuning knobs (``PARAMETERS``); immutable, compared by value. ``None`` means default."""

    __slots__ = _NAMES

    def __init__(self, **overrides):
        unknown = set(overrides) - _NAMES
        if unknown:
            raise TypeError("unknown detector parameter(s): %s" % ", ".join(sorted(unknown)))
        for key, default in DEFAULTS:
            value = overrides.get(key)
            if value is None:
                value = default
            elif isinstance(default, int) and not isinstance(default, bool):
                if isinstance(value, float) and value != int(value):
                    raise ValueError("%s must be a whole number" % key)
                value = int(value)
            else:
                value = type(default)(value)
            object.__setattr__(self, key, value)
        if self.direction not in ("up", "down", "both"):
            raise ValueError("direction must be up, down or both, not %r" % (self.direction,))
        if self.block < 1 or self.blocks < 1:
            raise ValueError("block and blocks must be at least 1")
        if not 0.0 < self.alarm < 1.0:
            raise ValueError("alarm must be in (0, 1)")
        if not 0.0 < self.hold_from < 1.0:
            raise ValueError("hold_from must be in (0, 1)")
        if not 0.0 < self.record_decay < 1.0 or self.record_horizon < 1:
            raise ValueError("record_decay must be in (0, 1) and record_horizon at least 1")

    def __setattr__(self, key, value):
        raise AttributeError("DetectorConfig is immutable")

    def __eq__(self, other):
        return isinstance(other, DetectorConfig) and self.as_dict() == other.as_dict()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(tuple(getattr(self, name) for name, _default in DEFAULTS))

    def __repr__(self):
        return "DetectorConfig(%s)" % ", ".join(
            "%s=%r" % (name, getattr(self, name)) for name, _default in DEFAULTS
        )

    def as_dict(self):
        return dict((name, getattr(self, name)) for name, _default in DEFAULTS)

    @classmethod
    def from_dict(cls, data):
        """A configuration from a saved one; keys it does not know are ignored."""
        return cls(**dict((k, v) for k, v in (data or {}).items() if k in _NAMES))

    def replace(self, **changes):
        values = self.as_dict()
        values.update(changes)
        return DetectorConfig(**values)


class Detection(object):
    """One scored point, explained: attributes, or keys as in a dict (``found["score"]``)."""

    FIELDS = ("timestamp", "value", "score", "anomalous", "expected", "context", "reason")
    __slots__ = FIELDS

    def __init__(self, timestamp, value, score, anomalous, expected, context, reason):
        self.timestamp = timestamp
        self.value = value  # None for a missing point
        self.score = score
        self.anomalous = anomalous
        self.expected = expected  # the baseline's prediction
        self.context = context  # which baseline: "recent level", "usual Tuesday 14:00 level"
        self.reason = reason

    def __getitem__(self, key):
        if key not in self.FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __eq__(self, other):
        return isinstance(other, Detection) and self.as_dict() == other.as_dict()

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return "Detection(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.FIELDS)

    def as_dict(self):
        return dict((k, getattr(self, k)) for k in self.FIELDS)


def context_label(model, t):
    hour = int(t // 3600)
    if model == 2:
        weekday = WEEKDAYS[(hour // 24 + _EPOCH_WEEKDAY) % 7]
        return "usual %s %02d:00 level" % (weekday, hour % 24)
    if model == 1:
        return "usual %02d:00 level" % (hour % 24)
    return "recent level"


class KpiDetector(object):
    """Online anomaly scores for one KPI series: ``update(t, value)`` -> score in [0, 1).

    ``t`` is epoch seconds (UTC); ``value`` None or NaN is a missing point, which leaves the
    model untouched and scores 0. ``step`` does the same and explains the score.
    """

    __slots__ = (
        "_dir",
        "_why",
        "blk_hi",
        "blk_i",
        "blk_lo",
        "config",
        "cur_hi",
        "cur_lo",
        "day_mean",
        "day_n",
        "drift_record",
        "err",
        "hold_left",
        "hold_score",
        "kind",
        "last_t",
        "level",
        "n",
        "name",
        "record",
        "spread",
        "step_s",
        "vmean",
        "week_mean",
        "week_n",
    )

    def __init__(self, config=None, name="KPI", kind="generic"):
        self.config = config or DetectorConfig()
        self.name = name
        self.kind = kind
        self._dir = {"both": 0, "up": 1, "down": -1}[self.config.direction]
        self.n = 0
        self.level = 0.0
        self.err = [0.0, 0.0, 0.0]  # usual absolute error: recent, daily, weekly
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
        self.step_s = 0.0  # usual time between points (seconds)
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
                rn *= cfg.novelty_weight * len(self.blk_hi) / cfg.blocks
                if rn > r:
                    r = rn
            if self.drift_record > 0.0:
                rd = cfg.drift_weight * (drift / self.drift_record - 1.0)
                if rd > r:
                    r = rd
                    drifted = True
            if r >= _R_CAP or math.isnan(r):  # NaN from values near the float range's ends
                r = _R_CAP
            if r > 0.0:
                score = r / (1.0 + r)
            if self.hold_left > 0 and score <= self.hold_score * cfg.escalate:
                self.hold_left -= 1
                score = 0.0
            elif score >= cfg.hold_from:
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
        # The records' memory: the history so far, within [1 / (1 - record_decay), horizon].
        memory = n + 1.0
        shortest = 1.0 / (1.0 - cfg.record_decay)
        if memory < shortest:
            memory = shortest
        if memory > cfg.record_horizon:
            memory = cfg.record_horizon
        forget = 1.0 - 1.0 / memory
        decayed = self.record * forget
        self.record = decayed if decayed > surprise else surprise
        if n > 20:  # once the long-run mean has settled
            decayed = self.drift_record * forget
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
        """``update`` plus the explanation: the baseline's prediction and a human reason."""
        score = self.update(t, x)
        if not self._why:
            return Detection(t, None, 0.0, False, None, "", "%s: no value" % self.name)
        x, pred, model, t, hi, lo, drifted, usual = self._why
        anomalous = score >= self.config.alarm
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
            level = self.level  # learned: it now includes this point
            reason += ", its recent level drifted to %s from %s" % (_fmt(level), _fmt(usual))
        return Detection(t, x, score, anomalous, pred, context, reason)

    def _window_text(self):
        points = len(self.blk_hi) * self.config.block + self.blk_i
        seconds = points * self.step_s
        if seconds >= 2 * 86400:
            return "%.0f-day" % (seconds / 86400)
        if seconds >= 2 * 3600:
            return "%.0f-hour" % (seconds / 3600)
        return "%d-point" % points

    # -- state ----------------------------------------------------------------------------

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
            cfg = config or DetectorConfig.from_dict(state.get("config") or {})
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


def _fmt(value):
    if value == 0 or 0.01 <= abs(value) < 100:
        return "%.3g" % value
    if 100 <= abs(value) < 1e6:
        return "%.0f" % value
    return "%.3g" % value
