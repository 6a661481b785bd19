"""ingest.discover: every layout from tiny fixtures, and every bad case reported with its reason."""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from ingest_fixtures import (
    FAKE_PATIENT_ID,
    FAKE_PATIENT_NAME,
    segmentation,
    volume,
    write_brats_case,
    write_csv,
    write_dicom_case,
)

from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import InputError
from gliomagrade.ingest import CaseRecord, CaseTable, detect_layout, discover, parse_labels


def _by_id(table: CaseTable) -> dict[str, CaseRecord]:
    return {c.subject_id: c for c in table.cases}


def _reasons(table: CaseTable) -> dict[str, str]:
    return {f.subject_id: f.reason for f in table.failures}


def test_brats2020_with_name_mapping_nii_and_case_355(brats2020: Path) -> None:
    assert detect_layout(brats2020) == ("brats2020", brats2020)
    table = discover(brats2020, workers=1)
    assert table.failures == []
    cases = _by_id(table)
    assert {s: c.grade for s, c in cases.items()} == {
        "BraTS20_Training_001": "HGG", "BraTS20_Training_002": "LGG", "BraTS20_Training_355": "HGG"}
    assert cases["BraTS20_Training_355"].seg.name == "W39_1998.09.19_Segm.nii"
    assert cases["BraTS20_Training_002"].images["flair"].name == "BraTS20_Training_002_flair.nii"
    assert cases["BraTS20_Training_001"].images["t1ce"].name == "BraTS20_Training_001_t1ce.nii.gz"
    assert all(c.layout == "brats2020" and c.who_grade is None for c in table.cases)


def test_brats2020_found_from_the_parent_folder_and_unlisted_cases(brats2020: Path) -> None:
    write_brats_case(brats2020 / "BraTS20_Training_400")
    shutil.rmtree(brats2020 / "BraTS20_Training_002")
    table = discover(brats2020.parent, validate=False)
    assert _reasons(table) == {"BraTS20_Training_002": "listed in name_mapping.csv but no case folder found"}
    assert _by_id(table)["BraTS20_Training_400"].grade is None
    assert [(n.subject_id, n.reason) for n in table.notes] == [
        ("BraTS20_Training_400", "not listed in the name mapping: no grade")]


def test_brats2021_without_grades_is_ingestible(tmp_path: Path) -> None:
    root = tmp_path / "BraTS2021_Training_Data"
    for case in ("BraTS2021_00000", "BraTS2021_00002"):
        write_brats_case(root / case)
    table = discover(root, validate=False)
    assert sorted(_by_id(table)) == ["BraTS2021_00000", "BraTS2021_00002"]
    assert all(c.grade is None and c.layout == "brats2020" for c in table.cases)


def test_brats2023_names_are_aliases(tmp_path: Path) -> None:
    case = tmp_path / "BraTS-GLI-00000-000"
    case.mkdir(parents=True)
    for k, name in enumerate(("t1n", "t1c", "t2w", "t2f", "seg")):
        sitk.WriteImage(segmentation() if name == "seg" else volume(seed=k), str(case / f"{case.name}-{name}.nii.gz"))
    (record,) = discover(tmp_path, validate=False).cases
    assert {s: p.name for s, p in record.images.items()} == {
        "t1": "BraTS-GLI-00000-000-t1n.nii.gz", "t1ce": "BraTS-GLI-00000-000-t1c.nii.gz",
        "t2": "BraTS-GLI-00000-000-t2w.nii.gz", "flair": "BraTS-GLI-00000-000-t2f.nii.gz"}
    assert record.seg.name == "BraTS-GLI-00000-000-seg.nii.gz"


def test_brats2019_grade_from_folder_in_worker_processes(brats2019: Path) -> None:
    table = discover(brats2019, workers=2)
    assert table.failures == []
    assert {s: c.grade for s, c in _by_id(table).items()} == {
        "BraTS19_CBICA_AAB_1": "HGG", "BraTS19_2013_2_1": "HGG", "BraTS19_TCIA10_103_1": "LGG"}
    assert table.counts() == {("brats2019", "HGG"): 2, ("brats2019", "LGG"): 1}


def test_duplicate_subject_ids_are_both_reported(brats2019: Path) -> None:
    write_brats_case(brats2019 / "LGG" / "BraTS19_CBICA_AAB_1")
    table = discover(brats2019, workers=1)
    dupes = [f for f in table.failures if f.subject_id == "BraTS19_CBICA_AAB_1"]
    assert sorted(Path(f.source).parent.name for f in dupes) == ["HGG", "LGG"]
    assert all(f.reason.startswith("duplicate subject ID: also at ") for f in dupes)
    assert dupes[0].source in dupes[1].reason and dupes[1].source in dupes[0].reason
    assert "BraTS19_CBICA_AAB_1" not in _by_id(table) and len(table.cases) == 2


def test_duplicate_of_a_failed_case_is_reported(brats2019: Path) -> None:
    write_brats_case(brats2019 / "LGG" / "BraTS19_CBICA_AAB_1", sequences=("t1", "t2"))
    reasons = [f.reason for f in discover(brats2019, validate=False).failures]
    assert any(r.startswith("missing sequence(s) t1ce, flair") for r in reasons)
    assert any(r.startswith("duplicate subject ID: also at ") and r.endswith("LGG/BraTS19_CBICA_AAB_1")
               for r in reasons)


def test_missing_sequence(brats2019: Path) -> None:
    (brats2019 / "HGG" / "BraTS19_2013_2_1" / "BraTS19_2013_2_1_t2.nii.gz").unlink()
    reasons = _reasons(discover(brats2019, validate=False))
    assert reasons["BraTS19_2013_2_1"].startswith("missing sequence(s) t2; found ['BraTS19_2013_2_1_flair.nii.gz'")


def test_nii_and_nii_gz_of_one_sequence_is_ambiguous(brats2019: Path) -> None:
    case = brats2019 / "LGG" / "BraTS19_TCIA10_103_1"
    sitk.WriteImage(volume(), str(case / "BraTS19_TCIA10_103_1_t1.nii.gz"))
    reasons = _reasons(discover(brats2019, validate=False))
    assert reasons["BraTS19_TCIA10_103_1"] == ("several files for t1: BraTS19_TCIA10_103_1_t1.nii, "
                                               "BraTS19_TCIA10_103_1_t1.nii.gz")


@pytest.mark.parametrize("bad, expected", [
    ("truncated", r"^sequence t1ce: truncated or corrupt gzip stream .*\(BraTS20_Training_001_t1ce.nii.gz\)$"),
    ("nan", r"^sequence t1ce: found 2 non-finite voxels \(NaN/Inf\) of 1440, expected all finite"),
    ("zero", r"^sequence t1ce: found an all-zero \(empty\) image"),
    ("2d", r"^sequence t1ce: found a 2D image of size \(12, 12\), expected a 3D volume"),
    ("4d", r"^sequence t1ce: found a 4D image of size \(12, 12, 10, 2\), expected one 3D volume"),
    ("fov", r"^sequences cover different fields of view: t1ce 12x12x15 mm vs t1 1x1x1 mm \(relative difference "),
    ("junk", r"^sequence t1ce: not a NIfTI image: found unknown content"),
])
def test_each_bad_image_fails_its_case_with_the_reason(brats2020: Path, bad: str, expected: str) -> None:
    path = brats2020 / "BraTS20_Training_001" / "BraTS20_Training_001_t1ce.nii.gz"
    good = volume()
    if bad == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif bad == "nan":
        array = sitk.GetArrayFromImage(good)
        array[2, 3, 4], array[5, 5, 5] = np.nan, -np.inf
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    elif bad == "zero":
        sitk.WriteImage(good * 0, str(path))
    elif bad == "2d":
        sitk.WriteImage(good[:, :, 0], str(path))
    elif bad == "4d":
        sitk.WriteImage(sitk.JoinSeries([good, good]), str(path))
    elif bad == "fov":
        sitk.WriteImage(volume(spacing=(0.1, 0.1, 0.1)), str(path.with_name("BraTS20_Training_001_t1.nii.gz")))
    elif bad == "junk":
        path.write_bytes(b"%PDF-1.4 not an image" * 30)
    table = discover(brats2020, workers=1)
    failure = {f.subject_id: f for f in table.failures}["BraTS20_Training_001"]
    assert failure.source == str(brats2020 / "BraTS20_Training_001")
    assert re.search(expected, failure.reason), failure.reason
    assert sorted(_by_id(table)) == ["BraTS20_Training_002", "BraTS20_Training_355"]


def test_several_problems_of_one_case_are_all_reported(brats2020: Path) -> None:
    case = brats2020 / "BraTS20_Training_002"
    sitk.WriteImage(volume() * 0, str(case / "BraTS20_Training_002_t2.nii"))
    (case / "BraTS20_Training_002_seg.nii").write_bytes(b"junk" * 100)
    reason = _reasons(discover(brats2020, workers=1))["BraTS20_Training_002"]
    assert "sequence t2: found an all-zero (empty) image" in reason
    assert "sequence seg: not a NIfTI image" in reason and "(BraTS20_Training_002_seg.nii)" in reason


def test_no_validate_skips_voxels(brats2020: Path) -> None:
    sitk.WriteImage(volume() * 0, str(brats2020 / "BraTS20_Training_002" / "BraTS20_Training_002_t2.nii"))
    assert len(discover(brats2020, validate=False).cases) == 3


def _manifest(tmp_path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    images = tmp_path / "images"
    for subject in ("p1", "p2", "p3"):
        for k, seq in enumerate(SEQUENCES):
            images.mkdir(exist_ok=True)
            sitk.WriteImage(volume(seed=k), str(images / f"{subject}_{seq}.nii.gz"))
    sitk.WriteImage(segmentation(), str(images / "p1_seg.nii.gz"))
    header = header or ["subject_id", "grade", "who_grade", *SEQUENCES, "seg"]
    return write_csv(tmp_path / "manifest.csv", header, rows)


def _row(subject: str, grade: str, who: str, seg: str = "") -> list[str]:
    return [subject, grade, who, *(f"images/{subject}_{s}.nii.gz" for s in SEQUENCES), seg]


def test_manifest_labels_paths_and_grade_consistency(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [_row("p1", "", "3", "images/p1_seg.nii.gz"), _row("p2", "HGG", ""),
                                    _row("p3", "HGG", "2"), _row("p4", "LGG", "2")])
    assert detect_layout(tmp_path) == ("manifest", manifest)
    table = discover(tmp_path, workers=1)
    cases = _by_id(table)
    assert (cases["p1"].grade, cases["p1"].who_grade, cases["p1"].layout) == ("LGG", 3, "manifest")
    assert cases["p1"].seg == tmp_path / "images" / "p1_seg.nii.gz"
    assert (cases["p2"].grade, cases["p2"].who_grade) == ("HGG", None)
    reasons = _reasons(table)
    assert reasons["p3"] == "grade HGG disagrees with WHO grade 2 (which is LGG by the BraTS convention)"
    assert reasons["p4"].startswith("t1 file not found: ") and reasons["p4"].endswith("images/p4_t1.nii.gz")
    assert {f.subject_id: f.source for f in table.failures}["p3"] == f"{manifest}:4"


def test_manifest_csv_given_directly_and_missing_columns(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [_row("p1", "LGG", "")])
    assert [c.subject_id for c in discover(manifest, validate=False).cases] == ["p1"]
    bad = write_csv(tmp_path / "bad.csv", ["subject_id", "t1", "t1ce", "t2"], [["p1", "a", "b", "c"]])
    with pytest.raises(InputError, match=r"manifest lacks columns \['flair', 'grade or who_grade'\]"):
        discover(bad)


@pytest.mark.parametrize("grade, who, expected", [("", "IV", ("HGG", 4)), ("lgg", "", ("LGG", None)),
                                                  ("", "WHO II", ("LGG", 2)), ("", "", (None, None))])
def test_parse_labels(grade: str, who: str, expected: tuple) -> None:
    assert parse_labels(grade, who, subject="s", source="x") == expected


@pytest.mark.parametrize("grade, who, message", [("GBM", "", "grade 'GBM' is not one of"),
                                                 ("", "5", "WHO grade '5' is not 2, 3 or 4")])
def test_parse_labels_rejects(grade: str, who: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_labels(grade, who, subject="s", source="x")


def test_dicom_layout_labels_and_unmapped_series(dicom_cohort: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    (dicom_cohort / "ground_truth").mkdir()
    sitk.WriteImage(segmentation(), str(dicom_cohort / "ground_truth" / "case01_seg.nii.gz"))
    assert detect_layout(dicom_cohort) == ("dicom", dicom_cohort)
    table = discover(dicom_cohort, workers=1)
    assert table.failures == []
    cases = _by_id(table)
    assert (cases["case01"].grade, cases["case01"].who_grade) == ("HGG", 4)
    assert (cases["case02"].grade, cases["case02"].who_grade) == ("LGG", 2)
    assert cases["case01"].images == {s: dicom_cohort / "case01" / s for s in SEQUENCES}
    assert [(n.subject_id, n.reason) for n in table.notes] == [
        ("case01", "unmapped series: series 5 'AX DWI b1000'"),
        ("ground_truth", "skipped: folder holds no DICOM file")]
    assert FAKE_PATIENT_NAME not in caplog.text and FAKE_PATIENT_ID not in caplog.text


def test_dicom_unreadable_slice_and_unmappable_series(dicom_cohort: Path) -> None:
    slice_ = dicom_cohort / "case01" / "t2" / "IM0003.dcm"
    slice_.write_bytes(slice_.read_bytes()[:-50])
    write_dicom_case(dicom_cohort / "case03", descriptions={"t1": "AX T1 SE", "t1ce": "AX T1 POST",
                                                            "t2": "Sequence 9", "flair": "AX FLAIR"})
    table = discover(dicom_cohort, workers=1)
    reasons = _reasons(table)
    assert reasons["case01"].startswith("sequence t2: series 3 'AX T2 FSE': unreadable slice IM0003.dcm: found")
    assert reasons["case03"] == "no series for t2; unmapped series: series 3 'Sequence 9' (use --sequence-map)"
    mapped = discover(dicom_cohort, workers=1, sequence_map={"t2": "sequence 9"})
    assert "case03" in _by_id(mapped)


def test_case_table_round_trip_and_no_identifiers(dicom_cohort: Path, tmp_path: Path) -> None:
    (dicom_cohort / "case02" / "flair" / "IM0002.dcm").write_bytes(b"broken")
    table = discover(dicom_cohort, workers=1)
    cases_csv = table.write(tmp_path / "out")
    text = cases_csv.read_text() + (tmp_path / "out" / "failures.csv").read_text()
    assert FAKE_PATIENT_NAME not in text and "Doe" not in text and FAKE_PATIENT_ID not in text
    back = CaseTable.read(tmp_path / "out")
    assert back.cases == table.cases and back.failures == table.failures
    with open(tmp_path / "out" / "failures.csv") as fh:
        row = next(csv.DictReader(fh))
    assert row["subject_id"] == "case02" and "not readable DICOM: IM0002.dcm" in row["reason"]


def test_unknown_layout_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(InputError, match="could not recognise the cohort layout"):
        discover(tmp_path)
    with pytest.raises(InputError, match="sequence map key 't1gd' is not one of"):
        discover(tmp_path, layout="dicom", sequence_map={"t1gd": "x"})


def test_forced_layout(brats2020: Path, tmp_path: Path) -> None:
    assert len(discover(brats2020, layout="brats2020", validate=False).cases) == 3
    with pytest.raises(InputError, match="layout brats2019 needs HGG/ and/or LGG/ folders"):
        discover(brats2020, layout="brats2019")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="found no cases for layout dicom"):
        discover(tmp_path / "empty", layout="dicom")
