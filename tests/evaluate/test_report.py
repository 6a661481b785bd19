"""write_report produces a self-contained page with every section and readable figures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib.image as mpimg

from gliomagrade.report import write_report


def _check_common(page: Path, metrics: dict) -> str:
    text = page.read_text()
    for png in ("roc", "reliability", "confusion", "training"):
        img = mpimg.imread(page.parent / f"{png}.png")
        assert img.ndim == 3 and min(img.shape[:2]) > 200, png
    assert 'src="http' not in text and "<script" not in text  # self-contained, nothing fetched
    for heading in ("Performance", "Per fold", "Training", "Model card"):
        assert f"<h2>{heading}</h2>" in text
    assert "adjunct to, never a replacement for, histopathological" in text
    assert "mixes WHO grade II and III" in text and "Synthetic cohort" in text
    assert f"{metrics['pooled']['auc']:.3f}" in text
    return text


def test_binary_report_has_figures_tables_cam_ablation_and_model_card(
    binary_run: Path, binary_metrics_result: dict
):
    page = write_report(binary_run, metrics=binary_metrics_result, band_boot=50)
    assert page == binary_run / "report" / "index.html"
    text = _check_common(page, binary_metrics_result)
    # roc, reliability, confusion, training, ablation + one CAM montage
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 6
    assert "<h2>Ablation</h2>" in text and "<h2>Grad-CAM</h2>" in text and "pointing-game hit rate" in text
    assert "own segmentation of the held-out cases, mean Dice: lesion 0.70, core n/a" in text
    assert "<tr><td>t1ce</td><td>-1.00</td><td>+2.00</td></tr>" in text  # per-sequence evidence, by true class
    assert (binary_run / "report" / "ablation.png").is_file()


def test_who_report_evaluates_when_metrics_missing(who_run: Path, tmp_path: Path, n_boot: int):
    run = tmp_path / "who"
    shutil.copytree(who_run, run, ignore=shutil.ignore_patterns("metrics.json", "metrics_table.md", "report"))
    page = write_report(run, band_boot=20, n_boot=n_boot)
    assert (run / "metrics.json").is_file() and (run / "metrics_table.md").is_file()
    text = _check_common(page, json.loads((run / "metrics.json").read_text()))
    assert "Per class (one vs rest)" in text
    assert "<h2>Ablation</h2>" not in text and "<h2>Grad-CAM</h2>" not in text
