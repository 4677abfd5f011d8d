"""The part of kustomize that deploy/k8s uses, so the tests can render the overlays without kubectl.

Supported fields: ``resources`` (files and kustomization folders), ``patches`` (strategic merge patches
found by their own kind and name, and JSON 6902 lists with a ``target``), ``images`` and ``namespace``.
Any other field fails the render, so a kustomization that grows past this subset is noticed, not
half-rendered. Strategic merge here: maps merge, lists of maps with a ``name`` merge by name, other
lists are replaced — kustomize's rule for every list the patches in deploy/k8s touch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images", "namespace"}


def build(folder: Path) -> list[dict[str, Any]]:
    """The manifests ``kustomize build folder`` prints, as dicts."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    assert not unknown, f"{folder}: kustomization fields this renderer does not handle: {unknown}"
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = (folder / resource).resolve()
        docs += build(path) if path.is_dir() else load_all(path)
    for patch in spec.get("patches", []):
        apply_patch(docs, folder / patch["path"], patch.get("target"))
    for image in spec.get("images", []):
        set_image(docs, image)
    if "namespace" in spec:
        for doc in docs:
            doc["metadata"]["namespace"] = spec["namespace"]
    return docs


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} resources {kind}/{name}"
    return found[0]


def apply_patch(docs: list[dict[str, Any]], path: Path, target: dict[str, str] | None) -> None:
    patch = yaml.safe_load(path.read_text())
    if isinstance(patch, list):  # JSON 6902
        assert target, f"{path}: a JSON 6902 patch needs a target"
        doc = find(docs, target["kind"], target["name"])
        for op in patch:
            json6902(doc, op)
        return
    doc = find(docs, patch["kind"], patch["metadata"]["name"])
    assert doc["apiVersion"] == patch["apiVersion"], f"{path}: apiVersion differs from the patched resource"
    merged = merge(doc, patch)
    doc.clear()
    doc.update(merged)


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(_named(x) for x in base + patch):
        by_name = {item["name"]: item for item in base}
        out = [merge(by_name[p["name"]], p) if p["name"] in by_name else p for p in patch]
        patched = {p["name"] for p in patch}
        return [b for b in base if b["name"] not in patched] + out
    return copy.deepcopy(patch)


def _named(item: Any) -> bool:
    return isinstance(item, dict) and "name" in item


def json6902(doc: dict[str, Any], op: dict[str, Any]) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) and last != "-" else last
    if op["op"] == "remove":
        assert not isinstance(node, dict) or key in node, f"remove {op['path']}: not there"
        del node[key]
    elif op["op"] in ("add", "replace"):
        if isinstance(node, list) and key == "-":
            node.append(op["value"])
        elif isinstance(node, list):
            node.insert(key, op["value"])
        else:
            assert op["op"] == "add" or key in node, f"replace {op['path']}: not there"
            node[key] = op["value"]
    else:
        raise AssertionError(f"JSON 6902 op {op['op']} is not handled here")


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Init and app containers of a Deployment's or Job's pod template."""
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def set_image(docs: list[dict[str, Any]], image: dict[str, str]) -> None:
    for doc in docs:
        for container in containers(doc):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                new_name = image.get("newName", name)
                new_tag = image.get("newTag", tag)
                container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name
