"""The pipeline compiles, the committed IR YAML is current, and cluster settings are in the IR."""

from __future__ import annotations

from pathlib import Path

import yaml

from gliomagrade.components import DEFAULT_IMAGE, STEP_NAMES, steps
from gliomagrade.pipelines.runner import COMPILED, compile_pipeline, parse_params


def _load(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def test_committed_yaml_is_current(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "p.yaml")
    assert COMPILED.is_file(), "run `glioma pipeline compile` and commit pipelines/glioma_pipeline.yaml"
    assert _load(fresh) == _load(COMPILED), "pipelines/glioma_pipeline.yaml is stale: run `glioma pipeline compile`"


def test_ir_has_every_step_gpu_and_gate_condition() -> None:
    spec, platform = _load(COMPILED)
    executors = spec["deploymentSpec"]["executors"]
    assert {f"exec-{name}" for name in STEP_NAMES} == set(executors)
    for ex in executors.values():
        assert ex["container"]["image"] == DEFAULT_IMAGE
    train = executors["exec-train"]["container"]["resources"]
    assert train["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert str(train["accelerator"]["resourceCount"]) == "1"
    text = COMPILED.read_text()
    assert "pipelinechannel--gate-Output" in text and "condition" in text


def test_s3_credentials_come_from_the_secret_never_parameters() -> None:
    spec, platform = _load(COMPILED)
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-ingest", "exec-gate", "exec-register", "exec-deploy"):
        secrets = k8s[name]["secretAsEnv"]
        envs = {m["envVar"] for s in secrets for m in s["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT"} <= envs
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert not [p for p in params if "secret" in p.lower() or "key" in p.lower() or "password" in p.lower()]
    assert "nodeSelector" in k8s["exec-train"] and "tolerations" in k8s["exec-train"]


def test_no_gpu_variant(tmp_path: Path) -> None:
    spec, _ = _load(compile_pipeline(tmp_path / "cpu.yaml", image="registry.local/glioma:dev", gpu=False))
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert "accelerator" not in train.get("resources", {})
    assert train["image"] == "registry.local/glioma:dev"


def test_step_functions_import_only_inside() -> None:
    """KFP ships each function's source alone: no module-level gliomagrade import in steps.py, and every
    step imports what it calls inside its body."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(steps))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not [n for n in top if "gliomagrade" in ast.unparse(n)], "module-level gliomagrade import in steps.py"
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        inner = [n for n in ast.walk(fn) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("gliomagrade")]
        assert inner, f"{fn.name} calls no gliomagrade code"


def test_parse_params() -> None:
    assert parse_params(["folds=3", "task=who", "node_selector={\"gpu\": \"h100\"}"]) == {
        "folds": 3, "task": "who", "node_selector": {"gpu": "h100"}}
    import pytest

    with pytest.raises(ValueError, match="key=value"):
        parse_params(["folds"])
