"""A contract mock of the Kubernetes API server, for tests where no cluster can run.

It follows the Kubernetes API reference (https://kubernetes.io/docs/reference/kubernetes-api/)
and the API concepts (https://kubernetes.io/docs/reference/using-api/api-concepts/) for exactly
the endpoints the `kubernetes.core` modules of the k8s runbooks call, and nothing more:

- discovery: `GET /version`, `/api`, `/api/v1`, `/apis`, `/apis/apps/v1`, `/apis/policy/v1`
  (what `kubernetes.dynamic` requests to find resources);
- `apps/v1` Deployments: get, list, patch (strategic-merge, merge and JSON patch, as the
  client sends them), and the `scale` subresource (get, patch);
- `apps/v1` ReplicaSets: list by namespace with a label selector;
- `v1` Pods: list (per namespace or across namespaces, label and field selectors), get,
  delete, and the `eviction` subresource (`policy/v1` Eviction: 201, or 429 when a
  PodDisruptionBudget would be violated);
- `v1` Nodes: get, list, patch (`spec.unschedulable`);
- `policy/v1` PodDisruptionBudgets: list, get.

Errors are `Status` objects with the reference's codes (404 NotFound, 405, 415, 422, 429
TooManyRequests). Writes honour `dryRun=All` (validated, not persisted).

Behind the API sits an idealised, synchronous controller so that reads after writes look
like a cluster that has settled: a Deployment's pod template maps to one ReplicaSet (by
`pod-template-hash`), a new template becomes the next revision
(`deployment.kubernetes.io/revision`), ReplicaSets keep their pod count and statuses are
computed from the pods. Pods of an image listed in `crashing_images` crash-loop
(`CrashLoopBackOff`, never ready); a rollout to such an image stalls with one new pod while
the previously serving ReplicaSet keeps its pods, and the Deployment reports
`Progressing=False, ProgressDeadlineExceeded`. Every request is recorded in `requests`, so
tests can assert what was (not) written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

VERBS_RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _resource(name: str, kind: str, namespaced: bool, verbs: list[str], **extra) -> dict:
    return {
        "name": name,
        "singularName": "",
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
        **extra,
    }


DISCOVERY: dict[str, dict] = {
    "v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            _resource("nodes", "Node", False, VERBS_RW, shortNames=["no"]),
            _resource("pods", "Pod", True, VERBS_RW, shortNames=["po"]),
            _resource("pods/eviction", "Eviction", True, ["create"], group="policy", version="v1"),
            _resource("pods/status", "Pod", True, ["get", "patch", "update"]),
        ],
    },
    "apps/v1": {
        "kind": "APIResourceList",
        "groupVersion": "apps/v1",
        "resources": [
            _resource("deployments", "Deployment", True, VERBS_RW, shortNames=["deploy"]),
            _resource(
                "deployments/scale",
                "Scale",
                True,
                ["get", "patch", "update"],
                group="autoscaling",
                version="v1",
            ),
            _resource("deployments/status", "Deployment", True, ["get", "patch", "update"]),
            _resource("replicasets", "ReplicaSet", True, VERBS_RW, shortNames=["rs"]),
        ],
    },
    "policy/v1": {
        "kind": "APIResourceList",
        "groupVersion": "policy/v1",
        "resources": [
            _resource(
                "poddisruptionbudgets", "PodDisruptionBudget", True, VERBS_RW, shortNames=["pdb"]
            ),
        ],
    },
}

API_GROUPS = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [
        {
            "name": group,
            "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"},
        }
        for group in ("apps", "policy")
    ],
}

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class ApiError(Exception):
    """An error the API answers with a `Status` object."""

    REASONS: ClassVar[dict[int, str]] = {
        400: "BadRequest",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "Conflict",
        415: "UnsupportedMediaType",
        422: "Invalid",
        429: "TooManyRequests",
    }

    def __init__(self, code: int, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": self.REASONS.get(code, "InternalError"),
            "details": details or {},
            "code": code,
        }


# --- selectors and patches -------------------------------------------------------------


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_labels(selector: dict, labels: dict[str, str]) -> bool:
    """A LabelSelector object (matchLabels only: what the fixtures use)."""
    if selector.get("matchExpressions"):
        raise ApiError(422, "matchExpressions are not supported by this mock")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


FIELD_PATHS = {
    "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName") or "",
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
    "status.phase": lambda o: o.get("status", {}).get("phase", ""),
}


def field_selector_matches(selector: str, obj: dict) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        if key not in FIELD_PATHS:
            raise ApiError(400, f'field label not supported: "{key}"')
        if (FIELD_PATHS[key](obj) == value) == negate:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (`application/merge-patch+json`)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch, for the fields these resources have: maps merge like a merge
    patch, lists of named objects (containers, env, ports) merge on their `name` key, other
    lists are replaced."""
    if isinstance(patch, dict) and isinstance(target, dict):
        result = dict(target)
        for key, value in patch.items():
            if key.startswith("$"):
                raise ApiError(422, f"patch directive {key} is not supported by this mock")
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        return result
    if isinstance(patch, list) and isinstance(target, list) and _named(patch) and _named(target):
        merged = {item["name"]: item for item in target}
        for item in patch:
            merged[item["name"]] = strategic_merge_patch(merged.get(item["name"]), item)
        return list(merged.values())
    return merge_patch(target, patch)


def _named(items: list) -> bool:
    return all(isinstance(i, dict) and "name" in i for i in items)


def json_patch(target: dict, operations: list) -> dict:
    """RFC 6902 JSON patch (`application/json-patch+json`): add, remove, replace, test."""
    doc = copy.deepcopy(target)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op["value"])
            elif kind == "remove":
                parent.pop(index)
            elif kind == "replace":
                parent[index] = op["value"]
            elif kind == "test" and parent[index] != op["value"]:
                raise ApiError(422, f"test operation failed at {op['path']}")
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in parent:
                raise ApiError(422, f"replace operation does not apply: {op['path']} is missing")
            parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if last not in parent:
                raise ApiError(422, f"remove operation does not apply: {op['path']} is missing")
            del parent[last]
        elif kind == "test":
            if parent.get(last) != op["value"]:
                raise ApiError(422, f"test operation failed at {op['path']}")
        else:
            raise ApiError(422, f"unsupported JSON patch operation {kind!r}")
    return doc


PATCHERS = {
    "application/json-patch+json": json_patch,
    "application/merge-patch+json": merge_patch,
    "application/strategic-merge-patch+json": strategic_merge_patch,
}


# --- the cluster ------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_hash(template: dict) -> str:
    clean = copy.deepcopy(template)
    clean.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Cluster:
    """Objects by (resource, namespace, name); namespace "" for cluster-scoped ones."""

    crashing_images: set[str] = field(default_factory=set)
    crash_restart_count: int = 7
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _version: int = 100
    _pod_serial: int = 0

    # fixtures -------------------------------------------------------------------------

    def add_node(self, name: str, unschedulable: bool = False) -> dict:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
        return self._store("nodes", "", node)

    def add_deployment(
        self, namespace: str, name: str, image: str, replicas: int = 2, labels: dict | None = None
    ) -> dict:
        """A Deployment that has rolled out `image` as revision 1."""
        selector = {"app": name}
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**selector, **(labels or {})},
                "annotations": {},
                "generation": 1,
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": dict(selector)},
                    "spec": {"containers": [{"name": name, "image": image}]},
                },
            },
        }
        self._store("deployments", namespace, deployment)
        self.reconcile(namespace, name)
        return self.get("deployments", namespace, name)

    def roll_out(self, namespace: str, name: str, image: str) -> dict:
        """What `kubectl set image` does: a new template, so the next revision."""
        deployment = self.get("deployments", namespace, name)
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image
        deployment["metadata"]["generation"] += 1
        self._store("deployments", namespace, deployment)
        self.reconcile(namespace, name)
        return self.get("deployments", namespace, name)

    def add_pdb(self, namespace: str, name: str, match: dict, min_available: int) -> dict:
        pdb = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": match}},
        }
        return self._store("poddisruptionbudgets", namespace, pdb)

    def add_daemon_pod(self, namespace: str, name: str, node: str) -> dict:
        """A DaemonSet's pod on `node` (the DaemonSet itself is not modelled)."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"app": name},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "DaemonSet",
                        "name": name,
                        "uid": name,
                        "controller": True,
                    }
                ],
            },
            "spec": {"nodeName": node, "containers": [{"name": name, "image": f"{name}:1"}]},
        }
        pod["status"] = self._pod_status(pod, crashing=False)
        return self._store("pods", namespace, pod)

    def crash_pod(self, namespace: str, name: str) -> None:
        """One pod crash-loops although its template is fine (a bad node, a corrupt cache)."""
        pod = self.get("pods", namespace, name)
        pod["metadata"].setdefault("annotations", {})["fake/crashing"] = "true"
        pod["status"] = self._pod_status(pod, crashing=True)
        self._store("pods", namespace, pod)
        self._refresh_statuses(namespace)

    def mark_revision_healthy(self, namespace: str, name: str, revision: int, key: str) -> None:
        for rs in self.list("replicasets", namespace):
            owner = rs["metadata"]["ownerReferences"][0]["name"]
            if owner == name and int(rs["metadata"]["annotations"][REVISION]) == revision:
                rs["metadata"]["annotations"][key] = "true"
                self._store("replicasets", namespace, rs)

    # reads ----------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> dict:
        with self.lock:
            try:
                return copy.deepcopy(self.objects[(resource, namespace, name)])
            except KeyError:
                raise ApiError(404, f'{resource} "{name}" not found') from None

    def list(self, resource: str, namespace: str | None = None) -> list[dict]:
        with self.lock:
            return [
                copy.deepcopy(obj)
                for (kind, ns, _), obj in sorted(self.objects.items())
                if kind == resource and (namespace is None or ns == namespace)
            ]

    def pods_of(self, namespace: str, deployment: str) -> list[dict]:
        selector = self.get("deployments", namespace, deployment)["spec"]["selector"]
        return [p for p in self.list("pods", namespace) if match_labels(selector, _labels(p))]

    def writes(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.is_write]

    # controller -----------------------------------------------------------------------

    def _store(self, resource: str, namespace: str, obj: dict) -> dict:
        with self.lock:
            self._version += 1
            obj["metadata"]["resourceVersion"] = str(self._version)
            obj["metadata"].setdefault(
                "uid",
                hashlib.sha1(
                    f"{resource}/{namespace}/{obj['metadata']['name']}".encode()
                ).hexdigest(),
            )
            obj["metadata"].setdefault("creationTimestamp", _now())
            if namespace:
                obj["metadata"]["namespace"] = namespace
            self.objects[(resource, namespace, obj["metadata"]["name"])] = obj
            return copy.deepcopy(obj)

    def _crashing(self, template: dict) -> bool:
        images = {c.get("image") for c in template["spec"].get("containers", [])}
        return bool(images & self.crashing_images)

    def reconcile(self, namespace: str, name: str) -> None:
        """Make the ReplicaSets and pods match the Deployment, as its controller would."""
        with self.lock:
            deployment = self.get("deployments", namespace, name)
            template = deployment["spec"]["template"]
            pod_hash = template_hash(template)
            owned = [
                rs
                for rs in self.list("replicasets", namespace)
                if rs["metadata"]["ownerReferences"][0]["name"] == name
            ]
            revisions = [int(rs["metadata"]["annotations"][REVISION]) for rs in owned]
            newest = max(revisions, default=0)
            current = next((rs for rs in owned if _labels(rs).get(HASH_LABEL) == pod_hash), None)
            if current is None:
                current = self._new_replicaset(deployment, pod_hash, newest + 1)
                owned.append(current)
            elif int(current["metadata"]["annotations"][REVISION]) != newest:
                current["metadata"]["annotations"][REVISION] = str(newest + 1)  # rollback
            desired = int(deployment["spec"].get("replicas", 1))
            old = [rs for rs in owned if rs["metadata"]["name"] != current["metadata"]["name"]]
            if self._crashing(template) and desired > 0:
                # The rollout stalls: one surge pod, the serving ReplicaSet keeps its pods.
                serving = max(old, key=lambda rs: self._ready_count(rs), default=None)
                for rs in old:
                    keep = rs is serving and self._ready_count(rs) > 0
                    rs["spec"]["replicas"] = rs["spec"]["replicas"] if keep else 0
                current["spec"]["replicas"] = 1
            else:
                for rs in old:
                    rs["spec"]["replicas"] = 0
                current["spec"]["replicas"] = desired
            for rs in owned:
                self._store("replicasets", namespace, rs)
                self._sync_pods(rs)
            deployment["metadata"].setdefault("annotations", {})[REVISION] = current["metadata"][
                "annotations"
            ][REVISION]
            self._store("deployments", namespace, deployment)
            self._refresh_statuses(namespace)

    def _new_replicaset(self, deployment: dict, pod_hash: str, revision: int) -> dict:
        template = copy.deepcopy(deployment["spec"]["template"])
        template["metadata"].setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector["matchLabels"][HASH_LABEL] = pod_hash
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{deployment['metadata']['name']}-{pod_hash}",
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision)},
                "ownerReferences": [_owner(deployment)],
                "generation": 1,
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }

    def _sync_pods(self, rs: dict) -> None:
        namespace = rs["metadata"]["namespace"]
        pods = [p for p in self.list("pods", namespace) if _owner_name(p) == rs["metadata"]["name"]]
        want = int(rs["spec"]["replicas"])
        for pod in pods[want:]:
            del self.objects[("pods", namespace, pod["metadata"]["name"])]
        for _ in range(want - len(pods)):
            self._new_pod(rs)

    def _new_pod(self, rs: dict) -> None:
        self._pod_serial += 1
        template = rs["spec"]["template"]
        node = self._schedulable_node()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{rs['metadata']['name']}-p{self._pod_serial:04d}",
                "labels": dict(template["metadata"]["labels"]),
                "annotations": dict(template["metadata"].get("annotations", {})),
                "ownerReferences": [_owner(rs)],
            },
            "spec": {**copy.deepcopy(template["spec"]), **({"nodeName": node} if node else {})},
        }
        pod["status"] = self._pod_status(pod, crashing=self._crashing(template))
        self._store("pods", rs["metadata"]["namespace"], pod)

    def _schedulable_node(self) -> str | None:
        nodes = [n for n in self.list("nodes") if not n["spec"].get("unschedulable")]
        if not nodes:
            return None
        counts = {n["metadata"]["name"]: 0 for n in nodes}
        for pod in self.list("pods"):
            if pod["spec"].get("nodeName") in counts:
                counts[pod["spec"]["nodeName"]] += 1
        return min(counts, key=lambda n: (counts[n], n))  # spread, deterministically

    def _pod_status(self, pod: dict, crashing: bool) -> dict:
        if not pod["spec"].get("nodeName"):
            return {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
        statuses = []
        for container in pod["spec"]["containers"]:
            if crashing:
                state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": "back-off 5m0s restarting failed container",
                    }
                }
                restarts = self.crash_restart_count
            else:
                state = {"running": {"startedAt": _now()}}
                restarts = 0
            statuses.append(
                {
                    "name": container["name"],
                    "image": container.get("image"),
                    # Required by the API's ContainerStatus schema (and the Python client).
                    "imageID": "sha256:" + hashlib.sha256(container["image"].encode()).hexdigest(),
                    "containerID": f"containerd://{pod['metadata']['name']}-{container['name']}",
                    "started": not crashing,
                    "ready": not crashing,
                    "restartCount": restarts,
                    "state": state,
                }
            )
        ready = "False" if crashing else "True"
        return {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": statuses,
        }

    def _ready_count(self, rs: dict) -> int:
        name = rs["metadata"]["name"]
        return sum(
            1
            for p in self.list("pods", rs["metadata"]["namespace"])
            if _owner_name(p) == name and _ready(p)
        )

    def _refresh_statuses(self, namespace: str) -> None:
        for rs in self.list("replicasets", namespace):
            pods = [
                p for p in self.list("pods", namespace) if _owner_name(p) == rs["metadata"]["name"]
            ]
            ready = sum(1 for p in pods if _ready(p))
            rs["status"] = {
                "replicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": 1,
            }
            self.objects[("replicasets", namespace, rs["metadata"]["name"])] = rs
        for deployment in self.list("deployments", namespace):
            self._deployment_status(deployment)

    def _deployment_status(self, deployment: dict) -> None:
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        owned = [
            rs
            for rs in self.list("replicasets", namespace)
            if rs["metadata"]["ownerReferences"][0]["name"] == name
        ]
        pod_hash = template_hash(deployment["spec"]["template"])
        current = [rs for rs in owned if _labels(rs).get(HASH_LABEL) == pod_hash]
        total = sum(rs["status"]["replicas"] for rs in owned)
        available = sum(rs["status"]["availableReplicas"] for rs in owned)
        updated = sum(rs["status"]["replicas"] for rs in current)
        updated_ready = sum(rs["status"]["availableReplicas"] for rs in current)
        desired = int(deployment["spec"].get("replicas", 1))
        complete = updated == desired == total and updated_ready == desired
        stalled = self._crashing(deployment["spec"]["template"]) and desired > 0
        progressing = (
            {
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{name}-{pod_hash}" has timed out progressing.',
            }
            if stalled
            else {
                "status": "True",
                "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                "message": f'ReplicaSet "{name}-{pod_hash}" has successfully progressed.',
            }
        )
        max_unavailable = desired // 4  # the default 25%, rounded down
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            **({"unavailableReplicas": total - available} if total > available else {}),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available >= desired - max_unavailable else "False",
                },
                {"type": "Progressing", **progressing},
            ],
        }
        self.objects[("deployments", namespace, name)] = deployment

    # writes through the API -----------------------------------------------------------

    def patch_deployment(self, namespace: str, name: str, patch: Any, ctype: str, dry: bool):
        with self.lock:
            before = self.get("deployments", namespace, name)
            patched = _apply_patch(before, patch, ctype)
            if patched.get("metadata", {}).get("name") != name:
                raise ApiError(422, "metadata.name is immutable")
            if patched["spec"] != before["spec"]:
                patched["metadata"]["generation"] = before["metadata"]["generation"] + 1
            _validate_deployment(patched)
            if dry:
                return patched
            self._store("deployments", namespace, patched)
            self.reconcile(namespace, name)
            return self.get("deployments", namespace, name)

    def scale_of(self, namespace: str, name: str) -> dict:
        deployment = self.get("deployments", namespace, name)
        labels = deployment["spec"]["selector"]["matchLabels"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": deployment["metadata"]["resourceVersion"],
            },
            "spec": {"replicas": deployment["spec"]["replicas"]},
            "status": {
                "replicas": deployment.get("status", {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
            },
        }

    def patch_scale(self, namespace: str, name: str, patch: Any, ctype: str, dry: bool) -> dict:
        with self.lock:
            scale = _apply_patch(self.scale_of(namespace, name), patch, ctype)
            replicas = scale.get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, f"spec.replicas: Invalid value: {replicas!r}")
            if not dry:
                deployment = self.get("deployments", namespace, name)
                if deployment["spec"]["replicas"] != replicas:
                    deployment["spec"]["replicas"] = replicas
                    deployment["metadata"]["generation"] += 1
                    self._store("deployments", namespace, deployment)
                    self.reconcile(namespace, name)
                return self.scale_of(namespace, name)
            return scale

    def patch_node(self, name: str, patch: Any, ctype: str, dry: bool) -> dict:
        with self.lock:
            patched = _apply_patch(self.get("nodes", "", name), patch, ctype)
            return patched if dry else self._store("nodes", "", patched)

    def delete_pod(self, namespace: str, name: str, dry: bool) -> dict:
        with self.lock:
            pod = self.get("pods", namespace, name)
            if not dry:
                del self.objects[("pods", namespace, name)]
                self._replace_pod(pod)
            return pod

    def _replace_pod(self, pod: dict) -> None:
        owner = _owner_name(pod)
        namespace = pod["metadata"]["namespace"]
        if owner and ("replicasets", namespace, owner) in self.objects:
            self._sync_pods(self.get("replicasets", namespace, owner))
        self._refresh_statuses(namespace)

    def pdb_status(self, pdb: dict) -> dict:
        namespace = pdb["metadata"]["namespace"]
        pods = [
            p
            for p in self.list("pods", namespace)
            if match_labels(pdb["spec"]["selector"], _labels(p))
        ]
        healthy = sum(1 for p in pods if _ready(p))
        desired = int(pdb["spec"].get("minAvailable", 0))
        return {
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": len(pods),
            "disruptionsAllowed": max(0, healthy - desired),
            "observedGeneration": 1,
        }

    def evict(self, namespace: str, name: str, dry: bool) -> dict:
        """The Eviction API: refuse (429) when a PodDisruptionBudget would be violated."""
        with self.lock:
            pod = self.get("pods", namespace, name)
            for pdb in self.list("poddisruptionbudgets", namespace):
                if not match_labels(pdb["spec"]["selector"], _labels(pod)):
                    continue
                status = self.pdb_status(pdb)
                blocked = (
                    status["disruptionsAllowed"] < 1
                    if _ready(pod)
                    else status["currentHealthy"] < status["desiredHealthy"]
                )
                if blocked:
                    cause = (
                        f"The disruption budget {pdb['metadata']['name']} needs "
                        f"{status['desiredHealthy']} healthy pods and has "
                        f"{status['currentHealthy']} currently"
                    )
                    raise ApiError(
                        429,
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        {"causes": [{"reason": "DisruptionBudget", "message": cause}]},
                    )
            if not dry:
                del self.objects[("pods", namespace, name)]
                self._replace_pod(pod)
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            }


def _apply_patch(obj: dict, patch: Any, ctype: str) -> dict:
    patcher = PATCHERS.get(ctype.split(";")[0].strip())
    if patcher is None:
        raise ApiError(415, f"the body of the request was in an unknown format: {ctype}")
    if (ctype.startswith("application/json-patch")) != isinstance(patch, list):
        raise ApiError(400, f"the patch does not match its content type {ctype}")
    return patcher(obj, patch)


def _validate_deployment(deployment: dict) -> None:
    spec = deployment.get("spec", {})
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    if not match_labels(spec.get("selector", {}), labels):
        raise ApiError(
            422,
            "spec.template.metadata.labels: Invalid value: `selector` does "
            "not match template `labels`",
        )
    if not spec.get("template", {}).get("spec", {}).get("containers"):
        raise ApiError(422, "spec.template.spec.containers: Required value")


def _labels(obj: dict) -> dict:
    return obj.get("metadata", {}).get("labels") or {}


def _owner(obj: dict) -> dict:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owner_name(obj: dict) -> str | None:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return refs[0]["name"] if refs else None


def _ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# --- HTTP ---------------------------------------------------------------------------------

LIST_KINDS = {
    "pods": ("v1", "PodList"),
    "nodes": ("v1", "NodeList"),
    "deployments": ("apps/v1", "DeploymentList"),
    "replicasets": ("apps/v1", "ReplicaSetList"),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudgetList"),
}
GROUP_OF = {
    "pods": "/api/v1",
    "nodes": "/api/v1",
    "deployments": "/apis/apps/v1",
    "replicasets": "/apis/apps/v1",
    "poddisruptionbudgets": "/apis/policy/v1",
}


def route(cluster: Cluster, method: str, path: str, query: dict, ctype: str, body: Any):
    """(status code, JSON document) for one request."""
    dry = "All" in query.get("dryRun", [])
    static = {
        "/version": VERSION,
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
        "/apis": API_GROUPS,
        "/api/v1": DISCOVERY["v1"],
        "/apis/apps/v1": DISCOVERY["apps/v1"],
        "/apis/policy/v1": DISCOVERY["policy/v1"],
    }
    if path in static:
        if method != "GET":
            raise ApiError(405, f"{method} is not allowed on {path}")
        return 200, static[path]
    parts = path.strip("/").split("/")
    prefix = "/" + "/".join(parts[:2] if parts[0] == "api" else parts[:3])
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    namespace = None
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in GROUP_OF or GROUP_OF[rest[0]] != prefix:
        raise ApiError(404, f"the server could not find the requested resource ({path})")
    resource, name, sub = rest[0], (rest[1:2] or [None])[0], (rest[2:3] or [None])[0]
    if (resource == "nodes") != (namespace is None) and not (resource == "pods" and name is None):
        raise ApiError(404, f"the server could not find the requested resource ({path})")
    key = (method, resource, sub)
    if name is None:
        if method != "GET":
            raise ApiError(405, f"{method} on a collection is not supported by this mock")
        return 200, _list(cluster, resource, namespace, query)
    ns = namespace or ""
    handlers = {
        ("GET", "deployments", None): lambda: cluster.get("deployments", ns, name),
        ("PATCH", "deployments", None): lambda: cluster.patch_deployment(
            ns, name, body, ctype, dry
        ),
        ("GET", "deployments", "scale"): lambda: cluster.scale_of(ns, name),
        ("PATCH", "deployments", "scale"): lambda: cluster.patch_scale(ns, name, body, ctype, dry),
        ("GET", "pods", None): lambda: cluster.get("pods", ns, name),
        ("DELETE", "pods", None): lambda: cluster.delete_pod(ns, name, dry),
        ("POST", "pods", "eviction"): lambda: cluster.evict(ns, name, dry),
        ("GET", "nodes", None): lambda: cluster.get("nodes", "", name),
        ("PATCH", "nodes", None): lambda: cluster.patch_node(name, body, ctype, dry),
        ("GET", "poddisruptionbudgets", None): lambda: _with_pdb_status(
            cluster, cluster.get("poddisruptionbudgets", ns, name)
        ),
        ("GET", "replicasets", None): lambda: cluster.get("replicasets", ns, name),
    }
    if key not in handlers:
        raise ApiError(405, f"{method} {resource}{'/' + sub if sub else ''} is not supported")
    if method == "POST" and sub == "eviction":
        if not isinstance(body, dict) or body.get("kind", "Eviction") != "Eviction":
            raise ApiError(400, "the body of an eviction must be an Eviction")
        return 201, handlers[key]()
    return 200, handlers[key]()


def _with_pdb_status(cluster: Cluster, pdb: dict) -> dict:
    return {**pdb, "status": cluster.pdb_status(pdb)}


def _list(cluster: Cluster, resource: str, namespace: str | None, query: dict) -> dict:
    labels = (query.get("labelSelector") or [""])[0]
    fields = (query.get("fieldSelector") or [""])[0]
    items = [
        obj
        for obj in cluster.list(resource, namespace)
        if label_selector_matches(labels, _labels(obj)) and field_selector_matches(fields, obj)
    ]
    if resource == "poddisruptionbudgets":
        items = [_with_pdb_status(cluster, pdb) for pdb in items]
    for item in items:  # list items carry no kind/apiVersion on the wire
        item.pop("kind", None)
        item.pop("apiVersion", None)
    api_version, kind = LIST_KINDS[resource]
    with cluster.lock:
        version = str(cluster._version)
    return {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": version},
        "items": items,
    }


class _Handler(BaseHTTPRequestHandler):
    cluster: Cluster  # set on the subclass made per server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read `cluster.requests` instead

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        ctype = self.headers.get("Content-Type", "")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self.cluster.lock:
            self.cluster.requests.append(Request(self.command, url.path, query, ctype, body))
        try:
            if raw and not isinstance(body, dict | list):
                raise ApiError(400, "the request body is not JSON")
            code, doc = route(self.cluster, self.command, url.path, query, ctype, body)
        except ApiError as err:
            code, doc = err.code, err.status
        payload = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


@dataclass
class FakeKubernetes:
    """A running fake API server on 127.0.0.1 and the cluster behind it."""

    cluster: Cluster
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """A kubeconfig for this server (JSON is YAML, which kubeconfig loaders read)."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "contract-test"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(json.dumps(doc, indent=2))
        return path


@contextmanager
def serve(cluster: Cluster | None = None) -> Iterator[FakeKubernetes]:
    """Run the fake on a free port of 127.0.0.1 until the block ends."""
    cluster = cluster or Cluster()
    handler = type("Handler", (_Handler,), {"cluster": cluster})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-k8s-api", daemon=True)
    thread.start()
    try:
        yield FakeKubernetes(cluster, server, thread)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
