"""What bounds CAM localisation on a preprocessed cohort with segmentations (docs/training.md).

1. The grid: an oracle map whose every feature cell holds its tumour fraction, upsampled as served
   (``explain.upsample_cam``), scored like a model's CAM: the best CAM mass inside tumour + oedema a
   map on a 1/f grid can reach.
2. A global shortcut: how well the mean normalised intensity of brain far (>= ``--margin`` voxels)
   from the tumour separates HGG from LGG, per sequence (AUC, 0.5 = no leak; shown as max(AUC, 1-AUC)).

    python bench/cam_limits.py COHORT_DIR [--factors 8,4,2] [--margin 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from gliomagrade.cam_eval import case_arrays
from gliomagrade.constants import SEQUENCES
from gliomagrade.explain import cam_mass_inside, tumour_mask, upsample_cam


def oracle_mass(seg: np.ndarray, brain: np.ndarray, factor: int) -> float:
    """CAM mass inside the tumour of the ideal map on a grid ``factor`` times coarser than ``seg``."""
    tumour = tumour_mask(seg)
    cells = F.avg_pool3d(torch.from_numpy(tumour.astype(np.float32))[None, None], factor)[0, 0].numpy()
    return cam_mass_inside(upsample_cam(cells, seg.shape) * brain, tumour)


def distant_means(image: np.ndarray, seg: np.ndarray, brain: np.ndarray, margin: int) -> list[float]:
    """Mean of each sequence over brain voxels at least ``margin`` voxels from the tumour."""
    far = brain & ~ndimage.binary_dilation(tumour_mask(seg), iterations=margin)
    return [float(image[i][far].mean()) for i in range(image.shape[0])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cohort", type=Path)
    ap.add_argument("--factors", default="8,4,2")
    ap.add_argument("--margin", type=int, default=3)
    args = ap.parse_args()
    factors = [int(f) for f in args.factors.split(",")]
    table = pd.read_csv(args.cohort / "cohort.csv").dropna(subset=["npz"])
    masses, means, grades = [], [], []
    for row in table.itertuples():
        image, brain, seg = case_arrays(args.cohort, row.npz)
        if seg is None or not tumour_mask(seg).any():
            continue
        masses.append([oracle_mass(seg, brain, f) for f in factors])
        means.append(distant_means(image.astype(np.float32), seg, brain, args.margin))
        grades.append(row.grade)
    y = np.asarray(grades) == "HGG"
    if len(set(y)) < 2:
        raise SystemExit(f"{args.cohort}: needs cases of both grades with a tumour segmentation; "
                         f"found {len(y)} ({int(y.sum())} HGG) of {len(table)}")
    m = np.asarray(masses)
    print(f"{len(y)} of {len(table)} cases have a tumour segmentation ({int(y.sum())} HGG)")
    for j, f in enumerate(factors):
        print(f"oracle CAM mass inside tumour+oedema, grid 1/{f}: all {np.nanmean(m[:, j]):.2f}, "
              f"HGG {np.nanmean(m[y, j]):.2f}")
    aucs = [roc_auc_score(y, np.asarray(means)[:, i]) for i in range(len(SEQUENCES))]
    print(f"grade AUC of the mean intensity >= {args.margin} voxels from the tumour: "
          + ", ".join(f"{s} {max(a, 1 - a):.2f}" for s, a in zip(SEQUENCES, aucs, strict=True)))


if __name__ == "__main__":
    main()
