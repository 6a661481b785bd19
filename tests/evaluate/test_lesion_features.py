"""bench/lesion_features.py: the statistics come from the right region, each sequence shows the extent it
makes abnormal, and a sequence that carries the grade inside the lesion scores higher than one that does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def test_features_are_taken_inside_each_region(bench_script) -> None:  # noqa: ANN001
    bench = bench_script("lesion_features")
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[2:4, 2:4, 2:4] = 1  # 8 core voxels
    seg[5:7, 5:7, 5:7] = 2  # 8 oedema voxels
    image = np.zeros((4, 8, 8, 8), np.float32)
    image[1][seg == 1] = 3.0  # t1ce bright in the core only
    image[3][seg == 2] = 2.0  # flair bright in the oedema only
    image += np.random.default_rng(0).normal(0, 0.1, image.shape).astype(np.float32)  # normal tissue: noise
    f = bench.lesion_features(image, seg, np.ones(seg.shape, bool))
    assert f["t1ce:core:mean"] == pytest.approx(3.0, abs=0.1) and f["t1ce:oedema:mean"] == pytest.approx(0, abs=0.1)
    assert f["flair:oedema:p95"] == pytest.approx(2.0, abs=0.3) and f["flair:core:std"] < 0.2
    # the extent each sequence shows: t1ce the core only, FLAIR the oedema only, t1 nothing
    assert f["t1ce:shown:core"] == pytest.approx(np.log1p(8)) and f["t1ce:shown:oedema"] == 0
    assert f["flair:shown:oedema"] == pytest.approx(np.log1p(8)) and f["flair:shown:core"] == 0
    assert f["t1:shown:core"] + f["t1:shown:oedema"] < np.log1p(2)


def test_a_sequence_that_carries_the_grade_scores_above_one_that_does_not(bench_script) -> None:  # noqa: ANN001
    bench = bench_script("lesion_features")
    rng = np.random.default_rng(0)
    y = np.repeat([False, True], 30)
    rows = []
    for hgg in y:
        seg = np.zeros((8, 8, 8), np.uint8)
        seg[2:5, 2:5, 2:5] = 1
        seg[5:7, 2:5, 2:5] = 2
        image = rng.normal(0, 1, (4, 8, 8, 8)).astype(np.float32)
        image[1][seg == 1] += 2.0 * hgg  # t1ce: enhancement in high grade
        rows.append(bench.lesion_features(image, seg, np.ones(seg.shape, bool)))
    x = pd.DataFrame(rows)
    assert bench.set_auc(x, y, ("t1ce",), repeats=1) > 0.95
    assert bench.set_auc(x, y, ("t1",), repeats=1) < 0.8
    assert bench.parse_set("all") == ("t1", "t1ce", "t2", "flair") and bench.parse_set("t2+flair") == ("t2", "flair")
    with pytest.raises(SystemExit, match="unknown sequence"):
        bench.parse_set("t1ce+dwi")


def test_bad_arguments_are_named(bench_script, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    bench = bench_script("lesion_features")
    for argv, message in (([str(tmp_path)], "no cohort.csv"), ([str(tmp_path), "--repeats", "0"], "--repeats must be >= 1")):
        monkeypatch.setattr("sys.argv", ["lesion_features.py", *argv])
        with pytest.raises(SystemExit, match=message):
            bench.main()
