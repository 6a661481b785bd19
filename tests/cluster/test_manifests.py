"""manifests/ and the InferenceService of deploy.py, validated offline against Kubernetes and CRD schemas."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from gliomagrade.deploy import SERVICE_ACCOUNT, inference_service, merge_patch
from gliomagrade.errors import ConfigError

from .schemas import errors_of, load_documents

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OBJECT_FILES = sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name not in ("kind-config.yaml",
                                                                                 "kustomization.yaml"))
EXAMPLE = {"name": "glioma-grade", "namespace": "gliomagrade", "model_name": "glioma-grade", "version": "1",
           "registry_uri": "s3://gliomagrade/registry",
           "storage_uri": "s3://gliomagrade/registry/glioma-grade/versions/1"}


@pytest.mark.parametrize("filename", OBJECT_FILES)
def test_every_manifest_is_schema_valid(filename: str) -> None:
    docs = load_documents((MANIFESTS / filename).read_text())
    assert docs, f"{filename} holds no object"
    problems = [p for doc in docs for p in errors_of(doc)]
    assert not problems, "\n".join(problems)


def test_the_validator_catches_a_misspelt_field() -> None:
    """The checks above can fail: unknown fields and wrong types are reported, naming the object."""
    isvc = inference_service(**EXAMPLE)
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageURI" in p and "glioma-grade" in p for p in errors_of(isvc))
    monitor = load_documents((MANIFESTS / "podmonitor.yaml").read_text())[0]
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    assert any("intervall" in p for p in errors_of(monitor))
    account = load_documents((MANIFESTS / "serviceaccount.yaml").read_text())[0]
    account["secrets"] = "gliomagrade-s3"
    assert errors_of(account)


def test_kustomization_renders_valid_objects_and_the_dashboard_configmap(kubectl: str) -> None:
    out = subprocess.run([kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = load_documents(out.stdout)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Namespace", "PodMonitor", "PrometheusRule", "Role", "RoleBinding", "ServiceAccount"]
    problems = [p for doc in docs for p in errors_of(doc)]
    assert not problems, "\n".join(problems)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["gliomagrade-drift.json"]) == json.loads((MANIFESTS / "grafana-dashboard.json").read_text())


def test_kind_config_has_a_control_plane_and_a_worker_on_the_pinned_image() -> None:
    config = yaml.safe_load((MANIFESTS / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker"]
    script = (ROOT / "scripts" / "cluster-up.sh").read_text()
    assert all(f'KIND_NODE_IMAGE="${{KIND_NODE_IMAGE:-{n["image"]}}}"' in script for n in config["nodes"])


def test_s3_secret_template_holds_no_credentials_and_matches_the_pipeline_keys() -> None:
    from gliomagrade.pipelines.glioma_pipeline import S3_SECRET, S3_SECRET_KEYS

    (secret,) = load_documents((MANIFESTS / "s3-secret.example.yaml").read_text())
    assert secret["metadata"]["name"] == S3_SECRET == SERVICE_ACCOUNT
    assert secret["stringData"]["AWS_ACCESS_KEY_ID"] == secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == "REPLACE_ME"
    assert set(S3_SECRET_KEYS) <= set(secret["stringData"])
    (account,) = load_documents((MANIFESTS / "serviceaccount.yaml").read_text())
    wanted = {f"serving.kserve.io/{k}" for k in ("s3-endpoint", "s3-usehttps", "s3-region", "s3-verifyssl")}
    assert wanted <= set(account["metadata"]["annotations"])
    assert account["secrets"] == [{"name": S3_SECRET}]


def test_rbac_lets_the_pipeline_runner_create_get_and_patch_inference_services() -> None:
    role, binding = load_documents((MANIFESTS / "rbac.yaml").read_text())
    (rule,) = [r for r in role["rules"] if "inferenceservices" in r["resources"]]
    assert {"create", "get", "patch"} <= set(rule["verbs"]) and "delete" not in rule["verbs"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"] == "gliomagrade"


def test_the_manifest_inference_service_is_what_deploy_builds() -> None:
    (isvc,) = load_documents((MANIFESTS / "inferenceservice.yaml").read_text())
    assert isvc == inference_service(**EXAMPLE)


def test_deploy_builds_a_transformer_in_front_of_a_triton_v2_predictor() -> None:
    isvc = inference_service(**EXAMPLE)
    assert not errors_of(isvc)
    predictor, transformer = isvc["spec"]["predictor"], isvc["spec"]["transformer"]
    assert predictor["model"]["modelFormat"] == {"name": "onnx"} and predictor["model"]["protocolVersion"] == "v2"
    (container,) = transformer["containers"]
    args = container["args"]
    # Triton names the model after its folder: the transformer must call it by the model name, not the service's
    assert args[args.index("--model_name") + 1] == "glioma-grade"
    assert args[args.index("--model_version") + 1] == "1"
    assert "--predictor_host" not in args  # KServe injects <predictor>.<namespace>
    assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["runAsNonRoot"]
    assert container["envFrom"] == [{"secretRef": {"name": "gliomagrade-s3"}}]


def test_transformer_args_are_flags_the_transformer_accepts() -> None:
    """Parsed by the real transformer parser, with what KServe appends."""
    from gliomagrade.serving.transformer import build_parser

    (container,) = inference_service(**EXAMPLE)["spec"]["transformer"]["containers"]
    args = build_parser().parse_args([*container["args"], "--predictor_host", "glioma-grade-predictor.gliomagrade",
                                      "--http_port", "8080"])
    assert (args.model_name, args.model_dir, args.model_version) == ("glioma-grade", "s3://gliomagrade/registry", "1")
    assert args.predictor_protocol == "v2"


def test_canary_needs_serverless_and_a_patch_clears_an_old_canary() -> None:
    with pytest.raises(ConfigError, match="Serverless"):
        inference_service(**EXAMPLE, canary_percent=20)
    with pytest.raises(ConfigError, match="0..100"):
        inference_service(**EXAMPLE, canary_percent=120, deployment_mode="Serverless")
    canary = inference_service(**EXAMPLE, canary_percent=20, deployment_mode="Serverless")
    assert not errors_of(canary)
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 20
    patch = merge_patch(inference_service(**EXAMPLE))
    assert patch["spec"]["predictor"]["canaryTrafficPercent"] is None  # merge-patch null removes the field
    assert merge_patch(canary)["spec"]["transformer"]["canaryTrafficPercent"] == 20


def test_gpu_adds_one_gpu_to_the_predictor_only() -> None:
    isvc = inference_service(**EXAMPLE, gpu=True)
    assert isvc["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in isvc["spec"]["transformer"]["containers"][0]["resources"]["limits"]
    assert not errors_of(isvc)
