"""Every kustomization under gitops/ builds (with the Python kustomize subset, and the same
as `kubectl kustomize` where kubectl is installed), every resource validates offline against
the Kubernetes schemas (kubernetes-validate, strict) or the CRD schemas in
shared/schemas/crds (strict: unknown fields fail), and the PrometheusRule passes
`promtool check rules`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from support import REPO, SHARED

from selfheal.gitops.kustomize import build, strategic_merge

GITOPS = REPO / "gitops"
KUBERNETES_VERSION = "1.32"
KUSTOMIZATIONS = sorted(p.parent for p in GITOPS.rglob("kustomization.yaml"))
IDS = [p.relative_to(GITOPS).as_posix() for p in KUSTOMIZATIONS]


def _strict(schema):
    """Make an OpenAPI v3 structural schema refuse fields it does not declare."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str) and "(?i)" in pattern:  # Go allows the flag mid-pattern
            out["pattern"] = "(?i)" + pattern.replace("(?i)", "")
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_schemas() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted((SHARED / "schemas" / "crds").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema and version.get("served", True):
                    top = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
                    props = {**top, "metadata": {"type": "object"}, **schema["properties"]}
                    found[(f"{group}/{version['name']}", kind)] = _strict(
                        {**schema, "properties": props}
                    )
    return found


@pytest.fixture(scope="module")
def crds(shared) -> dict[tuple[str, str], dict]:
    return _crd_schemas()


def _validate(resource: dict, crds) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")

    key = (resource["apiVersion"], resource["kind"])
    assert resource.get("metadata", {}).get("name"), f"{key}: no metadata.name"
    if key in crds:
        errors = list(jsonschema.Draft7Validator(crds[key]).iter_errors(resource))
        assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
        return
    assert "." not in resource["apiVersion"].split("/")[0] or resource["apiVersion"].endswith(
        ".k8s.io/v1"
    ), f"{key}: a custom resource with no CRD schema in shared/schemas/crds"
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_every_directory_with_manifests_is_a_kustomization() -> None:
    dirs = {p.parent for p in GITOPS.rglob("*.yaml")} | {p.parent for p in GITOPS.rglob("*.yml")}
    assert dirs <= set(KUSTOMIZATIONS), dirs - set(KUSTOMIZATIONS)
    assert {"overlays/staging", "overlays/production", "argocd", "flux", "freeze-guard"} <= set(IDS)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=IDS)
def test_kustomization_builds_and_validates(directory: Path, crds) -> None:
    resources = build(directory)
    assert resources
    names = [(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]) for r in resources]
    assert len(names) == len(set(names)), "duplicate resources"
    for resource in resources:
        _validate(resource, crds)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=IDS)
def test_subset_matches_kubectl_kustomize(directory: Path) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    key = lambda r: (r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"])  # noqa: E731
    theirs = sorted((d for d in yaml.safe_load_all(out) if d), key=key)
    ours = sorted(build(directory), key=key)
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)


def test_overlays_differ_where_they_should() -> None:
    def get(resources, kind):
        return next(r for r in resources if r["kind"] == kind)

    staging = build(GITOPS / "overlays/staging")
    production = build(GITOPS / "overlays/production")
    assert {r["metadata"].get("namespace") for r in staging} == {"selfheal-staging"}
    assert {r["metadata"].get("namespace") for r in production} == {"selfheal-production"}
    prod = get(production, "Deployment")
    assert prod["spec"]["replicas"] == 3
    env = {e["name"]: e for e in prod["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SELFHEAL_STORE"] == {
        "name": "SELFHEAL_STORE",
        "valueFrom": {"secretKeyRef": {"name": "selfheal-postgres", "key": "dsn"}},
    }
    assert get(staging, "Deployment")["spec"]["replicas"] == 1
    binding = get(production, "RoleBinding")
    assert binding["subjects"][0]["namespace"] == "selfheal-production"


def test_dispatcher_deployment_is_hardened() -> None:
    deployment = next(r for r in build(GITOPS / "base") if r["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_no_secret_values_in_the_bundle() -> None:
    for directory in KUSTOMIZATIONS:
        assert not [r for r in build(directory) if r["kind"] == "Secret"], directory


def test_argocd_and_flux_settings() -> None:
    apps = [r for r in build(GITOPS / "argocd") if r["kind"] == "Application"]
    assert {a["metadata"]["name"] for a in apps} == {"selfheal-staging", "selfheal-production"}
    for app in apps:
        policy = app["spec"]["syncPolicy"]
        assert policy["automated"] == {"prune": True, "selfHeal": True, "allowEmpty": False}
        assert policy["retry"]["backoff"]["factor"] == 2
    project = next(r for r in build(GITOPS / "argocd") if r["kind"] == "AppProject")
    assert project["spec"]["syncWindows"]
    flux = [r for r in build(GITOPS / "flux") if r["kind"] == "Kustomization"]
    for ks in flux:
        assert ks["spec"]["prune"] is True
        assert ks["spec"]["interval"] and ks["spec"]["retryInterval"]
        assert ks["spec"]["healthChecks"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    (rule,) = [r for r in build(GITOPS / "base/monitoring") if r["kind"] == "PrometheusRule"]
    groups = tmp_path / "rules.yml"
    groups.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(groups)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lab = [
        group
        for path in sorted((REPO / "monitoring/prometheus/rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    assert rule["spec"]["groups"] == lab, "the same rules the lab's Prometheus loads"


def test_strategic_merge_rules() -> None:
    base = {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": None}]}]}}
    assert strategic_merge(base, patch) == {
        "spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}
    }
    assert strategic_merge({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
