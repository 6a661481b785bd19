"""PNG montage of a synthetic cohort: a few HGG and LGG cases, four sequences, axial slice through the
tumour, with the segmentation contour. Reads ``ground_truth/cases.csv`` so it works for every layout.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import InputError
from gliomagrade.imageio import read_image

REGIONS = (  # BraTS evaluation regions, drawn nested: whole tumour, tumour core, enhancing tumour
    ("whole tumour", (1, 2, 4), "#ffd700"),
    ("core", (1, 4), "#ff4040"),
    ("enhancing", (4,), "#40c0ff"),
)


def _centroid(mask: sitk.Image, what: str) -> np.ndarray:
    """Physical centroid of the non-zero voxels of ``mask``."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    if not stats.HasLabel(1):
        raise InputError(f"{what} is empty; cannot place the montage slice")
    return np.asarray(stats.GetCentroid(1))


def _axial_plane(seg: sitk.Image, brain: sitk.Image, size_mm: float = 190.0, step: float = 1.0) -> sitk.Image:
    """A one-slice axial grid (scanner frame) centred on the brain, at the height of the tumour centroid."""
    centre = _centroid(brain, "brain mask")
    centre[2] = _centroid(seg, "segmentation")[2]
    n = int(size_mm / step)
    plane = sitk.Image([n, n, 1], sitk.sitkUInt8)
    plane.SetSpacing([step, step, step])
    plane.SetOrigin((centre - np.array([size_mm / 2, size_mm / 2, 0.0])).tolist())
    return plane


def _slice(image: sitk.Image, plane: sitk.Image, nearest: bool = False) -> np.ndarray:
    """Resample an image onto the one-slice plane; return the 2D array (rows = A-P)."""
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(image, plane, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)[0]


def read_cases(cohort_dir: Path) -> list[dict]:
    """Rows of ``ground_truth/cases.csv``."""
    table = Path(cohort_dir) / "ground_truth" / "cases.csv"
    if not table.is_file():
        raise InputError("not a synthetic cohort: ground_truth/cases.csv is missing", source=str(cohort_dir))
    with table.open() as fh:
        return list(csv.DictReader(fh))


def make_montage(cohort_dir: Path, out_png: Path, *, n_hgg: int = 3, n_lgg: int = 3) -> Path:
    """Render the montage PNG: one row per case (HGG first), one column per sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cohort_dir = Path(cohort_dir)
    rows = read_cases(cohort_dir)
    chosen = [r for r in rows if r["grade"] == "HGG"][:n_hgg] + [r for r in rows if r["grade"] == "LGG"][:n_lgg]
    if not chosen:
        raise InputError("cohort has no cases to show", source=str(cohort_dir))
    fig, axes = plt.subplots(len(chosen), 4, figsize=(4 * 2.4, len(chosen) * 2.5), squeeze=False)
    for i, row in enumerate(chosen):
        seg = sitk.ReadImage(str(cohort_dir / row["seg"]))
        plane = _axial_plane(seg, sitk.ReadImage(str(cohort_dir / row["brainmask"])))
        labels = _slice(seg, plane, nearest=True)
        for j, seq in enumerate(SEQUENCES):
            ax = axes[i, j]
            pixels = _slice(read_image(cohort_dir / row[seq], subject=row["subject_id"], sequence=seq), plane)
            top = float(np.percentile(pixels[pixels > 0], 99.5)) if (pixels > 0).any() else 1.0
            ax.imshow(pixels, cmap="gray", vmin=0, vmax=top)
            for _, values, colour in REGIONS:
                region = np.isin(labels, values)
                if region.any():
                    ax.contour(region, levels=[0.5], colors=colour, linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(seq)
            if j == 0:
                ax.set_ylabel(f"{row['subject_id']}\nWHO {row['who_grade']} ({row['grade']})", fontsize=8)
    fig.suptitle("synthetic cohort; contours: yellow whole tumour, red tumour core, blue enhancing", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
