"""Smoke test of bench/train.py on CPU with tiny settings: all three loops run and report ratios."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train.py"


def test_bench_train_runs_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--model", "smallcnn", "--grid", "16", "--batch", "2", "--n-cases", "4", "--steps", "2",
                         "--warmup", "1", "--device", "cpu", "--workers", "0"])
    assert set(report["results"]) == {"model_only", "ours", "tutorial"}
    assert all(r["vol_s"] > 0 for r in report["results"].values())
    assert report["ratios"]["ours_vs_model_only"] > 0 and report["ratios"]["ours_vs_tutorial"] > 0
    assert report["projection_5fold_369x100"]["hours_total"] > 0
    out = capsys.readouterr().out
    assert "| ours end-to-end" in out and '"ratios"' in out
