"""Each output layout writes what the spec says; parallel and serial runs write the same cohort."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import ConfigError
from gliomagrade.synth import SynthParams, write_cohort

PARAMS = SynthParams(resolution=4.0, hgg_fraction=0.5, skull_prob=0.5)
SEED = 4  # gives both LGG and HGG among 3 cases (asserted in the brats2020 test)


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _truth(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "ground_truth").glob("*.json"))}


def _check_ingest_reads(root: Path, truth: dict[str, dict]) -> None:
    """The ingester (the contract's consumer) finds every case with the right grade and no failures."""
    from gliomagrade.ingest import discover

    table = discover(root)
    assert table.failures == []
    assert {c.subject_id: c.grade for c in table.cases} == {s: t["grade"] for s, t in truth.items()}


def _check_ground_truth(out: Path, subjects: list[str]) -> None:
    truth = _truth(out)
    assert sorted(truth) == sorted(subjects)
    for subject, record in truth.items():
        assert record["who_grade"] in (2, 3, 4)
        assert {"pose", "sequences", "tumour"} <= set(record)
        assert (out / "ground_truth" / f"{subject}_brainmask.nii.gz").is_file()


@pytest.fixture(scope="module")
def brats2020(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b20")
    root = write_cohort(out, 3, seed=SEED, layout="brats2020", workers=1, params=PARAMS)
    assert root == out / "MICCAI_BraTS2020_TrainingData"
    return out


def test_brats2020_names_and_name_mapping(brats2020: Path) -> None:
    root = brats2020 / "MICCAI_BraTS2020_TrainingData"
    header = (root / "name_mapping.csv").read_text().splitlines()[0]
    assert header == ("Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,"
                      "BraTS_2019_subject_ID,BraTS_2020_subject_ID")
    rows = _rows(root / "name_mapping.csv")
    subjects = [f"BraTS20_Training_{i:03d}" for i in (1, 2, 3)]
    assert [r["BraTS_2020_subject_ID"] for r in rows] == subjects
    truth = _truth(brats2020)
    for row in rows:
        subject = row["BraTS_2020_subject_ID"]
        assert row["Grade"] == ("HGG" if truth[subject]["who_grade"] == 4 else "LGG")
        names = sorted(p.name for p in (root / subject).iterdir())
        assert names == sorted(f"{subject}_{s}.nii.gz" for s in (*SEQUENCES, "seg"))
    assert {r["Grade"] for r in rows} == {"HGG", "LGG"}
    _check_ground_truth(brats2020, subjects)
    _check_ingest_reads(root, truth)


def test_brats2019_grade_folders(tmp_path: Path) -> None:
    root = write_cohort(tmp_path, 3, seed=SEED, layout="brats2019", workers=1, params=PARAMS)
    assert root == tmp_path / "MICCAI_BraTS_2019_Data_Training"
    truth = _truth(tmp_path)
    for i in (1, 2, 3):
        subject = f"BraTS19_SYN_{i:04d}_1"
        grade = "HGG" if truth[subject]["who_grade"] == 4 else "LGG"
        for seq in (*SEQUENCES, "seg"):
            assert (root / grade / subject / f"{subject}_{seq}.nii.gz").is_file()
    _check_ground_truth(tmp_path, [f"BraTS19_SYN_{i:04d}_1" for i in (1, 2, 3)])


def test_manifest_and_parallel_run_is_identical(tmp_path: Path, brats2020: Path) -> None:
    out = tmp_path / "m"
    write_cohort(out, 3, seed=SEED, layout="manifest", workers=2, params=PARAMS)
    rows = _rows(out / "manifest.csv")
    assert list(rows[0]) == ["subject_id", "who_grade", "grade", "t1", "t1ce", "t2", "flair", "seg"]
    for i, row in enumerate(rows, start=1):
        assert row["subject_id"] == f"SYN_{i:04d}"
        for seq in (*SEQUENCES, "seg"):
            assert not Path(row[seq]).is_absolute() and (out / row[seq]).is_file()
        # same seed, other layout, other worker count: same voxels
        other = brats2020 / "MICCAI_BraTS2020_TrainingData" / f"BraTS20_Training_{i:03d}"
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(out / row["flair"])))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(other / f"BraTS20_Training_{i:03d}_flair.nii.gz")))
        assert np.array_equal(a, b)
    _check_ground_truth(out, [r["subject_id"] for r in rows])
    _check_ingest_reads(out, _truth(out))


def test_dicom_series_descriptions_labels_and_geometry(tmp_path: Path) -> None:
    write_cohort(tmp_path, 1, seed=SEED, layout="dicom", workers=1, params=PARAMS)
    labels = _rows(tmp_path / "labels.csv")
    assert list(labels[0]) == ["subject_id", "who_grade", "grade"]
    truth = _truth(tmp_path)
    for row in labels:
        subject = row["subject_id"]
        series = sorted((tmp_path / subject).iterdir())
        assert len(series) == 4
        descriptions = [pydicom.dcmread(next(s.glob("*.dcm"))).SeriesDescription for s in series]
        for seq, description, expected in zip(SEQUENCES, descriptions, ("T1 PRE", "T1 POST GAD", "T2 FSE", "FLAIR"),
                                              strict=True):
            assert description.split(" ", 1)[1] == expected
            assert description.split(" ", 1)[0] in ("AX", "COR", "SAG")
            assert description.startswith({"axial": "AX", "coronal": "COR", "sagittal": "SAG"}[
                truth[subject]["sequences"][seq]["orientation"]])
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series[1])))
        t1ce = reader.Execute()
        seg = sitk.ReadImage(str(tmp_path / "ground_truth" / f"{subject}_seg.nii.gz"))
        assert np.allclose(t1ce.GetOrigin(), seg.GetOrigin(), atol=1e-3)
        assert np.allclose(t1ce.GetSpacing(), seg.GetSpacing(), atol=1e-3)
        assert np.allclose(t1ce.GetDirection(), seg.GetDirection(), atol=1e-3)
    _check_ground_truth(tmp_path, [r["subject_id"] for r in labels])
    _check_ingest_reads(tmp_path, truth)


def test_refuses_to_overwrite_a_cohort_and_bad_arguments(brats2020: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already holds"):
        write_cohort(brats2020, 1, layout="brats2020", params=PARAMS)
    with pytest.raises(ConfigError, match="layout"):
        write_cohort(tmp_path, 1, layout="nifti", params=PARAMS)
    with pytest.raises(ConfigError, match="number of cases"):
        write_cohort(tmp_path, 0, params=PARAMS)
