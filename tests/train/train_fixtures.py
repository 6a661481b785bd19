"""Helpers of the training tests: tiny preprocessed cohorts on disk (the preprocessing stage's format,
with a planted grade signal) and a tiny training profile."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gliomagrade.config import Profile, load_profile
from gliomagrade.constants import SEQUENCES, binary_grade

GRID = (12, 12, 12)


def write_cohort(root: Path, n: int = 24, *, grid: tuple[int, int, int] = GRID, seed: int = 0,
                 hgg_fraction: float = 0.5, signal: float = 2.0, with_seg: bool = True) -> Path:
    """Write ``cohort.csv`` + ``cases/<id>.npz``: a brain ellipsoid (z-scored, 0 outside) with a
    'tumour' blob (oedema on flair in every case) whose t1ce is enhanced by ``signal`` in WHO IV (HGG)
    and by 0.3 in WHO III; WHO grades of LGG cases alternate II/III. The segmentation labels the blob
    enhancing (4) in HGG and oedema (2) otherwise."""
    rng = np.random.default_rng(seed)
    (root / "cases").mkdir(parents=True, exist_ok=True)
    d, h, w = grid
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, s) for s in grid), indexing="ij")
    brain = (zz**2 + yy**2 + xx**2) < 0.8
    n_hgg = int(round(n * hgg_fraction))
    who = np.array([4] * n_hgg + [2, 3] * ((n - n_hgg) // 2) + [2] * ((n - n_hgg) % 2))
    rng.shuffle(who)
    rows = []
    for i, g in enumerate(who):
        sid = f"SYN{i:03d}"
        image = rng.normal(0, 1, (len(SEQUENCES), *grid)).astype(np.float32) * 0.5
        c = rng.uniform(-0.35, 0.35, 3)
        blob = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < 0.12
        image[SEQUENCES.index("flair"), blob] += 1.5  # oedema in every tumour
        image[SEQUENCES.index("t1ce"), blob] += signal * (g == 4) + 0.3 * (g == 3)
        image[:, ~brain] = 0
        seg = np.where(blob & brain, 4 if g == 4 else 2, 0).astype(np.uint8)  # BraTS: enhancing / oedema
        arrays = {"image": image.astype(np.float16), "mask": brain.astype(np.uint8)}
        if with_seg:
            arrays["seg"] = seg
        np.savez_compressed(root / "cases" / f"{sid}.npz", **arrays)
        rows.append({"subject_id": sid, "grade": binary_grade(int(g)), "who_grade": int(g),
                     "npz": f"cases/{sid}.npz", "qc_ok": True})
    with (root / "cohort.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def tiny_profile(*, plain: bool = False, **train: object) -> Profile:
    """The quick profile shrunk for tests: 3 folds, a 3-stage smallcnn, few epochs, CPU, one thread;
    lesion-gated with a tissue path as the quick profile is, or without the gate (``plain``)."""
    base = {"folds": 3, "epochs": 3, "min_epochs": 1, "patience": 10, "batch_size": 4, "lr": 1e-2, "device": "cpu",
            "val_fraction": 0.25, "num_threads": 1, "n_boot": 200, "data_on_device": True,
            "model_kwargs": {"channels": [8, 16, 32], "strides": [1, 2, 2]}}
    base.update(train)
    if plain:
        base.update(model_kwargs={**base["model_kwargs"], "lesion_gate": False}, lesion_loss=0.0)  # type: ignore[dict-item]
    return load_profile("quick").with_overrides(train=base)
