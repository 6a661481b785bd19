"""Quality control pictures and truth comparisons: per-case thumbnails, a cohort montage, pose errors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliomagrade.constants import REFERENCE_SEQUENCE, SEQUENCES
from gliomagrade.preprocess.case import PreprocessedCase
from gliomagrade.preprocess.geometry import Geometry
from gliomagrade.preprocess.phantom import pose_error


def _matrix_transform(matrix: Sequence[Sequence[float]]) -> sitk.AffineTransform:
    """A 4x4 homogeneous matrix (LPS mm) as an sitk affine."""
    m = np.asarray(matrix, dtype=float)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(m[:3, :3].ravel().tolist())
    affine.SetTranslation(m[:3, 3].tolist())
    return affine


def truth_errors(geometry: Geometry, truth: Mapping[str, Any]) -> dict[str, float]:
    """Pose error of template->t1ce and co-registration errors against a synthetic case's ground truth.

    ``truth["sequences"][seq]["template_to_image"]`` (4x4, LPS mm) is the true template->image map
    written by ``gliomagrade.synth``; the true t1ce->seq map is ``M_seq @ inv(M_t1ce)``.
    """
    sequences = truth.get("sequences", {})
    if REFERENCE_SEQUENCE not in sequences:
        return {}
    matrices = {s: np.asarray(v["template_to_image"], dtype=float) for s, v in sequences.items()}
    distance, angle = pose_error(geometry.template_to_reference(), _matrix_transform(matrices[REFERENCE_SEQUENCE]))
    out = {"pose_error_mm": distance, "pose_error_deg": angle}
    ref_inverse = np.linalg.inv(matrices[REFERENCE_SEQUENCE])
    template_to_ref = geometry.template_to_reference()
    for seq in SEQUENCES:
        if seq == REFERENCE_SEQUENCE or seq not in matrices:
            continue
        true_coreg = _matrix_transform(matrices[seq] @ ref_inverse)
        estimated = geometry.coregistration_transform(seq)
        # Compare on the brain: template brain points mapped into t1ce space by the estimated pose.
        from gliomagrade.preprocess.geometry import compose

        err, _ = pose_error(compose(template_to_ref, estimated), compose(template_to_ref, true_coreg))
        out[f"coreg_error_mm_{seq}"] = err
    return out


def _slices(volume: np.ndarray, centre: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Axial and coronal planes through ``centre``: anterior/superior up, patient's left on the left.

    Grid arrays are (z, y, x) in RAS voxel order: y grows anteriorly, z superiorly, x to the right.
    """
    axial = volume[centre[0]][::-1]
    coronal = volume[:, centre[1], :][::-1]
    return axial, coronal


def case_thumbnail(case: PreprocessedCase, path: Path, title: str = "") -> Path:
    """Four sequences (axial and coronal through the brain centre) with the brain-mask contour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centre = [int(round(c)) for c in np.argwhere(case.mask > 0).mean(axis=0)] if case.mask.any() else \
        [n // 2 for n in case.mask.shape]
    fig, axes = plt.subplots(2, len(SEQUENCES), figsize=(2.0 * len(SEQUENCES), 4.2), dpi=60)
    mask_planes = _slices(case.mask, centre)
    seg_planes = _slices(case.seg, centre) if case.seg is not None else (None, None)
    for col, seq in enumerate(SEQUENCES):
        for row, plane in enumerate(_slices(case.image[col].astype(np.float32), centre)):
            ax = axes[row, col]
            ax.imshow(plane, cmap="gray", vmin=-2.5, vmax=2.5, origin="upper")
            ax.contour(mask_planes[row], levels=[0.5], colors="red", linewidths=0.8)
            if seg_planes[row] is not None and seg_planes[row].any():
                ax.contour(seg_planes[row] > 0, levels=[0.5], colors="yellow", linewidths=0.6)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(seq, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def montage(pngs: Sequence[Path], path: Path, *, columns: int = 6, max_tiles: int = 120) -> Path | None:
    """Tile per-case thumbnails into one picture (the first ``max_tiles``); None when there are none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    pngs = [p for p in pngs if p.is_file()][:max_tiles]
    if not pngs:
        return None
    columns = min(columns, len(pngs))
    rows = math.ceil(len(pngs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 1.7 * rows), dpi=80, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, png in zip(axes.ravel(), pngs, strict=False):
        ax.imshow(mpimg.imread(png))
    fig.tight_layout(pad=0.1)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
