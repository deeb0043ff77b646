"""The Flux freeze guard (playbooks/gitops_freeze.yml) against a stand-in Kubernetes API.

No cluster runs here. `FakeKubeAPI` is a small local HTTP server that implements the
documented Kubernetes API contract for exactly the calls the guard makes through
kubernetes.core (k8s_info and k8s `state: patched`): discovery (`/version`, `/api`,
`/apis`, `/apis/<group>/<version>`), GET of a collection (with `labelSelector`, across all
namespaces or in one) and of one object, and PATCH with `application/merge-patch+json`
(RFC 7386: null deletes a key; `dryRun` patches nothing). A kubeconfig points the guard
at it. The test checks the guard suspends during a freeze window and resumes after, twice
in a row each without change the second time (idempotent), never resumes what someone
suspended by hand, and records every change in the audit trail.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from support import REPO, run_playbook

from selfheal.audit import Keyring, iter_records, verify

pytestmark = pytest.mark.integration

GROUPS = {
    "kustomize.toolkit.fluxcd.io": ("v1", "kustomizations", "Kustomization"),
    "helm.toolkit.fluxcd.io": ("v2", "helmreleases", "HelmRelease"),
}
POLICY = """\
version: 1
risk_tiers: {low: {mode: auto}, medium: {mode: auto}}
runbooks: {noop: {playbook: noop.yml, risk: low}}
routes: []
windows:
  - name: christmas
    kind: deny
    dates: ["12-25"]
    timezone: America/New_York
    environments: [production]
"""


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKubeAPI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[tuple[str, str, str, str], dict] = {}  # (group, plural, ns, name)
        self.patches: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def add(self, group: str, namespace: str, name: str, labels: dict, spec: dict) -> None:
        version, plural, kind = GROUPS[group]
        self.objects[(group, plural, namespace, name)] = {
            "apiVersion": f"{group}/{version}",
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "resourceVersion": "1",
                "uid": f"uid-{name}",
            },
            "spec": spec,
        }

    def get(self, group: str, namespace: str, name: str) -> dict:
        return self.objects[(group, GROUPS[group][1], namespace, name)]


def _selected(obj: dict, selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    server: FakeKubeAPI

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": message,
                "code": code,
            },
        )

    def _route(self):
        url = urlparse(self.path)
        return [p for p in url.path.split("/") if p], parse_qs(url.query)

    def do_GET(self) -> None:
        parts, query = self._route()
        if parts == ["version"]:
            return self._send(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if parts == ["api"]:
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if parts == ["api", "v1"]:
            return self._send(
                200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": []}
            )
        if parts == ["apis"]:
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, (v, _, _) in GROUPS.items()
            ]
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if len(parts) == 3 and parts[0] == "apis" and parts[1] in GROUPS:
            version, plural, kind = GROUPS[parts[1]]
            resources = [
                {
                    "name": plural,
                    "singularName": kind.lower(),
                    "namespaced": True,
                    "kind": kind,
                    "verbs": ["get", "list", "patch", "watch"],
                },
                {
                    "name": f"{plural}/status",
                    "singularName": "",
                    "namespaced": True,
                    "kind": kind,
                    "verbs": ["get", "patch"],
                },
            ]
            return self._send(
                200,
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": f"{parts[1]}/{version}",
                    "resources": resources,
                },
            )
        found = self._object_path(parts)
        if found is None:
            return self._status(404, "NotFound", f"{self.path} not found")
        group, plural, namespace, name = found
        with self.server.lock:
            if name is None:
                items = [
                    o
                    for (g, p, ns, _), o in sorted(self.server.objects.items())
                    if g == group
                    and p == plural
                    and namespace in (None, ns)
                    and _selected(o, query.get("labelSelector", [""])[0])
                ]
                kind = GROUPS[group][2]
                return self._send(
                    200,
                    {
                        "apiVersion": f"{group}/{GROUPS[group][0]}",
                        "kind": f"{kind}List",
                        "metadata": {"resourceVersion": "1"},
                        "items": copy.deepcopy(items),
                    },
                )
            obj = self.server.objects.get((group, plural, namespace, name))
        if obj is None:
            return self._status(404, "NotFound", f"{plural} {name!r} not found")
        return self._send(200, obj)

    def do_PATCH(self) -> None:
        parts, query = self._route()
        found = self._object_path(parts)
        if found is None or found[3] is None:
            return self._status(405, "MethodNotAllowed", "PATCH needs one object")
        if self.headers.get("Content-Type", "").split(";")[0] != "application/merge-patch+json":
            return self._status(415, "UnsupportedMediaType", "merge patches only")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.server.lock:
            obj = self.server.objects.get(found)
            if obj is None:
                return self._status(404, "NotFound", f"{found[3]!r} not found")
            patched = merge_patch(obj, body)
            if patched != obj and "dryRun" not in query:
                patched["metadata"]["resourceVersion"] = str(
                    int(obj["metadata"]["resourceVersion"]) + 1
                )
                self.server.objects[found] = patched
                self.server.patches.append((found[3], body))
        return self._send(200, patched)

    @staticmethod
    def _object_path(parts):
        # /apis/G/V/R, /apis/G/V/namespaces/NS/R, /apis/G/V/namespaces/NS/R/NAME
        if len(parts) < 4 or parts[0] != "apis" or parts[1] not in GROUPS:
            return None
        group, rest = parts[1], parts[3:]
        namespace = name = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if rest[0] != GROUPS[group][1] or len(rest) > 2:
            return None
        if len(rest) == 2:
            name = rest[1]
        return group, rest[0], namespace, name


@pytest.fixture
def api():
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        pytest.skip("the kubernetes Python client is not installed (pip install kubernetes)")
    server = FakeKubeAPI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.add(
        "kustomize.toolkit.fluxcd.io",
        "flux-system",
        "selfheal-production",
        {"selfheal.dev/freeze-guard": "true"},
        {"interval": "10m", "prune": True},
    )
    server.add(
        "kustomize.toolkit.fluxcd.io",
        "flux-system",
        "hand-suspended",
        {"selfheal.dev/freeze-guard": "true"},
        {"interval": "10m", "suspend": True},
    )
    server.add("kustomize.toolkit.fluxcd.io", "flux-system", "not-guarded", {}, {"interval": "10m"})
    server.add(
        "helm.toolkit.fluxcd.io",
        "apps",
        "web",
        {"selfheal.dev/freeze-guard": "true"},
        {"interval": "5m", "suspend": False},
    )
    yield server
    server.shutdown()
    server.server_close()


def _setup(tmp_path: Path, api: FakeKubeAPI) -> dict[str, str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [
                    {"name": "fake", "cluster": {"server": f"http://127.0.0.1:{api.server_port}"}}
                ],
                "users": [{"name": "guard", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "guard"}}],
            }
        )
    )
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    return {
        "K8S_AUTH_KUBECONFIG": str(kubeconfig),
        "KUBECONFIG": str(kubeconfig),
        "SELFHEAL_POLICY": str(policy),
        "SELFHEAL_FREEZE_ENVIRONMENT": "production",
        "SELFHEAL_AUDIT_TRAIL": str(tmp_path / "audit"),
        "SELFHEAL_AUDIT_KEY_FILE": str(tmp_path / "audit.key"),
        "HOME": str(tmp_path),  # the discovery cache
    }


def _guard(env: dict[str, str], at: str):
    result = run_playbook(
        REPO / "playbooks/gitops_freeze.yml", extra_vars={"gitops_freeze_at": at}, env=env
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def _suspend(api: FakeKubeAPI, group: str, ns: str, name: str):
    return api.get(group, ns, name)["spec"].get("suspend")


KS = "kustomize.toolkit.fluxcd.io"
HR = "helm.toolkit.fluxcd.io"


def test_guard_suspends_in_the_window_and_resumes_after(tmp_path: Path, api) -> None:
    env = _setup(tmp_path, api)
    # 25 December, noon in New York: the window is open.
    first = _guard(env, "2026-12-25T17:00:00Z")
    assert "FROZEN" in first.stdout and "2 object(s)" in first.stdout
    assert _suspend(api, KS, "flux-system", "selfheal-production") is True
    assert _suspend(api, HR, "apps", "web") is True
    assert _suspend(api, KS, "flux-system", "not-guarded") is None
    assert len(api.patches) == 2
    again = _guard(env, "2026-12-25T18:00:00Z")
    assert len(api.patches) == 2, "second run in the window must patch nothing"
    assert "FROZEN" in again.stdout and "0 object(s)" in again.stdout

    # 26 December: the window has closed.
    _guard(env, "2026-12-26T06:00:00Z")
    assert _suspend(api, KS, "flux-system", "selfheal-production") is False
    assert _suspend(api, HR, "apps", "web") is False
    assert _suspend(api, KS, "flux-system", "hand-suspended") is True, "left as a human set it"
    marker = "selfheal.dev/suspended-by"
    assert marker not in api.get(KS, "flux-system", "selfheal-production")["metadata"].get(
        "annotations", {}
    )
    assert len(api.patches) == 4
    _guard(env, "2026-12-26T07:00:00Z")
    assert len(api.patches) == 4, "second run after the window must patch nothing"

    records = list(iter_records(tmp_path / "audit"))
    events = [(r.get("action"), r.get("target"), r.get("outcome")) for r in records]
    assert events == [
        ("gitops.suspend", "Kustomization/flux-system/selfheal-production", "suspended"),
        ("gitops.suspend", "HelmRelease/apps/web", "suspended"),
        ("gitops.resume", "Kustomization/flux-system/selfheal-production", "resumed"),
        ("gitops.resume", "HelmRelease/apps/web", "resumed"),
    ]
    report = verify(tmp_path / "audit", Keyring.load(tmp_path / "audit.key", env={}))
    assert report.ok, report.problem


def test_merge_patch_follows_rfc_7386() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {
        "a": {"c": 2, "d": 3}
    }
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


@pytest.mark.parametrize("playbook", ["gitops_freeze.yml", "reconcile.yml"])
def test_playbook_syntax(playbook: str) -> None:
    result = run_playbook(REPO / "playbooks" / playbook, "--syntax-check")
    assert result.returncode == 0, result.stdout + result.stderr
