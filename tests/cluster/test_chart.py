"""charts/gliomagrade-serving: helm lint, helm template, schema validation, consistency with deploy.py/manifests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from gliomagrade.deploy import inference_service

from .schemas import errors_of, load_documents

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gliomagrade-serving"


def template(helm: str, *sets: str) -> list[dict]:
    """``helm template`` of the chart in namespace gliomagrade with ``--set`` values."""
    cmd = [helm, "template", "gliomagrade", str(CHART), "--namespace", "gliomagrade"]
    for value in sets:
        cmd += ["--set", value]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return load_documents(out.stdout)


def by_kind(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def test_helm_lint_is_clean(helm: str) -> None:
    out = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_render_is_valid_and_equals_deploy_and_manifests(helm: str) -> None:
    docs = template(helm)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "InferenceService", "PodMonitor", "PrometheusRule", "Role",
                                             "RoleBinding", "ServiceAccount"]
    problems = [p for doc in docs for p in errors_of(doc)]
    assert not problems, "\n".join(problems)
    isvc = by_kind(docs, "InferenceService")
    built = inference_service(name="glioma-grade", namespace="gliomagrade", model_name="glioma-grade", version="1",
                              registry_uri="s3://gliomagrade/registry",
                              storage_uri="s3://gliomagrade/registry/glioma-grade/versions/1")
    assert isvc["spec"] == built["spec"]
    assert isvc["metadata"]["annotations"] == built["metadata"]["annotations"]
    rules = yaml.safe_load((ROOT / "manifests" / "prometheus-rules.yaml").read_text())
    assert by_kind(docs, "PrometheusRule")["spec"] == rules["spec"]
    dashboard = json.loads(by_kind(docs, "ConfigMap")["data"]["gliomagrade-drift.json"])
    assert dashboard == json.loads((ROOT / "manifests" / "grafana-dashboard.json").read_text())
    assert by_kind(docs, "PodMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_values_change_the_render(helm: str) -> None:
    docs = template(helm, "model.version=7", "predictor.gpu=1", "alerts.psiThreshold=0.4", "alerts.driftFor=1h",
                    "predictor.tolerations[0].key=nvidia.com/gpu", "predictor.tolerations[0].operator=Exists",
                    "monitoring.release=prom", "transformer.extraArgs={--drift_window,200}")
    assert not [p for doc in docs for p in errors_of(doc)]
    isvc = by_kind(docs, "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://gliomagrade/registry/glioma-grade/versions/7"
    assert isvc["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert isvc["spec"]["predictor"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert isvc["spec"]["transformer"]["containers"][0]["args"][-2:] == ["--drift_window", "200"]
    drift = by_kind(docs, "PrometheusRule")["spec"]["groups"][0]["rules"][0]
    assert drift["expr"].endswith("> 0.4") and drift["for"] == "1h"
    assert by_kind(docs, "PodMonitor")["metadata"]["labels"]["release"] == "prom"


def test_monitoring_toggles_and_canary_rules(helm: str) -> None:
    docs = template(helm, "monitoring.podMonitor.enabled=false", "monitoring.rules.enabled=false",
                    "monitoring.dashboard.enabled=false", "deployer.enabled=false", "serviceAccount.create=false")
    assert [d["kind"] for d in docs] == ["InferenceService"]
    canary = by_kind(template(helm, "service.deploymentMode=Serverless", "service.canaryPercent=10"), "InferenceService")
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 10 and not errors_of(canary)
    out = subprocess.run([helm, "template", "g", str(CHART), "--set", "service.canaryPercent=10"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "needs deploymentMode Serverless" in out.stderr


def test_secure_defaults_and_no_credentials_in_values(helm: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    flat = json.dumps(values).lower()
    assert "secret_access_key" not in flat and "password" not in flat and "accesskey" not in flat
    docs = template(helm)
    assert not [d for d in docs if d["kind"] == "Secret"]
    isvc = by_kind(docs, "InferenceService")
    (container,) = isvc["spec"]["transformer"]["containers"]
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] and ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
    assert ctx["capabilities"]["drop"] == ["ALL"]
    for resources in (container["resources"], isvc["spec"]["predictor"]["model"]["resources"]):
        assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
