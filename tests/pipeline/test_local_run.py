"""The real pipeline through kfp.local: a promoted version at the end, or a clean rejection."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gliomagrade.pipelines.runner import run_local
from gliomagrade.registry import Registry
from gliomagrade.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.integration]

LENIENT = {"min_auc_lower_ci": 0.0, "min_balanced_accuracy": 0.0, "max_ece": 1.0, "fold_auc_floor": 0.0,
           "max_regression": 1.0}


@pytest.fixture(scope="module")
def passed_run(raw_cohort: Path, tiny_profile: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("kfp")
    registry = str(work / "registry")
    args = {"cohort_uri": str(raw_cohort), "profile": str(tiny_profile), "registry_uri": registry, "workers": 2,
            **LENIENT}
    return run_local(args, work / "root"), registry


def test_pipeline_ends_with_a_promoted_version(passed_run) -> None:
    run, registry_uri = passed_run
    assert run.release == "1"
    reg = Registry(open_store(registry_uri), "glioma-grade")
    info = reg.resolve("promoted")
    assert info.version == 1
    manifest = info.manifest
    assert manifest.input.name == "image" and manifest.input.shape == [-1, 4, 24, 24, 24]
    assert {o.name for o in manifest.outputs} == {"logits", "features"}
    assert manifest.gate is not None and manifest.gate.passed
    assert {"prob_HGG", "prob_high"} <= set(manifest.reference)
    assert manifest.cohort_fingerprint and len(manifest.cohort_fingerprint) == 64
    assert set(manifest.files) >= {"glioma-grade/config.pbtxt", "glioma-grade/1/model.onnx", "glioma-grade/1/head.json"}
    downloaded = reg.download("promoted", run.root / "download")
    assert (downloaded / "glioma-grade" / "1" / "model.onnx").is_file()


def test_pipeline_outputs_for_the_kfp_ui(passed_run) -> None:
    run, _ = passed_run
    summaries = run.summaries()
    assert {"evaluate", "gate", "register"} <= set(summaries)
    assert "AUC" in summaries["evaluate"]
    html = (run.root / "evaluate" / "report").read_text()
    assert "<html" in html.lower() and "data:image/png;base64," in html
    executor = json.loads((run.root / "evaluate" / "executor_output.json").read_text())
    roc = executor["artifacts"]["roc"]["artifacts"][0]["metadata"]
    assert roc["confidenceMetrics"] and roc["confusionMatrix"]["annotationSpecs"]


def test_failed_gate_skips_release_and_says_why(raw_cohort: Path, tiny_profile: Path, tmp_path: Path) -> None:
    args = {"cohort_uri": str(raw_cohort), "profile": str(tiny_profile), "registry_uri": str(tmp_path / "reg"),
            "workers": 2, **LENIENT, "min_auc_lower_ci": 1.01}
    run = run_local(args, tmp_path / "root")
    assert run.release == "rejected"
    assert not (run.root / "export").exists() and not (run.root / "register").exists()
    text = run.summaries()["rejected"]
    assert "auc_lower_ci" in text and "1.01" in text
    assert Registry(open_store(tmp_path / "reg"), "glioma-grade").list_versions() == []


def test_label_shuffled_model_is_rejected_by_the_default_gate(passed_run, tmp_path: Path) -> None:
    """Train on the pipeline's preprocessed cohort with shuffled labels: the quick gate must say no."""
    import shutil

    from gliomagrade.config import load_profile
    from gliomagrade.evaluate import evaluate_run
    from gliomagrade.gate import evaluate_gate
    from gliomagrade.train import train_cv

    run, _ = passed_run
    cohort = tmp_path / "cohort"
    shutil.copytree(run.root / "preprocess" / "cohort", cohort)
    table = pd.read_csv(cohort / "cohort.csv")
    shuffled = table.sample(frac=1.0, random_state=0)["grade"].to_numpy()
    table["grade"], table["who_grade"] = shuffled, [4 if g == "HGG" else 2 for g in shuffled]
    table.to_csv(cohort / "cohort.csv", index=False)
    profile = load_profile("quick").with_overrides(
        train={"folds": 2, "epochs": 4, "batch_size": 4, "val_fraction": 0.34, "num_threads": 1, "n_boot": 200,
               "model_kwargs": {"channels": [8, 16, 32], "strides": [2, 2, 1]}})
    train_cv(cohort, profile, tmp_path / "run", progress=False)
    decision = evaluate_gate(evaluate_run(tmp_path / "run", n_boot=500), load_profile("quick").gate)
    assert not decision.passed
    assert any(c.name == "auc_lower_ci" and not c.passed for c in decision.criteria)


def test_released_version_loads_in_both_model_servers(passed_run, tmp_path: Path) -> None:
    """What the pipeline publishes is what the predictor and the transformer accept (no hand-made manifest)."""
    from gliomagrade.serving.predictor import OnnxPredictor
    from gliomagrade.serving.transformer import GliomaTransformer

    _, registry_uri = passed_run
    predictor = OnnxPredictor("glioma-grade", registry_uri, "promoted", cache_dir=tmp_path / "p")
    transformer = GliomaTransformer("glioma-grade", registry_uri, "promoted", cache_dir=tmp_path / "t")
    assert predictor.load() and transformer.load()
    assert transformer.cfg is not None and tuple(transformer.cfg.grid) == (24, 24, 24)


def test_promoted_version_is_the_gate_baseline(passed_run) -> None:
    """A worse candidate fails `no_regression` against what the pipeline promoted."""
    from gliomagrade.config import GateConfig
    from gliomagrade.gate import evaluate_gate
    from gliomagrade.pipeline_steps import promoted_metrics

    _, registry_uri = passed_run
    baseline = promoted_metrics(registry_uri, "glioma-grade")
    assert baseline is not None and baseline["class_names"] == ["LGG", "HGG"]
    worse = {**baseline, "pooled": {**baseline["pooled"], "auc": baseline["pooled"]["auc"] - 0.2}}
    decision = evaluate_gate(worse, GateConfig(max_regression=0.05), baseline=baseline)
    criterion = next(c for c in decision.criteria if c.name == "no_regression")
    assert not criterion.skipped and not criterion.passed
