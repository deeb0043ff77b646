"""A small, documented subset of kustomize, so overlays build where no kustomize binary is.

`build(directory)` reads `kustomization.yaml` and returns the resources it produces, in
the order kustomize would list them within each kind. Supported fields (all that the
bundle in gitops/ uses; anything else is an error, never silently ignored):

* `resources`: files (one or more YAML documents) and directories holding a kustomization;
* `namespace`: set on every namespaced resource, and on ServiceAccount subjects of
  (Cluster)RoleBindings, as kustomize does;
* `patches`: `path:` files applied as strategic-merge patches to the resource with the same
  kind and name (maps merge; lists of maps with a `name` merge by name, as containers, env,
  ports and volumes do; other lists are replaced; `null` deletes a key);
* `configMapGenerator`: `name`, `files` (`key=path` or `path`), `literals`, `behavior`
  `create`/`merge`/`replace`; the generated names carry no hash suffix, so a kustomization
  that generates must set `generatorOptions: {disableNameSuffixHash: true}`.

`kubectl kustomize` gives the same output for these kustomizations (a test compares them
when kubectl is installed).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from selfheal.errors import ConfigError

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "patches",
    "configMapGenerator",
    "generatorOptions",
}
# Kinds that have no namespace (the ones this bundle can contain).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
}
_MERGE_KEYS = ("name", "containerPort", "port", "mountPath")


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a file, without empty ones."""
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read manifest: {exc}", str(path)) from exc
    return [d for d in docs if d]


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc.get("kind", ""), (doc.get("metadata") or {}).get("name", "")


def _merge_list(base: list[Any], patch: list[Any]) -> list[Any]:
    if not (patch and all(isinstance(x, dict) for x in patch + base)):
        return copy.deepcopy(patch)
    key = next((k for k in _MERGE_KEYS if all(k in x for x in patch + base)), None)
    if key is None:
        return copy.deepcopy(patch)
    out = [copy.deepcopy(x) for x in base]
    for item in patch:
        match = next((x for x in out if x[key] == item[key]), None)
        if match is None:
            out.append(copy.deepcopy(item))
        else:
            out[out.index(match)] = strategic_merge(match, item)
    return out


def strategic_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` merged into a copy of `base` (see the module docs for the rules)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _config_map(spec: dict[str, Any], root: Path) -> dict[str, Any]:
    data: dict[str, str] = {}
    for entry in spec.get("files", ()):
        key, sep, rel = entry.partition("=")
        if not sep:
            key, rel = Path(entry).name, entry
        data[key] = (root / rel).read_text(encoding="utf-8")
    for entry in spec.get("literals", ()):
        key, _, value = entry.partition("=")
        data[key] = value
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": spec["name"]},
        "data": dict(sorted(data.items())),
    }
    if "options" in spec and "labels" in spec["options"]:
        cm["metadata"]["labels"] = dict(spec["options"]["labels"])
    return cm


def build(directory: str | Path) -> list[dict[str, Any]]:
    """The resources the kustomization in `directory` produces."""
    root = Path(directory)
    kfile = root / "kustomization.yaml"
    if not kfile.is_file():
        raise ConfigError("no kustomization.yaml", str(root))
    spec = yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise ConfigError(f"unsupported kustomize fields: {', '.join(sorted(unknown))}", str(kfile))

    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", ()):
        path = root / entry
        resources += build(path) if path.is_dir() else load_documents(path)

    generators = spec.get("configMapGenerator", ())
    if generators and not (spec.get("generatorOptions") or {}).get("disableNameSuffixHash"):
        raise ConfigError("set generatorOptions.disableNameSuffixHash: true", str(kfile))
    for gen in generators:
        made = _config_map(gen, root)
        behavior = gen.get("behavior", "create")
        existing = [r for r in resources if _key(r) == _key(made)]
        if behavior == "create":
            if existing:
                raise ConfigError(f"ConfigMap {gen['name']} already exists", str(kfile))
            resources.append(made)
        elif not existing:
            raise ConfigError(f"ConfigMap {gen['name']} to {behavior} not found", str(kfile))
        else:
            index = resources.index(existing[0])
            resources[index] = strategic_merge(existing[0], made) if behavior == "merge" else made

    for patch_spec in spec.get("patches", ()):
        if set(patch_spec) != {"path"}:
            raise ConfigError("only `patches: - path: FILE` is supported", str(kfile))
        for patch in load_documents(root / patch_spec["path"]):
            targets = [i for i, r in enumerate(resources) if _key(r) == _key(patch)]
            if not targets:
                raise ConfigError(f"patch target {_key(patch)} not found", str(kfile))
            for i in targets:
                resources[i] = strategic_merge(resources[i], patch)

    namespace = spec.get("namespace")
    if namespace:
        for res in resources:
            if res.get("kind") not in CLUSTER_SCOPED:
                res.setdefault("metadata", {})["namespace"] = namespace
            if res.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
                for subject in res.get("subjects", ()):
                    if subject.get("kind") == "ServiceAccount":
                        subject["namespace"] = namespace
    return resources


def dump(resources: list[dict[str, Any]]) -> str:
    """Resources as one multi-document YAML stream."""
    return yaml.safe_dump_all(resources, sort_keys=False, default_flow_style=False)
