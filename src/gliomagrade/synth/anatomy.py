"""Healthy anatomy from the MNI152 2009a templates shipped in nilearn's wheel (never downloaded).

Grey- and white-matter probability maps give tissue fractions; CSF is the rest of the brain mask.
Everything lives on an axis-aligned LPS grid ("template space") around the brain, padded so that a
skull and scalp shell fits, at the working resolution of the cohort.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

PAD_MM = 20.0
"""Margin around the brain, room for extra-axial CSF, skull and scalp (at most ~17 mm)."""


def template_path(name: str) -> Path:
    """Path of one MNI152 2009a template inside the installed nilearn package (the same files that
    preprocessing registers to: one locator, ``preprocess.template``)."""
    from gliomagrade.preprocess.template import TEMPLATE_FILES, template_dir

    return template_dir() / TEMPLATE_FILES[name]


@dataclass(frozen=True)
class Anatomy:
    """Tissue fractions and masks on the template-space grid; arrays are (z, y, x)."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    """Binary brain mask (uint8)."""
    depth_mm: np.ndarray
    """Distance of each brain voxel to the brain surface (0 outside)."""
    outside_mm: np.ndarray
    """Distance of each voxel outside the brain to the brain surface (0 inside)."""
    reference: sitk.Image
    """Empty image carrying the grid geometry (origin, spacing, identity direction)."""

    @property
    def spacing(self) -> float:
        return float(self.reference.GetSpacing()[0])

    @property
    def brain_center(self) -> np.ndarray:
        """Physical (LPS, mm) centroid of the brain mask."""
        idx = np.array(ndimage.center_of_mass(self.brain))[::-1]  # x, y, z
        return np.asarray(self.reference.TransformContinuousIndexToPhysicalPoint(idx.tolist()))

    def to_image(self, array: np.ndarray, pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
        """Wrap a (z, y, x) array on this grid as a SimpleITK image."""
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(self.reference)
        return sitk.Cast(image, pixel_type)


def _brain_grid(brain_1mm: sitk.Image, resolution: float) -> sitk.Image:
    """Axis-aligned LPS grid at ``resolution`` covering the brain plus PAD_MM on every side."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(brain_1mm)
    x0, y0, z0, sx, sy, sz = stats.GetBoundingBox(1)
    corners = [
        brain_1mm.TransformIndexToPhysicalPoint((x, y, z))
        for x in (x0, x0 + sx - 1)
        for y in (y0, y0 + sy - 1)
        for z in (z0, z0 + sz - 1)
    ]
    low = np.min(corners, axis=0) - PAD_MM
    high = np.max(corners, axis=0) + PAD_MM
    size = np.ceil((high - low) / resolution).astype(int) + 1
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing([resolution] * 3)
    grid.SetOrigin(low.tolist())
    return grid


@functools.lru_cache(maxsize=2)
def load_anatomy(resolution: float = 1.0) -> Anatomy:
    """Tissue maps and masks on a padded template grid at ``resolution`` mm (cached per process)."""
    t1 = sitk.ReadImage(str(template_path("t1")), sitk.sitkFloat32)
    gm = sitk.ReadImage(str(template_path("gm")), sitk.sitkFloat32) / 255.0
    wm = sitk.ReadImage(str(template_path("wm")), sitk.sitkFloat32) / 255.0
    brain_1mm = sitk.Cast((t1 > 0) | ((gm + wm) > 0.3), sitk.sitkUInt8)
    brain_1mm = sitk.BinaryFillhole(sitk.BinaryMorphologicalClosing(brain_1mm, [2, 2, 2]))
    grid = _brain_grid(brain_1mm, resolution)

    def to_grid(image: sitk.Image) -> np.ndarray:
        if resolution > 1.0:  # anti-alias before down-sampling
            image = sitk.SmoothingRecursiveGaussian(image, 0.4 * resolution)
        out = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return np.clip(sitk.GetArrayFromImage(out), 0.0, 1.0)

    brain_frac = to_grid(sitk.Cast(brain_1mm, sitk.sitkFloat32))
    brain = (brain_frac >= 0.5).astype(np.uint8)
    gm_a, wm_a = to_grid(gm) * brain, to_grid(wm) * brain
    total = gm_a + wm_a
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0)
    gm_a, wm_a = gm_a * scale, wm_a * scale
    csf = np.clip(brain - gm_a - wm_a, 0.0, 1.0).astype(np.float32)
    spacing = (resolution,) * 3
    depth = ndimage.distance_transform_edt(brain, sampling=spacing).astype(np.float32)
    outside = ndimage.distance_transform_edt(1 - brain, sampling=spacing).astype(np.float32)
    arrays = [a.astype(np.float32) for a in (gm_a, wm_a)] + [csf, brain, depth, outside]
    for arr in arrays:
        arr.setflags(write=False)  # shared by every case of this process: never edit in place
    return Anatomy(*arrays, reference=grid)
