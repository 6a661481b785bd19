"""Intensity steps: N4 bias-field estimation (coarse, applied on any grid) and z-scoring inside the brain."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from gliomagrade.errors import PreprocessError
from gliomagrade.preprocess.registration import head_mask

MIN_BRAIN_STD = 1e-6
"""Relative std (std / max(|mean|, 1)) below which a sequence is treated as constant in the brain."""


def n4_log_bias(image: sitk.Image, *, shrink: int, iterations: Sequence[int]) -> sitk.Image:
    """Estimate the log bias field with N4 on a shrunk copy (smooth field: coarse is enough).

    The field is returned on the shrunk grid; apply it anywhere with ``apply_log_bias`` after
    resampling it the same way as the image.
    """
    spacing = np.asarray(image.GetSpacing())
    factors = [max(1, round(shrink * spacing.min() / s)) for s in spacing]
    small = sitk.Shrink(image, factors)
    mask = head_mask(small)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
    n4.Execute(sitk.Cast(small, sitk.sitkFloat32), mask)
    return n4.GetLogBiasFieldAsImage(small)


def apply_log_bias(values: np.ndarray, log_bias: np.ndarray) -> np.ndarray:
    """Divide intensities by the bias field exp(log_bias) (both already on the same grid)."""
    return values / np.exp(log_bias)


def brain_stats(values: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, std, 1st and 99th percentile of ``values`` inside ``mask`` (before normalisation)."""
    inside = values[mask > 0].astype(np.float64)
    p1, p99 = np.percentile(inside, [1, 99]) if inside.size else (np.nan, np.nan)
    return {"mean": float(inside.mean()) if inside.size else float("nan"),
            "std": float(inside.std()) if inside.size else float("nan"), "p1": float(p1), "p99": float(p99)}


def zscore_in_mask(values: np.ndarray, mask: np.ndarray, *, sequence: str, subject: str = "case") -> np.ndarray:
    """(x - mean) / std over the brain, 0 outside; a constant sequence in the brain is an error, not /1."""
    inside = mask > 0
    if not inside.any():
        raise PreprocessError("the brain mask is empty", subject=subject, stage="normalise")
    brain = values[inside].astype(np.float64)
    mean, std = float(brain.mean()), float(brain.std())
    if not np.isfinite(std) or std <= MIN_BRAIN_STD * max(abs(mean), 1.0):
        raise PreprocessError(
            f"sequence {sequence!r} is constant inside the brain (mean {mean:.4g}, std {std:.3g}); "
            "expected contrast between tissues", subject=subject, stage="normalise")
    out = np.zeros(values.shape, dtype=np.float32)
    out[inside] = ((brain - mean) / std).astype(np.float32)
    return out
