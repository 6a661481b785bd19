"""``preprocess_cohort`` and ``glioma preprocess``: files on disk, resumability, failures that don't stop the rest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from gliomagrade.cli import main
from gliomagrade.config import PreprocessConfig
from gliomagrade.ingest import CaseRecord, CaseTable
from gliomagrade.preprocess import preprocess_cohort

from .conftest import TINY, phantom


def _write_case(root: Path, subject: str, *, constant_flair: bool = False) -> CaseRecord:
    case = phantom()
    folder = root / subject
    folder.mkdir(parents=True)
    images = {}
    for seq, image in case.images.items():
        if constant_flair and seq == "flair":
            image = sitk.Image(image.GetSize(), sitk.sitkFloat32) + 3.0
            image.CopyInformation(case.images["flair"])
        images[seq] = folder / f"{subject}_{seq}.nii.gz"
        sitk.WriteImage(image, str(images[seq]))
    seg = folder / f"{subject}_seg.nii.gz"
    sitk.WriteImage(case.seg, str(seg))
    (root / "ground_truth").mkdir(exist_ok=True)
    sitk.WriteImage(case.brain_mask, str(root / "ground_truth" / f"{subject}_brainmask.nii.gz"))
    return CaseRecord(subject, images, seg, "HGG", 4, "manifest")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CaseRecord]]:
    root = tmp_path_factory.mktemp("raw")
    cases = [_write_case(root, "A01"), _write_case(root, "B02"), _write_case(root, "C03", constant_flair=True)]
    return root, cases


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cohort_outputs_resume_and_failures(cohort: tuple[Path, list[CaseRecord]], tmp_path: Path) -> None:
    _, cases = cohort
    cfg = PreprocessConfig(**TINY)
    out = tmp_path / "pre"
    summary = preprocess_cohort(cases, out, cfg, workers=1)
    assert sorted(summary.done) == ["A01", "B02"]
    assert [f.subject_id for f in summary.failed] == ["C03"] and "flair" in summary.failed[0].reason
    failures = _rows(out / "failures.csv")
    assert [r["subject_id"] for r in failures] == ["C03"] and failures[0]["stage"] == "read"
    rows = _rows(out / "cohort.csv")
    assert [r["subject_id"] for r in rows] == ["A01", "B02"]
    assert rows[0]["grade"] == "HGG" and rows[0]["who_grade"] == "4"
    assert float(rows[0]["brain_dice"]) > 0.9  # ground_truth/ next to the cases was found
    with np.load(out / rows[0]["npz"]) as data:
        assert data["image"].shape == (4, 24, 24, 24) and data["image"].dtype == np.float16
        assert data["mask"].dtype == np.uint8 and data["seg"].shape == (24, 24, 24)
    record = json.loads((out / "cases" / "A01.json").read_text())
    assert {"geometry", "qc", "key"} <= set(record)
    assert (out / "qc" / "A01.png").stat().st_size > 0 and (out / "qc_montage.png").is_file()
    assert json.loads((out / "preprocess.json").read_text())["config"]["grid"] == [24, 24, 24]
    assert not (out / "cases" / "C03.npz").exists()

    # Second run: nothing to redo for the good cases; the bad one is reported again.
    mtime = (out / "cases" / "A01.npz").stat().st_mtime_ns
    again = preprocess_cohort(cases, out, cfg, workers=1)
    assert sorted(again.skipped) == ["A01", "B02"] and not again.done
    assert (out / "cases" / "A01.npz").stat().st_mtime_ns == mtime
    assert len(_rows(out / "cohort.csv")) == 2

    # A changed configuration redoes every case.
    changed = preprocess_cohort(cases[:1], out, cfg.model_copy(update={"margin_mm": 10.0}), workers=1)
    assert changed.done == ["A01"]


def test_cli_reads_a_case_table_and_exits_1_on_failure(cohort: tuple[Path, list[CaseRecord]], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root, cases = cohort
    table = CaseTable([cases[0], cases[2]], []).write(root / "table")
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump({"preprocess": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in TINY.items()}}))
    out = tmp_path / "pre"
    code = main(["preprocess", str(table), "--out", str(out), "--profile", str(profile), "--workers", "1",
                 "--no-n4"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "C03" in printed and "failed" in printed and "1 done" in printed
    assert len(_rows(out / "cohort.csv")) == 1
