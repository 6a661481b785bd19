"""evaluate_run on fabricated run directories: files, stable keys, numbers that agree with sklearn."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from gliomagrade.errors import InputError
from gliomagrade.evaluate import evaluate_run

POOLED_KEYS = {
    "auc",
    "auc_ci",
    "balanced_accuracy",
    "balanced_accuracy_ci",
    "sensitivity",
    "specificity",
    "f1",
    "ece",
    "ece_uncalibrated",
    "brier",
    "confusion_matrix",
    "roc",
}
FOLD_KEYS = {"fold", "n", "auc", "auc_ci", "balanced_accuracy", "ece", "brier", "temperature", "best_epoch"}


def _check_common(result: dict, run: Path, k: int) -> None:
    assert (run / "metrics.json").is_file() and (run / "metrics_table.md").is_file()
    on_disk = json.loads((run / "metrics.json").read_text())  # strict JSON: parse_constant never needed
    assert on_disk["pooled"]["auc"] == pytest.approx(result["pooled"]["auc"])
    assert POOLED_KEYS <= set(result["pooled"])
    assert len(result["folds"]) == result["n_folds"] == 5
    assert all(FOLD_KEYS <= set(f) for f in result["folds"])
    assert [f["fold"] for f in result["folds"]] == list(range(5))
    assert len(result["class_names"]) == k and result["n"] == 150
    lo, hi = result["pooled"]["auc_ci"]
    assert lo <= result["pooled"]["auc"] <= hi
    roc = result["pooled"]["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"]) <= 200


def test_binary_run(binary_run: Path, binary_metrics_result: dict):
    r = binary_metrics_result
    _check_common(r, binary_run, 2)
    assert r["task"] == "binary" and r["positive_class"] == "HGG"
    oof = pd.read_csv(binary_run / "oof.csv")
    assert r["pooled"]["auc"] == pytest.approx(roc_auc_score(oof["label"], oof["prob_HGG"]))
    # pooled thresholded metrics use each fold's own validation threshold
    thr = {f["fold"]: f["threshold"] for f in r["folds"]}
    pred = oof["prob_HGG"].to_numpy() >= oof["fold"].map(thr).to_numpy()
    y = oof["label"].to_numpy() == 1
    assert r["pooled"]["sensitivity"] == pytest.approx(pred[y].mean())
    assert r["pooled"]["specificity"] == pytest.approx((~pred[~y]).mean())
    for f in r["folds"]:
        sub = oof[oof["fold"] == f["fold"]]
        assert f["auc"] == pytest.approx(roc_auc_score(sub["label"], sub["prob_HGG"]))
    assert r["pooled"]["auc"] > 0.85  # the fabricated cohort carries a real signal
    assert (
        r["cam"]["n"] == 150
        and 0 < r["cam"]["pointing_ci"][0] < r["cam"]["pointing_rate"] < r["cam"]["pointing_ci"][1]
    )
    assert r["cam"]["high_grade_predicted"]["n"] == 100  # every third case is predicted LGG
    assert r["cam"]["sequence_evidence"] == {"t1ce": {"0": -1.0, "1": 2.0}, "flair": {"0": 0.5, "1": 0.5}}
    assert r["cam"]["segmentation_dice"]["lesion"] == pytest.approx(0.7) and np.isnan(r["cam"]["segmentation_dice"]["core"])
    variants = {row["variant"]: row for row in r["ablation"]}
    assert "delta_auc" not in variants["full"]
    assert variants["no_signal"]["delta_auc_ci"][1] < 0  # losing the informative features hurts, with CI
    table = (binary_run / "metrics_table.md").read_text()
    assert "| ROC AUC |" in table and "| fold |" in table


def test_who_run(who_run: Path, who_metrics_result: dict):
    r = who_metrics_result
    _check_common(r, who_run, 3)
    assert r["task"] == "who" and r["class_names"] == ["WHO-II", "WHO-III", "WHO-IV"]
    oof = pd.read_csv(who_run / "oof.csv")
    probs = oof[[f"prob_{c}" for c in r["class_names"]]].to_numpy()
    assert r["pooled"]["auc"] == pytest.approx(roc_auc_score(oof["label"], probs, multi_class="ovr"))
    assert set(r["pooled"]["per_class"]) == set(r["class_names"])
    assert set(r["pooled"]["roc_per_class"]) == set(r["class_names"])
    assert np.asarray(r["pooled"]["confusion_matrix"]).sum() == 150


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("report", "metrics.json"))
    return dst


def test_missing_threshold_names_the_fold(binary_run: Path, tmp_path: Path, n_boot: int):
    run = _copy(binary_run, tmp_path)
    meta_path = run / "folds" / "2" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["threshold"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="fold 2 .*threshold"):
        evaluate_run(run, n_boot=n_boot)


def test_bad_oof_files_are_named(binary_run: Path, tmp_path: Path, n_boot: int):
    run = _copy(binary_run, tmp_path)
    oof = pd.read_csv(run / "oof.csv")
    oof.drop(columns=["prob_HGG"]).to_csv(run / "oof.csv", index=False)
    with pytest.raises(InputError, match=r"oof.csv.*prob_HGG"):
        evaluate_run(run, n_boot=n_boot)
    pd.concat([oof, oof.head(1)]).to_csv(run / "oof.csv", index=False)
    with pytest.raises(InputError, match="more than once"):
        evaluate_run(run, n_boot=n_boot)
    (run / "oof.csv").unlink()
    with pytest.raises(InputError, match="not found"):
        evaluate_run(run, n_boot=n_boot)


def test_single_class_fold_gives_nan_auc_not_a_crash(binary_run: Path, tmp_path: Path, n_boot: int):
    run = _copy(binary_run, tmp_path)
    oof = pd.read_csv(run / "oof.csv")
    oof = oof[~((oof["fold"] == 0) & (oof["label"] == 0))]  # fold 0 keeps only HGG cases
    oof.to_csv(run / "oof.csv", index=False)
    r = evaluate_run(run, n_boot=n_boot)
    assert (
        math.isnan(r["folds"][0]["auc"])
        and json.loads((run / "metrics.json").read_text())["folds"][0]["auc"] is None
    )
    assert np.isfinite(r["pooled"]["auc"])


def test_summary_ablation_table_is_passed_through(binary_run: Path, tmp_path: Path, n_boot: int):
    run = _copy(binary_run, tmp_path)
    pd.DataFrame({"variant": ["all", "no_flair"], "auc": [0.9, float("nan")]}).to_csv(
        run / "ablation.csv", index=False
    )
    rows = evaluate_run(run, n_boot=n_boot)["ablation"]
    assert rows[0] == {"variant": "all", "auc": 0.9} and rows[1]["auc"] is None
    pd.DataFrame({"auc": [0.9]}).to_csv(run / "ablation.csv", index=False)
    with pytest.raises(InputError, match="ablation.csv.*'variant'"):
        evaluate_run(run, n_boot=n_boot)
