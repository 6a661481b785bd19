"""Patient-level stratified K-fold splits with an inner validation split, and a leakage check.

Each outer fold holds out a test set; the rest is split again (stratified, by patient) into a training
part and an inner validation part. Inner validation drives early stopping, temperature scaling and
the choice of the operating threshold, so the test fold is touched once, for prediction only.
Grouping is by subject id: if a cohort ever holds several rows per patient they stay together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from gliomagrade.errors import ConfigError, InputError


@dataclass(frozen=True)
class FoldSplit:
    """Indices (into the cohort) of one outer fold's training, inner-validation and test cases."""

    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def to_dict(self, subject_ids: Sequence[str]) -> dict[str, Any]:
        """Subject ids per part (JSON, for the run's audit trail)."""
        return {
            "fold": self.fold,
            **{part: [subject_ids[i] for i in getattr(self, part)] for part in ("train", "val", "test")},
        }


def _check_counts(labels: np.ndarray, n_folds: int, val_fraction: float) -> None:
    """Every class needs a case in each test fold and in each part of the inner split."""
    inner = max(2, round(1 / val_fraction))
    for k, c in enumerate(np.bincount(labels)):
        rest = int(c - np.ceil(c / n_folds))
        if c < n_folds or rest < inner:
            raise ConfigError(
                f"class {k} has {c} case(s): each of {n_folds} test folds needs one, and the inner split "
                f"({inner} parts for val_fraction {val_fraction:g}) needs one per part of the {rest} left"
            )


def make_splits(
    labels: np.ndarray,
    subject_ids: Sequence[str],
    *,
    n_folds: int = 5,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> list[FoldSplit]:
    """Stratified, patient-grouped outer folds, each with a stratified inner validation split."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(subject_ids):
        raise InputError(f"{len(labels)} labels but {len(subject_ids)} subject ids")
    _check_counts(labels, n_folds, val_fraction)
    groups = np.asarray(subject_ids)
    outer = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    inner_splits = max(2, round(1 / val_fraction))
    splits: list[FoldSplit] = []
    for fold, (rest, test) in enumerate(outer.split(np.zeros(len(labels)), labels, groups)):
        inner = StratifiedGroupKFold(n_splits=inner_splits, shuffle=True, random_state=seed + 1 + fold)
        tr, va = next(inner.split(np.zeros(len(rest)), labels[rest], groups[rest]))
        splits.append(FoldSplit(fold, np.sort(rest[tr]), np.sort(rest[va]), np.sort(test)))
    return splits


def check_splits(
    splits: Sequence[FoldSplit],
    labels: np.ndarray,
    subject_ids: Sequence[str],
    *,
    tolerance: float = 0.1,
) -> None:
    """Raise if any patient leaks between parts, a case is never tested, or a fold is badly stratified."""
    labels = np.asarray(labels)
    groups = np.asarray(subject_ids)
    n = len(labels)
    overall = np.bincount(labels, minlength=labels.max() + 1) / n
    tested = np.concatenate([s.test for s in splits])
    if sorted(tested.tolist()) != list(range(n)):
        raise ConfigError(f"test folds must cover every case exactly once ({len(tested)} tests for {n} cases)")
    for s in splits:
        parts = {"train": s.train, "val": s.val, "test": s.test}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = set(groups[parts[a]]) & set(groups[parts[b]])
            if shared:
                raise ConfigError(f"fold {s.fold}: patients in both {a} and {b}: {sorted(shared)[:5]}")
        if len(s.train) + len(s.val) + len(s.test) != n:
            raise ConfigError(f"fold {s.fold}: train+val+test = "
                              f"{len(s.train) + len(s.val) + len(s.test)} cases, expected {n}")
        for name in ("val", "test"):
            idx = parts[name]
            frac = np.bincount(labels[idx], minlength=len(overall)) / len(idx)
            worst = float(np.abs(frac - overall).max())
            if worst > max(tolerance, 1.0 / len(idx)):
                raise ConfigError(
                    f"fold {s.fold} {name}: class fractions {np.round(frac, 3).tolist()} differ from the "
                    f"cohort's {np.round(overall, 3).tolist()} by {worst:.3f} (> {tolerance})"
                )
            if (frac == 0).any():
                raise ConfigError(f"fold {s.fold} {name}: a class is missing (fractions {frac.tolist()})")


def write_splits(path: Path, splits: Sequence[FoldSplit], subject_ids: Sequence[str]) -> None:
    """Save the splits as subject ids per fold and part (``splits.json``)."""
    path.write_text(json.dumps([s.to_dict(subject_ids) for s in splits], indent=1))
