"""Steady-state probes and detection sources, evaluated on the controller.

Every probe reads its address from the lab inventory (an http probe takes only a path on a
service the host declares), so an experiment cannot point a probe anywhere else.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from selfheal.chaos.experiment import Probe
from selfheal.chaos.inventory import LabInventory

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass
class ProbeResult:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def _status(url: str, timeout: float) -> int | str:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"no answer ({reason})"


def _get_json(url: str, timeout: float) -> object:
    with _OPENER.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _http(probe: Probe, inv: LabInventory) -> ProbeResult:
    assert probe.host
    base = inv.service_base_url(probe.host, probe.service, probe.name)
    url = base + (probe.path or inv.service_health_path(probe.host, probe.service))
    got = _status(url, probe.timeout)
    ok = got in probe.tolerance
    return ProbeResult(probe.name, ok, f"GET {url}: {got}")


def _check_one(check: dict, timeout: float) -> tuple[bool, str]:
    kind = check.get("kind")
    name = check.get("name", kind)
    if kind == "http":
        got = _status(str(check.get("url")), timeout)
        expected = check.get("status") or [200]
        expected = expected if isinstance(expected, list) else [expected]
        if isinstance(got, int) and not check.get("status"):
            ok = 200 <= got < 300
        else:
            ok = got in expected
        return ok, f"{name}: {got}"
    if kind == "tcp":
        try:
            with socket.create_connection((str(check["host"]), int(check["port"])), timeout):
                return True, f"{name}: open"
        except (OSError, KeyError, ValueError) as exc:
            return False, f"{name}: {exc}"
    return True, f"{name}: kind {kind} not probed from the controller"


def _health_check(probe: Probe, inv: LabInventory) -> ProbeResult:
    assert probe.host
    svc = inv.check_service(probe.host, probe.service, probe.name)
    checks = svc.get("health_checks") or []
    if not checks:
        return ProbeResult(probe.name, False, f"{probe.host}/{probe.service} declares no checks")
    results = [_check_one(c, probe.timeout) for c in checks]
    return ProbeResult(probe.name, all(ok for ok, _ in results), "; ".join(d for _, d in results))


def _prometheus(probe: Probe, inv: LabInventory) -> ProbeResult:
    base = inv.monitoring_url("prometheus")
    if not base:
        return ProbeResult(probe.name, False, "monitoring is not up (selfheal lab up --monitoring)")
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": probe.query})
    try:
        doc = _get_json(url, probe.timeout)
    except (OSError, ValueError) as exc:
        return ProbeResult(probe.name, False, f"prometheus: {exc}")
    result = (doc or {}).get("data", {}).get("result") if isinstance(doc, dict) else None
    if not result:
        return ProbeResult(probe.name, False, f"{probe.query}: no series")
    tol = probe.tolerance
    values = [float(series["value"][1]) for series in result]
    ok = all(_OPS[tol["op"]](v, tol["value"]) for v in values)
    shown = ", ".join(f"{v:g}" for v in values[:5])
    return ProbeResult(
        probe.name, ok, f"{probe.query} = {shown} (want {tol['op']} {tol['value']:g})"
    )


def cert_not_after(path: str) -> dt.datetime | None:
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(open(path, "rb").read())  # noqa: SIM115
        return cert.not_valid_after_utc
    except ImportError:
        pass
    except (OSError, ValueError):
        return None
    proc = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", path],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if proc.returncode != 0:
        return None
    stamp = proc.stdout.strip().split("=", 1)[-1]
    return dt.datetime.strptime(stamp, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC)


def _cert(probe: Probe, inv: LabInventory) -> ProbeResult:
    assert probe.host
    path = inv.cert_path(probe.host)
    not_after = cert_not_after(str(path))
    if not_after is None:
        return ProbeResult(probe.name, False, f"{path}: no readable certificate")
    left = (not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    ok = left > probe.min_days
    return ProbeResult(probe.name, ok, f"{path}: {left:.1f} days left")


_KINDS = {"http": _http, "health_check": _health_check, "prometheus": _prometheus, "cert": _cert}


def run_probe(probe: Probe, inv: LabInventory) -> ProbeResult:
    try:
        return _KINDS[probe.type](probe, inv)
    except Exception as exc:  # a probe that breaks is a failing probe, never a crash
        return ProbeResult(probe.name, False, f"probe error: {exc}")


def run_probes(probes: list[Probe], inv: LabInventory) -> list[ProbeResult]:
    return [run_probe(p, inv) for p in probes]


# -- detection ------------------------------------------------------------------------------
def _since_epoch(stamp: object) -> float | None:
    try:
        text = str(stamp).replace("Z", "+00:00")
        if "." in text:  # Alertmanager gives nanoseconds; fromisoformat takes microseconds
            head, _, tail = text.partition(".")
            digits = "".join(c for c in tail if c.isdigit())
            text = f"{head}.{digits[:6]}{tail[len(digits) :]}"
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def alert_firing(
    base_url: str,
    alert: str,
    host: str | None,
    timeout: float = 2.0,
    since: float | None = None,
) -> str | None:
    """The first active alert named `alert` (for `host`, when given) in Alertmanager, or None.

    With `since`, an alert that started before it (left over from an earlier fault) is not
    this fault's detection."""
    query = urllib.parse.urlencode(
        [("active", "true"), ("silenced", "false"), ("filter", f'alertname="{alert}"')]
    )
    try:
        alerts = _get_json(f"{base_url}/api/v2/alerts?{query}", timeout)
    except (OSError, ValueError):
        return None
    for item in alerts if isinstance(alerts, list) else []:
        labels = item.get("labels") or {}
        if labels.get("alertname") != alert:
            continue
        if host and labels.get("host") not in (host, None):
            continue
        started = _since_epoch(item.get("startsAt"))
        if since is not None and started is not None and started < since:
            continue
        return f"{alert} firing for {labels.get('host', '?')} since {item.get('startsAt', '?')}"
    return None


def host_of_url(url: str) -> str:
    return urlsplit(url).hostname or ""
