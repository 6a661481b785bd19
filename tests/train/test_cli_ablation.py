"""`glioma experiment ablation` and `glioma train --fold` on a tiny cohort, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from train_fixtures import tiny_profile

from gliomagrade.ablation import parse_sets
from gliomagrade.cli import main
from gliomagrade.errors import ConfigError


@pytest.fixture(scope="module")
def profile_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "tiny.yaml"
    path.write_text(tiny_profile(epochs=1).to_yaml())
    return path


def test_ablation_writes_table_json_plot_with_paired_delta(cohort_dir: Path, profile_yaml: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "abl"
    rc = main(["experiment", "ablation", "--cohort", str(cohort_dir), "--profile", str(profile_yaml),
               "--out", str(out), "--sets", "t1ce,all", "--folds", "2", "--quiet"])
    assert rc == 0
    table = pd.read_csv(out / "ablation.csv")
    assert table["variant"].tolist() == ["t1ce", "all"]
    assert table["sequences"].tolist() == ["t1ce", "t1+t1ce+t2+flair"]
    assert ((table["auc_lo"] <= table["auc"]) & (table["auc"] <= table["auc_hi"])).all()
    full = table.set_index("variant").loc["all"]
    assert full["best_single"] == "t1ce" and full["delta_lo"] <= full["delta_auc_vs_best_single"] <= full["delta_hi"]
    per_subject = pd.read_csv(out / "ablation_oof.csv", dtype={"subject_id": str})
    a, b = (per_subject[per_subject["variant"] == v].set_index("subject_id") for v in ("t1ce", "all"))
    assert sorted(a.index) == sorted(b.index) and (a["fold"] == b.loc[a.index, "fold"]).all()
    assert not np.allclose(a["prob_HGG"], b.loc[a.index, "prob_HGG"])
    meta = json.loads((out / "t1ce" / "folds" / "0" / "meta.json").read_text())
    assert meta["sequences"] == ["t1ce"] and meta["in_channels"] == 1
    assert json.loads((out / "ablation.json").read_text())["variants"][1]["variant"] == "all"
    assert (out / "ablation.png").stat().st_size > 1000


def test_parse_sets() -> None:
    assert parse_sets("t1ce, all,flair+t1ce") == [
        ("t1ce", ("t1ce",)), ("all", ("t1", "t1ce", "t2", "flair")), ("flair+t1ce", ("t1ce", "flair"))]
    with pytest.raises(ConfigError, match="t3"):
        parse_sets("t1,t3")


def test_train_single_fold_defers_evaluation(cohort_dir: Path, profile_yaml: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "--cohort", str(cohort_dir), "--profile", str(profile_yaml), "--out", str(tmp_path),
               "--fold", "1", "--sequences", "flair,t1ce", "--quiet"])
    assert rc == 0
    assert "1 of 3 folds finished" in capsys.readouterr().out
    assert (tmp_path / "folds" / "1" / "meta.json").is_file() and not (tmp_path / "folds" / "0").exists()
    assert not (tmp_path / "oof.csv").exists()
    assert json.loads((tmp_path / "folds" / "1" / "meta.json").read_text())["sequences"] == ["t1ce", "flair"]
    assert main(["train", "--cohort", str(cohort_dir), "--profile", str(profile_yaml), "--out", str(tmp_path),
                 "--fold", "7", "--quiet"]) == 2


def test_lesion_gate_switch_on_the_command_line(cohort_dir: Path, profile_yaml: Path, tmp_path: Path) -> None:
    """--lesion-gate on trains a gated fold (loss weight 1 unless the profile has one); off removes it;
    tissue adds the tissue path (32 channels unless the profile names a width)."""
    rc = main(["train", "--cohort", str(cohort_dir), "--profile", str(profile_yaml), "--out", str(tmp_path / "on"),
               "--fold", "0", "--lesion-gate", "on", "--quiet"])
    assert rc == 0
    cfg = json.loads((tmp_path / "on" / "folds" / "0" / "meta.json").read_text())["train_config"]
    assert cfg["model_kwargs"]["lesion_gate"] is True and cfg["lesion_loss"] == 1.0
    assert cfg["model_kwargs"]["channels"] == [8, 16, 32], "the profile's other architecture options stay"
    gated = tmp_path / "gated.yaml"
    gated.write_text(tiny_profile(epochs=1, model_kwargs={"channels": [8, 16, 32], "strides": [1, 2, 2],
                                                          "lesion_gate": True}, lesion_loss=0.5).to_yaml())
    rc = main(["train", "--cohort", str(cohort_dir), "--profile", str(gated), "--out", str(tmp_path / "off"),
               "--fold", "0", "--lesion-gate", "off", "--quiet"])
    assert rc == 0
    cfg = json.loads((tmp_path / "off" / "folds" / "0" / "meta.json").read_text())["train_config"]
    assert cfg["model_kwargs"]["lesion_gate"] is False and cfg["lesion_loss"] == 0.0
    assert "tissue_width" not in cfg["model_kwargs"]
    rc = main(["train", "--cohort", str(cohort_dir), "--profile", str(gated), "--out", str(tmp_path / "tissue"),
               "--fold", "0", "--lesion-gate", "tissue", "--quiet"])
    assert rc == 0
    cfg = json.loads((tmp_path / "tissue" / "folds" / "0" / "meta.json").read_text())["train_config"]
    assert cfg["model_kwargs"]["tissue_width"] == 32 and cfg["lesion_loss"] == 0.5


def test_unet_on_the_command_line(cohort_dir: Path, profile_yaml: Path, tmp_path: Path) -> None:
    """--model unet trains a segment-then-grade fold; a grid its strides do not divide and --lesion-gate off
    with it are refused, naming why."""
    assert main(["train", "--cohort", str(cohort_dir), "--profile", str(profile_yaml), "--out", str(tmp_path / "g"),
                 "--fold", "0", "--model", "unet", "--quiet"]) == 2  # 12^3 and strides (2, 2, 2)
    unet = tmp_path / "unet.yaml"
    unet.write_text(tiny_profile(epochs=1, model="unet", model_kwargs={"channels": [4, 8, 16], "strides": [2, 2]}
                                 ).to_yaml())
    rc = main(["train", "--cohort", str(cohort_dir), "--profile", str(unet), "--out", str(tmp_path / "u"),
               "--fold", "0", "--model", "unet", "--quiet"])
    assert rc == 0
    cfg = json.loads((tmp_path / "u" / "folds" / "0" / "meta.json").read_text())["train_config"]
    assert cfg["model"] == "unet" and cfg["model_kwargs"]["strides"] == [2, 2] and cfg["lesion_loss"] == 1.0
    assert main(["train", "--cohort", str(cohort_dir), "--profile", str(unet), "--out", str(tmp_path / "x"),
                 "--fold", "0", "--model", "unet", "--lesion-gate", "off", "--quiet"]) == 2
