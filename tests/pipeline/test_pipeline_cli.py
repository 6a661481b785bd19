"""`glioma pipeline run --local` on a cohort with no usable case: exit 1, the failing step named, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gliomagrade.cli import main


def test_run_on_an_empty_cohort_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cohort = tmp_path / "cohort"
    (cohort / "case1").mkdir(parents=True)
    (cohort / "case1" / "notes.txt").write_text("no images here")
    code = main(["pipeline", "run", "--local", "--cohort", str(cohort), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    assert "pipeline failed" in out and "ingest" in out
    log = (tmp_path / "out" / "pipeline-steps.log").read_text()
    assert "InputError" in log or "no valid case" in log or "layout" in log


def test_compile_writes_yaml(tmp_path: Path) -> None:
    assert main(["pipeline", "compile", "--out", str(tmp_path / "p.yaml"), "--no-gpu"]) == 0
    assert "gliomagrade-train-gate-release" in (tmp_path / "p.yaml").read_text()
