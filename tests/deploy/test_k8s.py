"""deploy/k8s checked without a cluster: every overlay rendered (tests/deploy/kustomize_lite.py) and
every manifest validated offline — Kubernetes kinds against the schemas ``kubernetes-validate`` bundles
(strict: unknown fields fail), KEDA's ScaledObject and TriggerAuthentication against the KEDA CRDs' schema
that ``cloudcoil-models-keda`` bundles (as pydantic models; here made strict the same way). Then the
manifests are held against the code: ``smoothguard`` commands parse, ``SMOOTHGUARD_*`` names are Settings
fields, KEDA watches the GPU queues' Redis lists.
"""

from __future__ import annotations

import os
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from shared.config import Settings
from shared.pipeline import GPU_LANES
from shared.tools.cli import build_parser
from tests.deploy.kustomize_lite import build, containers, find

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
GPU_QUEUES = {"gpu", "gpu-audits"}  # Redis list key = queue name (kombu's Redis transport)
ROUND_SECONDS = 120  # a generous round of a 7B model: one batched generate of max_new_tokens
SMOOTHGUARD_NAME = re.compile(r"\bSMOOTHGUARD_[A-Z0-9_]+")


@cache
def rendered(folder: Path) -> tuple[dict[str, Any], ...]:
    return tuple(build(folder))


def all_renders() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{f.name}/{d['kind']}/{d['metadata']['name']}", d) for f in [K8S / "base", *OVERLAYS] for d in rendered(f)
    ]


# --- schemas ---------------------------------------------------------------------------------------


@cache
def keda_schemas() -> dict[str, dict[str, Any]]:
    """KEDA's CRD schemas (cloudcoil-models-keda), unknown fields refused like kubectl's strict validation."""
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication

    return {m.__name__: strict(m.model_json_schema(by_alias=True)) for m in (ScaledObject, TriggerAuthentication)}


def strict(schema: Any) -> Any:
    """``additionalProperties: false`` on every object schema that lists its properties and allows no map."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    return [strict(s) for s in schema] if isinstance(schema, list) else schema


def validate(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        schema = keda_schemas()[doc["kind"]]
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    else:
        kubernetes_validate.validate(doc, latest_version(), strict=True)


def test_overlays_exist():
    assert {p.name for p in OVERLAYS} >= {"single-gpu", "autoscale"}


@pytest.mark.parametrize("where,doc", all_renders(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_manifest_validates(where, doc):
    validate(doc)


def test_the_validators_catch_mistakes():
    """A typo and a wrong type fail: the checks above are not vacuous."""
    deployment = find(list(rendered(K8S / "base")), "Deployment", "gpu-worker")
    bad = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, latest_version(), strict=True)
    scaled = find(list(rendered(K8S / "overlays" / "autoscale")), "ScaledObject", "gpu-worker")
    for mistake in ({"minReplicas": 1}, {"maxReplicaCount": "8"}):
        with pytest.raises(jsonschema.ValidationError):
            validate({**scaled, "spec": {**scaled["spec"], **mistake}})
    trigger = scaled["spec"]["triggers"][0]
    with pytest.raises(jsonschema.ValidationError):  # scaler metadata are strings
        validate({**scaled, "spec": {**scaled["spec"], "triggers": [{**trigger, "metadata": {"listLength": 4}}]}})


# --- what the manifests run ------------------------------------------------------------------------


def commands_of(doc: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every container command and exec probe."""
    out = []
    for c in containers(doc):
        if "command" in c:
            out.append((f"{c['name']}.command", [*c["command"], *c.get("args", [])]))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if "exec" in c.get(probe, {}):
                out.append((f"{c['name']}.{probe}", c[probe]["exec"]["command"]))
    return out


@pytest.mark.parametrize("where,doc", all_renders(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_smoothguard_command_parses(where, doc):
    for what, argv in commands_of(doc):
        if argv[0] != "smoothguard":
            continue
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"{where} {what}: `{shlex.join(argv)}` is not a smoothguard command (exit {exc.code})")


def test_every_smoothguard_name_is_a_settings_field():
    known = {"SMOOTHGUARD_" + name.upper() for name in Settings.model_fields}
    for path in sorted(K8S.rglob("*.yaml")):
        unknown = set(SMOOTHGUARD_NAME.findall(path.read_text())) - known
        assert not unknown, f"{path.relative_to(ROOT)} names settings that Settings lacks: {unknown}"


# What an operator's Secret smoothguard-secrets holds (deploy/README.md), with made-up strong values.
SECRET = {
    "SMOOTHGUARD_DATABASE_URL": "postgresql://smoothguard:9f8e7d6c5b4a3210@postgres.db.svc:5432/smoothguard",
    "SMOOTHGUARD_REDIS_URL": "redis://:0a1b2c3d4e5f6789@redis.smoothguard.svc:6379/0",
    "SMOOTHGUARD_S3_ACCESS_KEY": "smoothguard-app",
    "SMOOTHGUARD_S3_SECRET_KEY": "0f1e2d3c4b5a69788796a5b4",
}


def test_config_map_and_secret_validate_as_production_settings(monkeypatch):
    for folder in OVERLAYS:
        data = find(list(rendered(folder)), "ConfigMap", "smoothguard-config")["data"]
        for key in [k for k in os.environ if k.startswith("SMOOTHGUARD_")]:
            monkeypatch.delenv(key)
        for key, value in {**data, **SECRET}.items():
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)  # production refuses weak secrets: these pass
        assert settings.environment == "production" and settings.hf_offline and settings.model


def test_no_secret_is_in_git():
    for where, doc in all_renders():
        assert doc["kind"] != "Secret", f"{where}: secrets are created outside git"
    text = "\n".join(p.read_text() for p in K8S.rglob("*.yaml"))
    for name in ("DATABASE_URL", "REDIS_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        assert f"SMOOTHGUARD_{name}:" not in text, f"SMOOTHGUARD_{name} belongs in the Secret, not a manifest"


def test_workloads_and_their_commands():
    docs = list(rendered(K8S / "overlays" / "single-gpu"))
    expected = {
        ("Deployment", "smoothguard-api"): ["smoothguard", "api", "--host", "0.0.0.0", "--port", "8000"],
        ("Deployment", "gpu-worker"): ["smoothguard", "worker", "gpu"],
        ("Deployment", "cpu-worker"): ["smoothguard", "worker", "cpu"],
        ("Deployment", "audit-worker"): ["smoothguard", "worker", "audits"],
        ("Deployment", "webhook-worker"): ["smoothguard", "worker", "webhooks"],
        ("Deployment", "sweeper"): ["smoothguard", "worker", "beat"],
        ("Job", "smoothguard-migrate"): ["smoothguard", "migrate"],
        ("Job", "smoothguard-pull-model"): ["smoothguard", "pull-model"],
    }
    for (kind, name), argv in expected.items():
        doc = find(docs, kind, name)
        assert doc["spec"]["template"]["spec"]["containers"][0]["command"] == argv, name
    assert find(docs, "Deployment", "flower")
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Service"} >= {"smoothguard-api", "flower"}
    assert all(d["metadata"]["namespace"] == "smoothguard" for d in docs)
    for doc in docs:
        for c in containers(doc):
            assert not c["image"].startswith("smoothguard-"), f"{c['name']}: the overlay's images did not apply"


def test_exactly_one_sweeper():
    for folder in [K8S / "base", *OVERLAYS]:
        docs = list(rendered(folder))
        sweeper = find(docs, "Deployment", "sweeper")
        assert sweeper["spec"]["replicas"] == 1 and sweeper["spec"]["strategy"] == {"type": "Recreate"}
        beats = [
            d for d in docs for _, argv in commands_of(d) if argv[:2] == ["smoothguard", "worker"] and "beat" in argv
        ]
        assert beats == [sweeper]
        assert not any(d["kind"] == "ScaledObject" and d["spec"]["scaleTargetRef"]["name"] == "sweeper" for d in docs)


def test_gpu_worker_pod():
    gpu = find(list(rendered(K8S / "base")), "Deployment", "gpu-worker")
    pod = gpu["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["exec"]["command"] == ["smoothguard", "healthcheck"], probe
    startup = worker["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "a 7B model loads in minutes"
    env = {e["name"]: e.get("value") for e in worker["env"]}
    shutdown_s = float(env["SMOOTHGUARD_SHUTDOWN_GRACE_S"])  # how long the worker lets its round finish
    assert ROUND_SECONDS <= shutdown_s < pod["terminationGracePeriodSeconds"]
    assert env["SMOOTHGUARD_METRICS_PORT"] == "9100" and env["SMOOTHGUARD_DEVICE"] == "cuda"
    assert gpu["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    (init,) = pod["initContainers"]
    assert init["command"] == ["smoothguard", "pull-model", "--cached"]
    mounts = {m["mountPath"] for c in (init, worker) for m in c["volumeMounts"]}
    assert mounts == {env["HF_HOME"]}
    pull = find(list(rendered(K8S / "base")), "Job", "smoothguard-pull-model")
    pull_env = {e["name"]: e for e in pull["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert pull_env["HF_HOME"]["value"] == env["HF_HOME"]
    assert pull_env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


# --- KEDA ------------------------------------------------------------------------------------------


def test_keda_scales_gpu_workers_on_the_gpu_queues():
    docs = list(rendered(K8S / "overlays" / "autoscale"))
    (scaled,) = [d for d in docs if d["kind"] == "ScaledObject"]
    spec = scaled["spec"]
    target = find(docs, "Deployment", spec["scaleTargetRef"]["name"])
    assert target["spec"]["template"]["spec"]["containers"][0]["command"] == ["smoothguard", "worker", "gpu"]
    assert "replicas" not in target["spec"], "kubectl apply would reset KEDA's replica count"
    assert spec["minReplicaCount"] in (0, 1) and spec["maxReplicaCount"] > spec["minReplicaCount"]
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert {t["metadata"]["listName"] for t in triggers} == GPU_QUEUES
    assert {q.value for q in GPU_LANES} == GPU_QUEUES, "KEDA watches the lists `smoothguard worker gpu` consumes"
    for t in triggers:
        assert int(t["metadata"]["listLength"]) > 0
        assert re.fullmatch(r"[\w.-]+:\d+", t["metadata"]["address"])
        auth = find(docs, "TriggerAuthentication", t["authenticationRef"]["name"])
        assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"password"}
    interactive = next(t for t in triggers if t["metadata"]["listName"] == "gpu")
    audits = next(t for t in triggers if t["metadata"]["listName"] == "gpu-audits")
    assert int(interactive["metadata"]["listLength"]) < int(audits["metadata"]["listLength"])


def test_single_gpu_overlay_has_no_autoscaler():
    docs = list(rendered(K8S / "overlays" / "single-gpu"))
    assert not [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
    assert find(docs, "Deployment", "gpu-worker")["spec"]["replicas"] == 1
