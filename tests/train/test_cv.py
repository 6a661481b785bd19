"""Data tests for the splits: patient-level, stratified, inner validation apart from the test fold."""

from __future__ import annotations

import numpy as np
import pytest

from gliomagrade.cv import FoldSplit, check_splits, make_splits
from gliomagrade.errors import ConfigError


def _cohort(n: int = 60, pos: float = 0.3, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < pos).astype(np.int64)
    return labels, [f"S{i:03d}" for i in range(n)]


@pytest.mark.parametrize("n_folds", [3, 5])
def test_splits_are_patient_disjoint_stratified_and_cover_everyone(n_folds: int) -> None:
    labels, ids = _cohort()
    splits = make_splits(labels, ids, n_folds=n_folds, val_fraction=0.2, seed=1)
    check_splits(splits, labels, ids)
    assert len(splits) == n_folds
    tested = np.concatenate([s.test for s in splits])
    assert sorted(tested) == list(range(len(ids)))
    for s in splits:
        assert not set(s.val) & set(s.test) and not set(s.train) & set(s.test) and not set(s.train) & set(s.val)
        for part in (s.test, s.val):
            assert abs(labels[part].mean() - labels.mean()) <= max(0.1, 1 / len(part))


def test_splits_are_seeded() -> None:
    labels, ids = _cohort()
    a = make_splits(labels, ids, n_folds=5, seed=3)
    b = make_splits(labels, ids, n_folds=5, seed=3)
    c = make_splits(labels, ids, n_folds=5, seed=4)
    assert all(np.array_equal(x.test, y.test) and np.array_equal(x.val, y.val) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x.test, y.test) for x, y in zip(a, c, strict=True))


def test_repeated_subject_rows_stay_in_one_fold() -> None:
    """Two scans of one patient must never be split between training and test."""
    labels, ids = _cohort(40)
    ids = [f"P{i // 2:03d}" for i in range(40)]
    labels = np.repeat(labels[:20], 2)
    splits = make_splits(labels, ids, n_folds=4, val_fraction=0.25, seed=0)
    check_splits(splits, labels, ids, tolerance=0.2)


def test_check_splits_catches_leakage_and_missing_cases() -> None:
    labels, ids = _cohort(30)
    good = make_splits(labels, ids, n_folds=3, seed=0)
    s0 = good[0]
    leaky = [FoldSplit(0, np.append(s0.train, s0.test[0]), s0.val, s0.test), *good[1:]]
    with pytest.raises(ConfigError, match="patients in both train and test"):
        check_splits(leaky, labels, ids)
    short = [FoldSplit(0, s0.train, s0.val, s0.test[1:]), *good[1:]]
    with pytest.raises(ConfigError, match="cover every case"):
        check_splits(short, labels, ids)


def test_check_splits_catches_bad_stratification() -> None:
    labels = np.array([0] * 10 + [1] * 10)
    ids = [f"S{i}" for i in range(20)]
    order = np.arange(20)
    splits = [FoldSplit(0, order[10:16], order[16:], order[:10]), FoldSplit(1, order[:6], order[6:10], order[10:])]
    with pytest.raises(ConfigError, match="class fractions"):
        check_splits(splits, labels, ids)


def test_too_few_cases_of_a_class_is_a_clear_error() -> None:
    labels = np.array([0] * 20 + [1] * 3)
    with pytest.raises(ConfigError, match="class 1 has 3 case"):
        make_splits(labels, [f"S{i}" for i in range(23)], n_folds=5)
