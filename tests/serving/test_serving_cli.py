"""`glioma predict` against the running stack (``glioma serve`` itself is the session fixture)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
from serving_fixtures import MODEL, Server, Stack

from gliomagrade.cli import main
from gliomagrade.serving.client import find_case_files

pytestmark = pytest.mark.integration


def test_glioma_serve_printed_the_urls(stack: Stack) -> None:
    text = "\n".join(stack.output)
    assert f"{stack.transformer.url}/v2/models/{MODEL}/infer" in text
    assert f"{stack.predictor.url}/v2/models/{MODEL}" in text


def test_predict_case_dir_writes_cam_next_to_it(transformer: Server, case_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "BraTS20_Training_001"
    folder.mkdir()
    for seq in ("t1", "t1ce", "t2", "flair"):
        shutil.copy(case_dir / f"{seq}.nii.gz", folder / f"BraTS20_Training_001_{seq}.nii.gz")
    assert main(["predict", "--url", transformer.url, "--model", MODEL, str(folder)]) == 0
    out = capsys.readouterr().out
    assert "grade" in out and "probs" in out and "confidence" in out and "review" in out and "preprocess" in out
    cam = sitk.ReadImage(str(folder / "BraTS20_Training_001_cam.nii.gz"))
    assert cam.GetSize() == sitk.ReadImage(str(folder / "BraTS20_Training_001_t1ce.nii.gz")).GetSize()
    assert (folder / "BraTS20_Training_001_cam.png").read_bytes()[:4] == b"\x89PNG"
    result = json.loads((folder / "BraTS20_Training_001_result.json").read_text())
    assert result["grade"] in ("LGG", "HGG") and result["model_version"] == "1"
    assert result["cam_peak"] > 0 and f"cam peak   {result['cam_peak']:.3g}" in out  # what 1.0 in the map means


def test_predict_four_files_v1_into_out(transformer: Server, case_dir: Path, tmp_path: Path) -> None:
    files = [str(case_dir / f"{s}.nii.gz") for s in ("flair", "t2", "t1ce", "t1")]
    code = main(["predict", "--url", transformer.url, "--model", MODEL, "--protocol", "v1", "--cam", "nifti",
                 "--out", str(tmp_path), *files])
    assert code == 0
    assert (tmp_path / "case_cam.nii.gz").is_file() and not (tmp_path / "case_cam.png").exists()


def test_predict_reports_server_errors_and_missing_files(transformer: Server, case_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--url", transformer.url, "--model", MODEL, str(case_dir / "t1.nii.gz")]) == 2
    assert "no file for sequence(s) ['t1ce', 't2', 'flair']" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(case_dir, broken)
    (broken / "t2.nii.gz").write_bytes(b"not an image at all" * 20)
    assert main(["predict", "--url", transformer.url, "--model", MODEL, str(broken)]) == 2
    assert "HTTP 400" in capsys.readouterr().err
    assert sorted(find_case_files([case_dir])) == ["flair", "t1", "t1ce", "t2"]
