"""The MNI152 2009a template (from nilearn's wheel): loaded once per process, with coarse copies.

The template defines the output space: every case is registered to it and sampled on a fixed box
around its brain, so training and serving tensors are aligned by construction.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import SimpleITK as sitk

from gliomagrade.errors import ConfigError

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclass(frozen=True)
class Template:
    """Template T1 (brain only), its brain mask and tissue maps, all on one grid."""

    t1: sitk.Image
    brain: sitk.Image
    gm: sitk.Image
    wm: sitk.Image

    @property
    def spacing(self) -> float:
        return float(self.t1.GetSpacing()[0])


def template_dir() -> Path:
    """Folder of nilearn's bundled MNI152 2009a files, found without importing nilearn."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("nilearn is not installed: it ships the MNI152 template used for registration")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"MNI152 template files missing under {folder}: {missing}")
    return folder


@lru_cache(maxsize=1)
def _template_1mm() -> Template:
    """Read the 1 mm template; the brain mask is the T1's non-zero region, hole-filled."""
    folder = template_dir()
    images = {k: sitk.Cast(sitk.ReadImage(str(folder / f)), sitk.sitkFloat32) for k, f in TEMPLATE_FILES.items()}
    brain = sitk.BinaryFillhole(images["t1"] > 0)
    return Template(t1=images["t1"], brain=sitk.Cast(brain, sitk.sitkUInt8), gm=images["gm"] / 255.0,
                    wm=images["wm"] / 255.0)


@lru_cache(maxsize=8)
def load_template(spacing_mm: float = 1.0) -> Template:
    """The template at an isotropic spacing (1 mm is the original); coarse copies are block averages."""
    base = _template_1mm()
    if abs(spacing_mm - base.spacing) < 1e-6:
        return base
    if spacing_mm < base.spacing:
        raise ConfigError(f"template spacing must be >= {base.spacing} mm, got {spacing_mm}")
    return Template(
        t1=coarse_copy(base.t1, spacing_mm),
        brain=sitk.Cast(coarse_copy(sitk.Cast(base.brain, sitk.sitkFloat32), spacing_mm) > 0.5, sitk.sitkUInt8),
        gm=coarse_copy(base.gm, spacing_mm),
        wm=coarse_copy(base.wm, spacing_mm),
    )


def isotropic(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Resample to isotropic spacing over the same physical extent, smoothing first when downsampling."""
    old_spacing = image.GetSpacing()
    size = [max(1, round(n * s / spacing_mm)) for n, s in zip(image.GetSize(), old_spacing, strict=True)]
    sigmas = [max(0.0, (spacing_mm**2 - s**2)) ** 0.5 / 2.355 for s in old_spacing]
    src = image
    if max(sigmas) > 0.1:  # a discrete kernel accepts a zero sigma on axes that are already coarse
        src = sitk.DiscreteGaussian(image, [s**2 for s in sigmas], 32, 0.01, True)
    # Keep the physical centre: the first voxel centre moves by half the spacing change.
    direction = image.GetDirection()
    first = image.TransformContinuousIndexToPhysicalPoint([-0.5 + 0.5 * spacing_mm / s for s in old_spacing])
    out = sitk.Resample(src, size, sitk.Transform(), sitk.sitkLinear, first, [spacing_mm] * 3, direction, 0.0,
                        sitk.sitkFloat32)
    return out


def coarse_copy(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """A fast isotropic copy for registration: block-average by whole factors (BinShrink), then resample."""
    factors = [max(1, int(spacing_mm // s + 1e-6)) for s in image.GetSpacing()]
    shrunk = sitk.BinShrink(image, factors) if max(factors) > 1 else image
    return isotropic(shrunk, spacing_mm)
