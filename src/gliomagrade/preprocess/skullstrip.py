"""Brain masks on the output grid: the template brain (prior) refined with the subject's intensities.

The grid lives in template space, so after the affine registration the template brain mask *is* the
prior for the subject's brain. Near its border (a band of ``skull_strip_band_mm``) voxels that are
dark in every sequence (air, cortical bone, background) are removed; voxels are never added, so a
skull or scalp outside the template brain cannot leak in. Inputs that are already skull-stripped
(``skull_strip: false``, BraTS) use their own non-zero region.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from gliomagrade.preprocess.geometry import Grid, resample
from gliomagrade.preprocess.template import load_template


@lru_cache(maxsize=8)
def template_brain_on_grid(grid: Grid) -> np.ndarray:
    """The template brain mask sampled on the output grid (partial volume > 0.5), cached per grid."""
    brain = sitk.Cast(load_template(1.0).brain, sitk.sitkFloat32)
    sampled = resample(brain, grid, sitk.Transform(), "linear")
    mask = sitk.GetArrayFromImage(sampled) > 0.5
    mask.setflags(write=False)
    return mask


def _ball(radius_mm: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """An ellipsoidal structuring element of a physical radius on an anisotropic grid."""
    half = [max(1, int(np.ceil(radius_mm / s))) for s in spacing_zyx]
    zz, yy, xx = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return (zz * spacing_zyx[0]) ** 2 + (yy * spacing_zyx[1]) ** 2 + (xx * spacing_zyx[2]) ** 2 <= radius_mm**2


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 6-connected component (drops islands left by the refinement)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def refine_brain(prior: np.ndarray, channels: Sequence[np.ndarray], spacing_zyx: Sequence[float],
                 band_mm: float, dark_fraction: float = 0.25) -> np.ndarray:
    """Remove from the prior's border band the voxels dark in every channel (relative to the brain core)."""
    core = ndimage.binary_erosion(prior, structure=_ball(band_mm, spacing_zyx))
    if core.sum() < 0.1 * prior.sum():  # a coarse grid: the band would swallow the brain
        core = ndimage.binary_erosion(prior, iterations=1)
    dark = np.ones(prior.shape, dtype=bool)
    for values in channels:
        reference = np.percentile(values[core], 50) if core.any() else np.percentile(values[prior], 50)
        dark &= values < dark_fraction * reference
    refined = prior & (core | ~dark)
    refined = ndimage.binary_opening(refined, iterations=1) | core
    return ndimage.binary_fill_holes(largest_component(refined))


def foreground_mask(channels: Sequence[np.ndarray]) -> np.ndarray:
    """Brain of already skull-stripped inputs: non-zero in any channel, largest component, holes filled."""
    nonzero = np.zeros(channels[0].shape, dtype=bool)
    for values in channels:
        nonzero |= np.abs(values) > 1e-6 * max(float(np.abs(values).max()), 1e-12)
    return ndimage.binary_fill_holes(largest_component(nonzero))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks (1.0 when both are empty)."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
