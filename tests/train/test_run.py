"""train_cv end to end: interrupted and resumed, finished folds skipped, every promised file written;
then the CLI's `glioma evaluate` recomputes the metrics from the saved predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from train_fixtures import tiny_profile

from gliomagrade.cli import main
from gliomagrade.train import STATE_FILE, EpochRecord, RunResult, train_cv


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def run(cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult, list[tuple[int, int]]]:
    """Crash in fold 1 after its first epoch, then rerun: returns the run dir, result and epochs rerun."""
    out = tmp_path_factory.mktemp("run")
    profile = tiny_profile(epochs=2, data_on_device=False)  # the DataLoader path

    def crash(rec: EpochRecord) -> None:
        if (rec.fold, rec.epoch) == (1, 0):
            raise Interrupt

    with pytest.raises(Interrupt):
        train_cv(cohort_dir, profile, out, callbacks=[crash], progress=False)
    assert (out / "folds" / "0" / "meta.json").is_file() and (out / "folds" / "1" / STATE_FILE).is_file()
    model_mtime = (out / "folds" / "0" / "model.safetensors").stat().st_mtime_ns
    rerun: list[tuple[int, int]] = []
    result = train_cv(cohort_dir, profile, out, callbacks=[lambda r: rerun.append((r.fold, r.epoch))],
                      progress=False)
    assert (out / "folds" / "0" / "model.safetensors").stat().st_mtime_ns == model_mtime
    return out, result, rerun


def test_resume_skips_finished_folds_and_continues_the_interrupted_one(run) -> None:
    out, result, rerun = run
    assert rerun == [(1, 1), (2, 0), (2, 1)]
    assert [f.reused for f in result.folds] == [True, False, False]
    log1 = pd.read_csv(out / "folds" / "1" / "log.csv")
    assert log1["epoch"].tolist() == [0, 1]


def test_run_writes_the_promised_files(run, cohort_dir: Path) -> None:
    out, result, _ = run
    for k in range(3):
        fold = out / "folds" / str(k)
        for name in ("model.safetensors", "meta.json", "log.csv", "log.json", "test_predictions.csv"):
            assert (fold / name).is_file(), f"fold {k}: {name}"
        assert not (fold / STATE_FILE).exists()
        meta = json.loads((fold / "meta.json").read_text())
        for key in ("temperature", "threshold", "sequences", "class_names", "grid", "best_epoch", "val_metrics",
                    "config_hash"):
            assert key in meta, key
        assert meta["grid"] == [12, 12, 12]
        log = json.loads((fold / "log.json").read_text())
        assert set(log[0]) >= {"train_loss", "val_loss", "val_auc", "lr", "seconds"}
    oof = pd.read_csv(out / "oof.csv", dtype={"subject_id": str})
    cohort = pd.read_csv(cohort_dir / "cohort.csv", dtype={"subject_id": str})
    assert sorted(oof["subject_id"]) == sorted(cohort["subject_id"])
    assert list(oof.columns) == ["subject_id", "fold", "label", "who_grade", "logit_LGG", "logit_HGG",
                                 "prob_LGG", "prob_HGG"]
    assert ((oof["prob_LGG"] + oof["prob_HGG"]) - 1).abs().max() < 1e-4
    merged = oof.merge(cohort, on="subject_id", suffixes=("", "_c"))
    assert (merged["label"] == (merged["grade"] == "HGG").astype(int)).all()
    splits = json.loads((out / "splits.json").read_text())
    for s in splits:
        assert sorted(oof.loc[oof["fold"] == s["fold"], "subject_id"]) == sorted(s["test"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 24 and metrics["n_folds"] == 3
    assert result.metrics is not None and result.metrics["pooled"]["auc"] == metrics["pooled"]["auc"]
    assert (out / "report" / "index.html").is_file() and (out / "config.yaml").is_file()


def test_cli_evaluate_recomputes_metrics(run, capsys: pytest.CaptureFixture[str]) -> None:
    out, result, _ = run
    (out / "metrics.json").unlink()
    assert main(["evaluate", str(out), "--n-boot", "200"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pooled"]["auc"] == pytest.approx(result.metrics["pooled"]["auc"])
    assert "ROC AUC" in capsys.readouterr().out


def test_changed_config_retrains_instead_of_reusing(run, cohort_dir: Path) -> None:
    """A finished fold is reused only for the same config: a different lr must not pick it up."""
    from gliomagrade.cv import make_splits
    from gliomagrade.data import load_cohort
    from gliomagrade.train import config_hash, load_finished_fold

    out, _, _ = run
    cohort = load_cohort(cohort_dir, progress=False)
    cfg = tiny_profile(epochs=2, data_on_device=False).train
    split = make_splits(cohort.labels, cohort.subject_ids, n_folds=3, val_fraction=0.25, seed=0)[0]
    assert load_finished_fold(out / "folds" / "0", config_hash(cfg, split, cohort)) is not None
    other = tiny_profile(epochs=2, data_on_device=True, lr=5e-3).train
    assert config_hash(other, split, cohort) != config_hash(cfg, split, cohort)
    same_runtime = tiny_profile(epochs=2, data_on_device=True).train  # runtime-only change: same model
    assert config_hash(same_runtime, split, cohort) == config_hash(cfg, split, cohort)


def test_run_scores_cams_against_the_segmentation(run) -> None:
    """Every OOF case with a tumour gets a CAM score; overlays of the best and worst cases are drawn."""
    out, _, _ = run
    stats = pd.read_csv(out / "cam" / "cam_stats.csv")
    oof = pd.read_csv(out / "oof.csv")
    assert set(stats["subject_id"]) == set(oof["subject_id"])
    scored = stats["cam_mass_inside"].dropna()  # NaN: no high-grade evidence anywhere (an all-zero map)
    assert len(scored) > 0 and scored.between(0, 1).all()
    assert set(stats["pointing_hit"].unique()) <= {True, False}
    assert len(list((out / "cam").glob("*_best_*.png"))) >= 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cam"]["n"] == len(stats) and metrics["cam"]["n_scored"] == len(scored)
    # the lesion-gated model's own segmentation of each held-out case is scored too
    assert stats["dice_lesion"].between(0, 1).all()
    assert metrics["cam"]["segmentation_dice"]["lesion"] == pytest.approx(stats["dice_lesion"].mean())
