"""Cohort loading (schema, labels, errors) and the two batch sources giving the same batches."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagrade.constants import WHO_CLASSES
from gliomagrade.data import DeviceBatches, LoaderBatches, batch_slices, epoch_order, load_cohort
from gliomagrade.errors import InputError


def test_load_cohort_binary_selects_sequences_in_canonical_order(cohort_dir: Path) -> None:
    full = load_cohort(cohort_dir, progress=False)
    two = load_cohort(cohort_dir, "flair,t1ce", progress=False)
    assert full.images.dtype == torch.float16 and full.images.shape == (24, 4, 12, 12, 12)
    assert two.sequences == ("t1ce", "flair") and two.images.shape[1] == 2
    assert torch.equal(two.images[:, 0], full.images[:, 1]) and torch.equal(two.images[:, 1], full.images[:, 3])
    assert full.class_names == ("LGG", "HGG")
    assert np.array_equal(full.labels, (full.who_grades == 4).astype(np.int64))
    assert full.seg is not None and full.seg.shape == (24, 12, 12, 12)
    sub = full.subset([3, 1])
    assert sub.subject_ids == (full.subject_ids[3], full.subject_ids[1])
    assert torch.equal(sub.images[0], full.images[3]) and sub.labels[1] == full.labels[1]


def test_load_cohort_who_task(cohort_dir: Path) -> None:
    c = load_cohort(cohort_dir, task="who", progress=False)
    assert c.class_names == WHO_CLASSES
    assert np.array_equal(c.labels, c.who_grades - 2)


def _rewrite(cohort_dir: Path, tmp_path: Path, edit: dict[str, dict[str, str]]) -> Path:
    """Copy the cohort table to tmp_path with some cells changed (cases are referenced, not copied)."""
    with (cohort_dir / "cohort.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.update(edit.get(r["subject_id"], {}))
        r["npz"] = str(cohort_dir / r["npz"])
    with (tmp_path / "cohort.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path


def test_missing_labels_name_the_subjects(cohort_dir: Path, tmp_path: Path) -> None:
    root = _rewrite(cohort_dir, tmp_path, {"SYN002": {"grade": "", "who_grade": ""}, "SYN005": {"who_grade": ""}})
    with pytest.raises(InputError, match="SYN002") as err:
        load_cohort(root, task="binary", progress=False)
    assert "SYN005" not in str(err.value)  # its grade column still says LGG/HGG
    with pytest.raises(InputError, match="SYN002, SYN005"):
        load_cohort(root, task="who", progress=False)


def test_wrong_image_shape_names_case_and_file(cohort_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=np.zeros((3, 12, 12, 12), np.float16))
    root = _rewrite(cohort_dir, tmp_path, {"SYN004": {"npz": str(bad)}})
    with pytest.raises(InputError, match=r"SYN004.*bad\.npz.*\(3, 12, 12, 12\)"):
        load_cohort(root, progress=False)


@pytest.mark.parametrize("balanced", [False, True])
def test_loader_and_device_sources_give_the_same_batches(cohort_dir: Path, balanced: bool) -> None:
    cohort = load_cohort(cohort_dir, progress=False)
    order = epoch_order(cohort.labels, seed=11, balanced=balanced)
    slices = batch_slices(order, 5)
    dev = torch.device("cpu")
    a = list(DeviceBatches.from_cohort(cohort, dev).batches(slices))
    b = list(LoaderBatches(cohort, dev).batches(slices))
    assert len(a) == len(b) == 5  # 24 cases in 5s: the last batch of 4 is kept
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == xb.dtype == torch.float16
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(a[0][0][0], cohort.images[order[0]])


def test_balanced_order_evens_out_classes() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    order = epoch_order(labels, seed=0, balanced=True)
    assert 0.35 < labels[order].mean() < 0.65
    assert sorted(epoch_order(labels, seed=0, balanced=False)) == list(range(100))


def test_batch_slices_drop_a_single_case_tail() -> None:
    assert [len(s) for s in batch_slices(np.arange(9), 4)] == [4, 4]
    assert [len(s) for s in batch_slices(np.arange(9), 4, min_last=1)] == [4, 4, 1]
    assert [len(s) for s in batch_slices(np.arange(1), 4)] == [1]
