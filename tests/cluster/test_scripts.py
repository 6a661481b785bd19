"""scripts/cluster-*.sh and bench/*.sh: shellcheck-clean; and the dry run prints the bring-up in order without running it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / "scripts" / "cluster-up.sh", ROOT / "scripts" / "cluster-down.sh"]


def dry_run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run a script with --dry-run and a PATH without kind, docker, helm or kubectl (nothing can really run)."""
    clean = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(["bash", str(ROOT / "scripts" / script), "--dry-run", *args], capture_output=True,
                          text=True, timeout=30, env=clean)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_is_clean(shellcheck: str, script: Path) -> None:
    out = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    assert script.read_text().count("set -euo pipefail") == 1


@pytest.mark.parametrize("script", sorted((ROOT / "bench").glob("*.sh")), ids=lambda p: p.name)
def test_bench_scripts_are_shellcheck_clean(shellcheck: str, script: Path) -> None:
    out = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout


def test_dry_run_prints_every_step_in_order() -> None:
    out = dry_run("cluster-up.sh")
    assert out.returncode == 0, out.stderr
    commands = [line[2:] for line in out.stdout.splitlines() if line.startswith("+ ")]
    order = ["kind create cluster", "helm upgrade --install cert-manager", "helm upgrade --install kserve-crd",
             "helm upgrade --install kserve ", "pipelines/manifests/kustomize/cluster-scoped-resources",
             "pipelines/manifests/kustomize/env/platform-agnostic", "helm upgrade --install kube-prometheus-stack",
             "docker build -f " + str(ROOT / "docker/components.Dockerfile"),
             "docker build -f " + str(ROOT / "docker/serving.Dockerfile"),
             "kind load docker-image ghcr.io/gliomagrade/gliomagrade:0.1.0",
             "kind load docker-image ghcr.io/gliomagrade/gliomagrade-serving:0.1.0",
             "kubectl apply -k " + str(ROOT / "manifests"), "create secret generic gliomagrade-s3",
             "create-bucket-job.yaml"]
    positions = [next((i for i, c in enumerate(commands) if step in c), -1) for step in order]
    assert -1 not in positions, [s for s, p in zip(order, positions, strict=True) if p == -1]
    assert positions == sorted(positions)
    assert "kserve.controller.deploymentMode=RawDeployment" in out.stdout
    # idempotent: apply / upgrade --install / client-side dry-run piped into apply; no bare `kubectl create`
    for command in commands:
        assert not re.search(r"kubectl( -n \S+)? create (?!secret generic .*--dry-run=client)", command), command
    assert "==> " in out.stderr  # every step says what it does


def test_steps_and_providers_are_selectable() -> None:
    images = dry_run("cluster-up.sh", "images", CLUSTER_PROVIDER="minikube")
    assert images.returncode == 0, images.stderr
    assert "minikube -p gliomagrade image load ghcr.io/gliomagrade/gliomagrade-serving:0.1.0" in images.stdout
    assert "helm" not in images.stdout
    bad = dry_run("cluster-up.sh", "everything")
    assert bad.returncode == 2 and "unknown argument 'everything'" in bad.stderr
    down = dry_run("cluster-down.sh")
    assert down.returncode == 0 and "+ kind delete cluster --name gliomagrade" in down.stdout


def test_versions_are_pinned_at_the_top() -> None:
    head = (ROOT / "scripts" / "cluster-up.sh").read_text().split("# ---- settings", 1)[0]
    for var in ("KIND_NODE_IMAGE", "CERT_MANAGER_VERSION", "KSERVE_VERSION", "KFP_VERSION",
                "KUBE_PROMETHEUS_STACK_VERSION"):
        assert re.search(rf'^{var}="\$\{{{var}:-[^}}]*\d[^}}]*\}}"', head, re.M), var


def test_make_targets_have_help() -> None:
    text = (ROOT / "mk" / "cluster.mk").read_text()
    for target in ("cluster-up", "cluster-down", "images", "manifests-check"):
        assert re.search(rf"^{target}:.*## \S", text, re.M), target
