"""`glioma ingest`: exit codes, written tables, printed summary, no identifiers anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import SimpleITK as sitk
from ingest_fixtures import FAKE_PATIENT_ID, FAKE_PATIENT_NAME, volume

from gliomagrade.cli import main
from gliomagrade.cli.ingest import parse_sequence_map
from gliomagrade.errors import InputError
from gliomagrade.ingest import CaseTable


def test_all_cases_pass_exit_0(brats2019: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ingest", str(brats2019), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "usable cases" in out and "brats2019" in out and "HGG" in out and "failed cases" not in out
    assert len(CaseTable.read(tmp_path / "out" / "cases.csv").cases) == 3


def test_failed_case_exit_1_and_table_still_written(brats2020: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    sitk.WriteImage(volume() * 0, str(brats2020 / "BraTS20_Training_002" / "BraTS20_Training_002_flair.nii"))
    assert main(["ingest", str(brats2020), "--out", str(tmp_path / "out"), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "failed cases (1)" in out and "BraTS20_Training_002" in out and "all-zero" in out
    table = CaseTable.read(tmp_path / "out")
    assert len(table.cases) == 2 and [f.subject_id for f in table.failures] == ["BraTS20_Training_002"]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ingest", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 2
    assert "cohort root not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["ingest", str(tmp_path), "--out", str(tmp_path / "o"), "--layout", "brats2099"])
    assert exc.value.code == 2
    assert main(["ingest", str(tmp_path), "--out", str(tmp_path / "o"), "--sequence-map", "t1gd=AX T1"]) == 2
    assert "sequence map key 't1gd' is not one of" in capsys.readouterr().err


def test_sequence_map_items_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "map.yaml").write_text("t1ce: [AX T1 POST, 'T1 3D GAD*']\nflair: SAG FLAIR CUBE\n")
    merged = parse_sequence_map(["t1ce=\"AX T1 MPRAGE C\"", str(tmp_path / "map.yaml"), "t2=Ax T2 Prop"])
    assert merged == {"t1ce": ["AX T1 MPRAGE C", "AX T1 POST", "T1 3D GAD*"], "flair": ["SAG FLAIR CUBE"],
                      "t2": ["Ax T2 Prop"]}
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(InputError, match="must be a mapping"):
        parse_sequence_map([str(tmp_path / "bad.yaml")])


def test_dicom_cohort_never_leaks_identifiers(dicom_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    slice_ = dicom_cohort / "case02" / "t1" / "IM0004.dcm"
    slice_.write_bytes(slice_.read_bytes()[:-30])
    code = main(["-v", "ingest", str(dicom_cohort), "--out", str(tmp_path / "out"), "--workers", "1",
                 "--sequence-map", "t2=AX T2 FSE"])
    captured = capsys.readouterr()
    assert code == 1
    assert "case02" in captured.out and "unmapped series" in captured.out
    written = "".join(p.read_text() for p in (tmp_path / "out").iterdir())
    for text in (captured.out, captured.err, caplog.text, written):
        assert FAKE_PATIENT_NAME not in text and "Doe" not in text and FAKE_PATIENT_ID not in text
