"""The gate promotes a model that learned something and rejects one trained on shuffled labels."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gliomagrade.config import GateConfig, load_profile
from gliomagrade.evaluate import evaluate_run
from gliomagrade.gate import evaluate_gate, gate_run

CFG = load_profile("quick").gate
NAMES = ["auc_lower_ci", "balanced_accuracy", "ece", "fold_auc_floor", "no_regression"]


def _by_name(decision) -> dict:
    return {c.name: c for c in decision.criteria}


def test_good_run_passes_and_reports_every_criterion(binary_metrics_result: dict):
    d = evaluate_gate(binary_metrics_result, CFG)
    assert d.passed, d.reasons
    assert [c.name for c in d.criteria] == NAMES
    crit = _by_name(d)
    assert crit["auc_lower_ci"].value == pytest.approx(binary_metrics_result["pooled"]["auc_ci"][0])
    assert crit["auc_lower_ci"].op == ">=" and crit["ece"].op == "<=" and crit["ece"].threshold == CFG.max_ece
    assert crit["no_regression"].skipped and "no promoted version" in crit["no_regression"].detail
    md = d.to_markdown()
    assert "PASSED" in md and all(f"| {n} |" in md for n in NAMES)


def test_multiclass_run_is_gated_on_the_same_keys(who_metrics_result: dict):
    d = evaluate_gate(who_metrics_result, CFG)
    assert [c.name for c in d.criteria] == NAMES and all(c.value is not None for c in d.criteria[:4])


def test_random_scores_are_rejected(binary_run: Path, tmp_path: Path, n_boot: int):
    """Predictions with no signal at all: uniform random probabilities."""
    run = tmp_path / "random"
    run.mkdir()
    (run / "folds").mkdir()
    oof = pd.read_csv(binary_run / "oof.csv")
    # not seed 0: the fixture drew its WHO grades from default_rng(0)'s first uniforms
    p = np.random.default_rng(2024).random(len(oof))
    oof = oof.assign(prob_HGG=p, prob_LGG=1 - p).drop(columns=["logit_LGG", "logit_HGG"])
    oof.to_csv(run / "oof.csv", index=False)
    for k in range(5):
        (run / "folds" / str(k)).mkdir()
        (run / "folds" / str(k) / "meta.json").write_text(
            json.dumps({"threshold": 0.5, "class_names": ["LGG", "HGG"]})
        )
    d = evaluate_gate(evaluate_run(run, n_boot=n_boot), CFG)
    assert not d.passed
    crit = _by_name(d)
    assert not crit["auc_lower_ci"].passed and crit["auc_lower_ci"].value < 0.6
    assert not crit["balanced_accuracy"].passed
    assert any(r.startswith("auc_lower_ci") for r in d.reasons)


def test_model_fitted_to_shuffled_labels_is_rejected(run_factory, tmp_path: Path, n_boot: int):
    """The realistic case: a flexible model fits noise (many features, weak regularisation)."""
    run = run_factory(tmp_path / "shuffled", n=120, shuffle=True, n_features=40, c=10.0, extras=False)
    metrics = evaluate_run(run, n_boot=n_boot)
    lo, hi = metrics["pooled"]["auc_ci"]
    assert lo < 0.5 + 0.1 and hi - lo > 0.15  # AUC near chance with a wide interval
    d = evaluate_gate(metrics, CFG)
    assert not d.passed and not _by_name(d)["auc_lower_ci"].passed
    assert not gate_run(run, CFG).passed
    saved = json.loads((run / "gate.json").read_text())
    assert saved["passed"] is False and [c["name"] for c in saved["criteria"]] == NAMES
    assert "REJECTED" in (run / "gate.md").read_text()


def test_regression_against_the_promoted_baseline(binary_metrics_result: dict):
    auc = binary_metrics_result["pooled"]["auc"]
    better = copy.deepcopy(binary_metrics_result)
    better["pooled"]["auc"] = auc + CFG.max_regression + 0.01
    d = evaluate_gate(binary_metrics_result, CFG, baseline=better)
    crit = _by_name(d)["no_regression"]
    assert not d.passed and not crit.passed and not crit.skipped
    assert (
        crit.value == pytest.approx(auc - better["pooled"]["auc"]) and crit.threshold == -CFG.max_regression
    )
    slightly = copy.deepcopy(binary_metrics_result)
    slightly["pooled"]["auc"] = auc + CFG.max_regression / 2
    assert evaluate_gate(binary_metrics_result, CFG, baseline=slightly).passed
    other_task = {
        **copy.deepcopy(binary_metrics_result),
        "task": "who",
        "class_names": ["WHO-II", "WHO-III", "WHO-IV"],
    }
    crit = _by_name(evaluate_gate(binary_metrics_result, CFG, baseline=other_task))["no_regression"]
    assert crit.skipped and "task" in crit.detail


def test_nan_and_missing_metrics_fail(binary_metrics_result: dict):
    m = copy.deepcopy(binary_metrics_result)
    m["pooled"]["auc_ci"] = [None, None]
    m["pooled"]["ece"] = float("nan")
    del m["pooled"]["balanced_accuracy"]
    m["folds"][1]["auc"] = float("nan")
    d = evaluate_gate(m, CFG)
    crit = _by_name(d)
    assert not d.passed
    for name in ("auc_lower_ci", "balanced_accuracy", "ece"):
        assert not crit[name].passed and crit[name].value is None and "NaN" in crit[name].detail
    assert not crit["fold_auc_floor"].passed and "fold 1: n/a" in crit["fold_auc_floor"].detail
    assert json.loads(d.to_json())["criteria"][2]["value"] is None  # strict JSON


def test_fold_floor_names_the_weak_fold(binary_metrics_result: dict):
    m = copy.deepcopy(binary_metrics_result)
    m["folds"][3]["auc"] = CFG.fold_auc_floor - 0.01
    crit = _by_name(evaluate_gate(m, CFG))["fold_auc_floor"]
    assert (
        not crit.passed and "fold 3" in crit.detail and crit.value == pytest.approx(CFG.fold_auc_floor - 0.01)
    )


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_profiles_carry_gate_thresholds(profile: str):
    gate = load_profile(profile).gate
    assert isinstance(gate, GateConfig) and 0.5 < gate.min_auc_lower_ci < 1 and not math.isnan(gate.max_ece)
