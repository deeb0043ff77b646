"""The Kubernetes workload runbooks (rollout restart, crash-looping pods, scale, rollback) run
for real with `ansible-playbook` and the real `kubernetes.core` modules and Kubernetes Python
client, against a contract mock of the Kubernetes API server (`tests/fakes/k8s_api.py`): no
cluster can run here, so these tests check the requests the runbooks send against the
documented API (paths, verbs, patch types, subresources) and what a cluster following that API
would then report. The fake records every request, so check mode is proven write-free."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fakes.k8s_api import REVISION, Cluster, FakeKubernetes, serve
from support import REPO, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOKS = REPO / "playbooks"
NS = "shop"
GOOD, GOOD2, BROKEN, BROKEN2 = "shop/web:1", "shop/web:2", "shop/web:3-bad", "shop/web:4-bad"


@pytest.fixture
def k8s(tmp_path: Path) -> Iterator[FakeKubernetes]:
    cluster = Cluster(crashing_images={BROKEN, BROKEN2})
    cluster.add_node("node1")
    cluster.add_node("node2")
    with serve(cluster) as fake:
        fake.write_kubeconfig(tmp_path / "kubeconfig")
        yield fake


@pytest.fixture
def web_service(k8s: FakeKubernetes) -> Iterator[dict]:
    """What the Deployment serves, as its Service would: 503 while any of its pods is not
    ready. Its readiness URL, for the runbooks' health checks, and the codes it answered."""
    cluster = k8s.cluster
    answered: list[int] = []

    class Readiness(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            pods = cluster.pods_of(NS, "web")
            ready = bool(pods) and all(
                c["ready"] for p in pods for c in p["status"].get("containerStatuses", [])
            )
            answered.append(200 if ready else 503)
            self.send_response(answered[-1])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Readiness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/readyz", "answered": answered}
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _run(k8s: FakeKubernetes, tmp_path: Path, playbook: str, check: bool = False, **extra):
    workload = {"namespace": NS, "deployment": "web", "min_replicas": 2, "max_replicas": 5}
    workload.update(extra.pop("workload", {}))
    extra_vars = {
        "target": "localhost",
        "service": "web",
        "selfheal_k8s": {
            "kubeconfig": str(tmp_path / "kubeconfig"),
            "workloads": {"web": workload},
        },
        **extra,
    }
    # The client caches API discovery under the temporary directory: keep it in the test's.
    return run_playbook(
        PLAYBOOKS / playbook, extra_vars=extra_vars, check=check, env={"TMPDIR": str(tmp_path)}
    )


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def _ok(result) -> str:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return _recap(result.stdout)


def _writes_since(k8s: FakeKubernetes, mark: int):
    return [r for r in k8s.cluster.requests[mark:] if r.is_write]


def _deployment(k8s: FakeKubernetes) -> dict:
    return k8s.cluster.get("deployments", NS, "web")


def test_rollout_restart_only_when_unhealthy_and_once(
    k8s: FakeKubernetes, tmp_path: Path, web_service: dict
) -> None:
    k8s.cluster.add_deployment(NS, "web", GOOD, replicas=3)
    sick = k8s.cluster.pods_of(NS, "web")[0]["metadata"]["name"]
    k8s.cluster.crash_pod(NS, sick)
    checks = {"health_checks": [{"name": "web", "kind": "http", "url": web_service["url"]}]}

    def run(check: bool = False):
        return _run(k8s, tmp_path, "heal_k8s_restart.yml", check=check, workload=checks)

    mark = len(k8s.cluster.requests)
    dry = run(check=True)
    assert "changed=1" in _ok(dry)
    assert (
        "would restart Deployment shop/web: rollout not complete or replicas unavailable; "
        "health checks failing" in dry.stdout
    )
    assert _writes_since(k8s, mark) == []
    assert _deployment(k8s)["metadata"]["annotations"][REVISION] == "1"

    mark, probes = len(k8s.cluster.requests), len(web_service["answered"])
    assert "changed=1" in _ok(run())
    # Checked before acting (unhealthy), verified after (healthy).
    assert web_service["answered"][probes] == 503
    assert web_service["answered"][-1] == 200
    writes = _writes_since(k8s, mark)
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web")
    ]
    annotations = writes[0].body["spec"]["template"]["metadata"]["annotations"]
    assert list(annotations) == ["kubectl.kubernetes.io/restartedAt"]
    after = _deployment(k8s)
    assert after["metadata"]["annotations"][REVISION] == "2"  # a new ReplicaSet rolled out
    assert after["status"]["availableReplicas"] == 3
    assert sick not in {p["metadata"]["name"] for p in k8s.cluster.pods_of(NS, "web")}

    mark = len(k8s.cluster.requests)
    assert "changed=0" in _ok(run())
    assert _writes_since(k8s, mark) == []


def test_a_healthy_deployment_restarted_long_ago_is_due(
    k8s: FakeKubernetes, tmp_path: Path
) -> None:
    k8s.cluster.add_deployment(NS, "web", GOOD, replicas=2)
    stamp = {"kubectl.kubernetes.io/restartedAt": "2020-01-01T00:00:00Z"}
    patch = {"spec": {"template": {"metadata": {"annotations": stamp}}}}
    k8s.cluster.patch_deployment(NS, "web", patch, "application/merge-patch+json", dry=False)
    mark = len(k8s.cluster.requests)
    dry = _run(
        k8s, tmp_path, "heal_k8s_restart.yml", check=True, workload={"restart_if_older_than": 3600}
    )
    assert "changed=1" in _ok(dry)
    assert "would restart Deployment shop/web: last restart older than 3600s" in dry.stdout
    assert _writes_since(k8s, mark) == []


def test_crash_looping_pod_is_deleted_and_replaced(k8s: FakeKubernetes, tmp_path: Path) -> None:
    k8s.cluster.add_deployment(NS, "web", GOOD, replicas=3)
    sick = k8s.cluster.pods_of(NS, "web")[1]["metadata"]["name"]
    k8s.cluster.crash_pod(NS, sick)

    mark = len(k8s.cluster.requests)
    dry = _run(k8s, tmp_path, "heal_k8s_pods.yml", check=True)
    assert "changed=1" in _ok(dry) and sick in dry.stdout
    assert _writes_since(k8s, mark) == []

    mark = len(k8s.cluster.requests)
    assert "changed=1" in _ok(_run(k8s, tmp_path, "heal_k8s_pods.yml"))
    writes = _writes_since(k8s, mark)
    assert [(w.method, w.path) for w in writes] == [
        ("DELETE", f"/api/v1/namespaces/shop/pods/{sick}")
    ]
    pods = k8s.cluster.pods_of(NS, "web")
    assert len(pods) == 3 and sick not in {p["metadata"]["name"] for p in pods}
    assert _deployment(k8s)["status"]["availableReplicas"] == 3

    assert "changed=0" in _ok(_run(k8s, tmp_path, "heal_k8s_pods.yml"))


def test_a_crash_looping_revision_is_escalated_not_deleted(
    k8s: FakeKubernetes, tmp_path: Path
) -> None:
    k8s.cluster.add_deployment(NS, "web", GOOD, replicas=3)
    for pod in k8s.cluster.pods_of(NS, "web"):
        k8s.cluster.crash_pod(NS, pod["metadata"]["name"])
    mark = len(k8s.cluster.requests)
    result = _run(k8s, tmp_path, "heal_k8s_pods.yml", workload={"crashloop_max_pods": 5})
    assert result.returncode != 0
    assert "3 of the 3 pods of shop/web crash-loop" in result.stdout
    assert _writes_since(k8s, mark) == []


def test_scale_within_bounds_then_nothing_to_do(k8s: FakeKubernetes, tmp_path: Path) -> None:
    k8s.cluster.add_deployment(NS, "web", GOOD, replicas=2)
    mark = len(k8s.cluster.requests)
    assert "changed=1" in _ok(_run(k8s, tmp_path, "heal_k8s_scale.yml", check=True, replicas=4))
    assert _writes_since(k8s, mark) == [] and _deployment(k8s)["spec"]["replicas"] == 2

    mark = len(k8s.cluster.requests)
    assert "changed=1" in _ok(_run(k8s, tmp_path, "heal_k8s_scale.yml", replicas=4))
    writes = _writes_since(k8s, mark)
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web/scale")
    ]
    assert writes[0].body["spec"] == {"replicas": 4}
    assert _deployment(k8s)["status"]["availableReplicas"] == 4
    assert len(k8s.cluster.pods_of(NS, "web")) == 4

    # The workload's declared scale_to is what the dispatcher (which passes no count) scales to.
    second = _run(k8s, tmp_path, "heal_k8s_scale.yml", workload={"scale_to": 4})
    assert "changed=0" in _ok(second)


@pytest.mark.parametrize("replicas", [6, 1])
def test_scale_outside_bounds_is_refused(
    k8s: FakeKubernetes, tmp_path: Path, replicas: int
) -> None:
    k8s.cluster.add_deployment(NS, "web", GOOD, replicas=2)
    mark = len(k8s.cluster.requests)
    result = _run(k8s, tmp_path, "heal_k8s_scale.yml", replicas=replicas)
    assert result.returncode != 0
    assert (
        f"refusing to scale Deployment shop/web to {replicas} replicas: outside the allowed "
        "range 2..5" in result.stdout
    )
    assert k8s.cluster.requests[mark:] == []  # refused before any request
    assert _deployment(k8s)["spec"]["replicas"] == 2


def _history_with_two_failed_rollouts(cluster: Cluster) -> None:
    """rev1 good (marked healthy by the pipeline), rev2 good (serving), rev3 and rev4 broken."""
    cluster.add_deployment(NS, "web", GOOD, replicas=3)
    cluster.mark_revision_healthy(NS, "web", 1, "selfheal.io/healthy")
    cluster.roll_out(NS, "web", GOOD2)
    cluster.roll_out(NS, "web", BROKEN)  # stalls: rev2 keeps serving
    cluster.roll_out(NS, "web", BROKEN2)  # stalls too: rev3 goes to 0 pods


def test_rollback_picks_the_last_healthy_revision(k8s: FakeKubernetes, tmp_path: Path) -> None:
    _history_with_two_failed_rollouts(k8s.cluster)
    assert _deployment(k8s)["metadata"]["annotations"][REVISION] == "4"

    mark = len(k8s.cluster.requests)
    dry = _run(k8s, tmp_path, "heal_k8s_rollback.yml", check=True)
    assert "changed=1" in _ok(dry)
    assert "from revision 4 to revision 2" in dry.stdout
    assert _writes_since(k8s, mark) == []

    mark = len(k8s.cluster.requests)
    assert "changed=1" in _ok(_run(k8s, tmp_path, "heal_k8s_rollback.yml"))
    writes = _writes_since(k8s, mark)
    assert len(writes) == 1 and writes[0].content_type == "application/json-patch+json"
    replace = next(op for op in writes[0].body if op["op"] == "replace")
    assert replace["path"] == "/spec/template"
    assert "pod-template-hash" not in replace["value"]["metadata"]["labels"]
    after = _deployment(k8s)
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD2
    # The controller makes the restored ReplicaSet the newest revision, as Kubernetes does.
    assert after["metadata"]["annotations"][REVISION] == "5"
    assert (
        after["status"]["availableReplicas"] == 3 and "unavailableReplicas" not in after["status"]
    )

    mark = len(k8s.cluster.requests)
    assert "changed=0" in _ok(_run(k8s, tmp_path, "heal_k8s_rollback.yml"))
    assert _writes_since(k8s, mark) == []


def test_rollback_without_a_healthy_revision_escalates(k8s: FakeKubernetes, tmp_path: Path) -> None:
    k8s.cluster.add_deployment(NS, "web", BROKEN, replicas=2)  # broken from its first revision
    mark = len(k8s.cluster.requests)
    result = _run(k8s, tmp_path, "heal_k8s_rollback.yml")
    assert result.returncode != 0
    assert "no older revision is known to be healthy" in result.stdout
    assert _writes_since(k8s, mark) == []


@pytest.mark.parametrize(
    ("playbook", "role"),
    [
        ("heal_k8s_restart.yml", "k8s_rollout_restart"),
        ("heal_k8s_pods.yml", "k8s_crashloop_pods"),
        ("heal_k8s_scale.yml", "k8s_scale"),
        ("heal_k8s_rollback.yml", "k8s_rollback"),
    ],
)
def test_refuses_a_cluster_without_the_compliance_tags(
    k8s: FakeKubernetes, tmp_path: Path, playbook: str, role: str
) -> None:
    k8s.cluster.add_deployment(NS, "web", BROKEN, replicas=2)
    mark = len(k8s.cluster.requests)
    result = _run(
        k8s,
        tmp_path,
        playbook,
        replicas=3,
        force=True,
        **{f"{role}_required_tags": {"selfheal_env": "production"}},
    )
    assert result.returncode != 0
    assert (
        "localhost is not cleared for automated remediation: host variables selfheal_env "
        'must equal {"selfheal_env": "production"}' in result.stdout
    )
    assert k8s.cluster.requests[mark:] == []


def test_an_undeclared_workload_is_refused(k8s: FakeKubernetes, tmp_path: Path) -> None:
    result = _run(k8s, tmp_path, "heal_k8s_restart.yml", service="payments")
    assert result.returncode != 0
    assert 'declares no workload "payments" in selfheal_k8s.workloads' in result.stdout
    assert k8s.cluster.requests == []
