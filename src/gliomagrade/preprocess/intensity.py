"""Intensity steps: N4 bias-field estimation (coarse, applied on any grid) and normalisation inside the brain.

Normalisations (``PreprocessConfig.normalise``): ``zscore`` (brain mean / std) or ``mode_mad`` (the
histogram mode, i.e. the dominant normal-tissue peak, and 1.4826 x the median absolute deviation from
it). A large T2/FLAIR-bright lesion drags the brain's mean and std, so after a z-score the *normal*
tissue far from the tumour already tells the grade (measured: AUC up to 0.84 on FLAIR, docs/training.md);
the mode and the MAD barely move with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from gliomagrade.errors import PreprocessError
from gliomagrade.preprocess.registration import head_mask

MIN_BRAIN_STD = 1e-6
"""Relative std (std / max(|mean|, 1)) below which a sequence is treated as constant in the brain."""
NORMALISATIONS = ("zscore", "mode_mad")
MAD_TO_SD = 1.4826
"""MAD of a normal distribution times this is its standard deviation (keeps z-score-like units)."""
MODE_BINS = 256
MODE_SMOOTH_BINS = 3.0


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


def histogram_mode(values: np.ndarray) -> float:
    """The peak of the smoothed histogram of ``values`` between their 1st and 99th percentiles (the median
    of the values in the peak bin, so a value shared by many voxels is found exactly)."""
    from scipy.ndimage import gaussian_filter1d

    lo, hi = np.percentile(values, [1, 99])
    if not hi > lo:
        return float(lo)
    counts, edges = np.histogram(values, bins=MODE_BINS, range=(float(lo), float(hi)))
    peak = int(np.argmax(gaussian_filter1d(counts.astype(np.float64), MODE_SMOOTH_BINS)))
    in_bin = values[(values >= edges[peak]) & (values <= edges[peak + 1])]
    return float(np.median(in_bin)) if in_bin.size else float(0.5 * (edges[peak] + edges[peak + 1]))


def location_scale(brain: np.ndarray, method: str) -> tuple[float, float]:
    """(location, scale) of the brain's intensities for normalisation ``method`` (see module docstring)."""
    if method == "zscore":
        return float(brain.mean()), float(brain.std())
    if method == "mode_mad":
        mode = histogram_mode(brain)
        deviation = np.abs(brain - mode)
        mad = float(np.median(deviation))  # 0 when over half the brain sits at the mode: fall back to RMS
        return mode, MAD_TO_SD * mad if mad > 0 else float(np.sqrt(np.mean(deviation**2)))
    raise PreprocessError(f"unknown normalisation {method!r}; valid: {', '.join(NORMALISATIONS)}")


def normalise_in_mask(values: np.ndarray, mask: np.ndarray, *, sequence: str, subject: str = "case",
                      method: str = "zscore") -> np.ndarray:
    """(x - location) / scale over the brain, 0 outside; a constant sequence in the brain is an error, not /1."""
    inside = mask > 0
    if not inside.any():
        raise PreprocessError("the brain mask is empty", subject=subject, stage="normalise")
    brain = values[inside].astype(np.float64)
    loc, scale = location_scale(brain, method)
    if not np.isfinite(scale) or scale <= MIN_BRAIN_STD * max(abs(loc), 1.0):
        raise PreprocessError(
            f"sequence {sequence!r} is constant inside the brain (location {loc:.4g}, scale {scale:.3g}, "
            f"{method}); expected contrast between tissues", subject=subject, stage="normalise")
    out = np.zeros(values.shape, dtype=np.float32)
    out[inside] = ((brain - loc) / scale).astype(np.float32)
    return out
