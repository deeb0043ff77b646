"""Offline validation, against the Kubernetes OpenAPI schemas (`kubernetes-validate`), of the
example manifests under `examples/k8s/` and of the objects the contract mock of the API server
serves (`tests/fakes/k8s_api.py`), so that the runbooks' tests read what a real API would."""

from __future__ import annotations

import pytest
import yaml
from fakes.k8s_api import Cluster
from support import REPO

kubernetes_validate = pytest.importorskip("kubernetes_validate")

KUBERNETES_VERSION = "1.31"
EXAMPLES = sorted((REPO / "examples/k8s").glob("*.yaml"))


def _validate(resource: dict) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_manifests_are_valid(path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents
    for doc in documents:
        _validate(doc)


def test_invalid_manifests_are_caught() -> None:
    doc = yaml.safe_load_all((REPO / "examples/k8s/shop-web.yaml").read_text()).__next__()
    doc["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc)


def _a_cluster_after_a_failed_rollout() -> Cluster:
    cluster = Cluster(crashing_images={"shop/web:2-bad"})
    cluster.add_node("node1")
    cluster.add_node("node2", unschedulable=True)
    cluster.add_deployment("shop", "web", "shop/web:1", replicas=3)
    cluster.roll_out("shop", "web", "shop/web:2-bad")
    cluster.add_pdb("shop", "web", {"app": "web"}, min_available=2)
    cluster.add_daemon_pod("kube-system", "node-exporter", "node1")
    return cluster


@pytest.mark.parametrize(
    "resource", ["deployments", "replicasets", "pods", "nodes", "poddisruptionbudgets"]
)
def test_what_the_fake_serves_is_valid(resource: str) -> None:
    cluster = _a_cluster_after_a_failed_rollout()
    objects = cluster.list(resource)
    assert objects
    for obj in objects:
        if resource == "poddisruptionbudgets":
            obj = {**obj, "status": cluster.pdb_status(obj)}
        _validate(obj)


def test_fake_statuses_say_what_the_runbooks_read() -> None:
    cluster = _a_cluster_after_a_failed_rollout()
    deployment = cluster.get("deployments", "shop", "web")
    progressing = next(c for c in deployment["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert deployment["status"]["availableReplicas"] == 3  # revision 1 keeps serving
    assert deployment["status"]["updatedReplicas"] == 1
    waiting = [
        s["state"]["waiting"]["reason"]
        for p in cluster.list("pods", "shop")
        for s in p["status"]["containerStatuses"]
        if "waiting" in s["state"]
    ]
    assert waiting == ["CrashLoopBackOff"]
