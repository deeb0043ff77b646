"""The k8s_node_drain runbook run for real with `ansible-playbook` and `kubernetes.core.k8s_drain`
against a contract mock of the Kubernetes API server (`tests/fakes/k8s_api.py`; no cluster can
run here): pods leave through the Eviction API (`pods/eviction`, 201, or 429 when a
PodDisruptionBudget would be violated, as the API reference documents), never by a direct
delete; a refused eviction is retried a bounded number of times, then the run stops with the
reason. The fake records every request, so check mode is proven write-free."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.k8s_api import Cluster, FakeKubernetes, serve
from support import REPO, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOK = REPO / "playbooks/drain_k8s_node.yml"


@pytest.fixture
def k8s(tmp_path: Path) -> Iterator[FakeKubernetes]:
    cluster = Cluster()
    cluster.add_node("node1")
    cluster.add_node("node2")
    cluster.add_deployment("shop", "web", "shop/web:1", replicas=2)  # one pod on each node
    cluster.add_deployment("shop", "api", "shop/api:1", replicas=2)
    cluster.add_daemon_pod("kube-system", "node-exporter", "node1")
    with serve(cluster) as fake:
        fake.write_kubeconfig(tmp_path / "kubeconfig")
        yield fake


def _run(k8s: FakeKubernetes, tmp_path: Path, check: bool = False, **extra):
    extra_vars = {
        "target": "localhost",
        "selfheal_k8s": {
            "kubeconfig": str(tmp_path / "kubeconfig"),
            "node": "node1",
            "drain": {"eviction_retries": 1, "eviction_delay": 1},
        },
        **extra,
    }
    return run_playbook(PLAYBOOK, extra_vars=extra_vars, check=check, env={"TMPDIR": str(tmp_path)})


def _recap(result) -> str:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return next(line for line in result.stdout.splitlines() if line.startswith("localhost"))


def _on(cluster: Cluster, node: str) -> set[str]:
    return {
        p["metadata"]["name"] for p in cluster.list("pods") if p["spec"].get("nodeName") == node
    }


def _cordoned(cluster: Cluster, node: str) -> bool:
    return bool(cluster.get("nodes", "", node)["spec"].get("unschedulable"))


def test_drain_evicts_within_the_budget_and_is_idempotent(
    k8s: FakeKubernetes, tmp_path: Path
) -> None:
    cluster = k8s.cluster
    cluster.add_pdb("shop", "web", {"app": "web"}, min_available=1)  # one of two may go
    before = _on(cluster, "node1")
    assert len(before) == 3  # web, api and the DaemonSet's pod

    dry = _run(k8s, tmp_path, check=True)
    assert "changed=1" in _recap(dry)
    assert "would cordon node node1 and evict 2 pod(s)" in dry.stdout
    assert cluster.writes() == [] and not _cordoned(cluster, "node1")

    assert "changed=1" in _recap(_run(k8s, tmp_path))
    writes = cluster.writes()
    assert [w.method for w in writes] == ["PATCH", "POST", "POST"]
    assert writes[0].path == "/api/v1/nodes/node1" and writes[0].body == {
        "spec": {"unschedulable": True}
    }
    assert all(w.path.endswith("/eviction") for w in writes[1:])
    assert _cordoned(cluster, "node1")
    assert _on(cluster, "node1") == {"node-exporter"}  # DaemonSet pods stay
    assert len(_on(cluster, "node2")) == 4  # the evicted pods' replacements

    mark = len(cluster.writes())
    assert "changed=0" in _recap(_run(k8s, tmp_path))
    assert len(cluster.writes()) == mark

    assert "changed=1" in _recap(_run(k8s, tmp_path, uncordon=True))
    assert not _cordoned(cluster, "node1")


def test_drain_stops_on_the_disruption_budget_and_deletes_nothing(
    k8s: FakeKubernetes, tmp_path: Path
) -> None:
    cluster = k8s.cluster
    cluster.add_pdb("shop", "web", {"app": "web"}, min_available=2)  # no web pod may go
    web_pod = next(p for p in _on(cluster, "node1") if p.startswith("web-"))

    result = _run(k8s, tmp_path)
    assert result.returncode != 0
    assert (
        "drain of node node1 stopped: a PodDisruptionBudget refuses the eviction after 2 attempts"
        in result.stdout
    )
    assert "would violate the pod's disruption budget" in result.stdout
    assert "the node stays cordoned" in result.stdout
    evictions = [w for w in cluster.writes() if w.path.endswith(f"/pods/{web_pod}/eviction")]
    assert len(evictions) == 2  # the first attempt and one bounded retry
    assert not [w for w in cluster.writes() if w.method == "DELETE"]
    assert web_pod in _on(cluster, "node1")
    assert _cordoned(cluster, "node1")


def test_drain_refuses_a_node_without_the_compliance_tags(
    k8s: FakeKubernetes, tmp_path: Path
) -> None:
    result = _run(k8s, tmp_path, k8s_node_drain_required_tags={"selfheal_env": "production"})
    assert result.returncode != 0
    assert "localhost is not cleared for automated remediation" in result.stdout
    assert k8s.cluster.requests == []
