"""`glioma cohort synth` / `glioma cohort montage` through the real console entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from gliomagrade.cli import main


def test_synth_then_montage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cohort"
    argv = ["cohort", "synth", "--out", str(out), "--n", "2", "--seed", "4", "--layout", "manifest",
            "--resolution", "4", "--workers", "1", "--hgg-fraction", "0.5"]
    assert main(argv) == 0
    assert (out / "manifest.csv").is_file()
    png = tmp_path / "montage.png"
    assert main(["cohort", "montage", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0"], "number of cases must be >= 1"),
        (["--n", "1", "--hgg-fraction", "1.5"], "hgg_fraction must be a number in [0.0, 1.0], got 1.5"),
        (["--n", "1", "--resolution", "0.2"], "resolution"),
        (["--n", "1", "--workers", "-1"], "--workers"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                         message: str) -> None:
    assert main(["cohort", "synth", "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_unknown_layout_is_refused_by_the_parser(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["cohort", "synth", "--out", str(tmp_path), "--n", "1", "--layout", "nifti"])


def test_montage_of_a_folder_that_is_no_cohort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cohort", "montage", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "ground_truth/cases.csv is missing" in capsys.readouterr().err
