"""Normalisation inside the brain (z-score, mode + MAD), its refusal of constant sequences, and the QC statistics."""

from __future__ import annotations

import numpy as np
import pytest

from gliomagrade.errors import PreprocessError
from gliomagrade.preprocess.intensity import brain_stats, histogram_mode, normalise_in_mask


def test_zscore_uses_only_the_mask_and_zeroes_outside() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(100.0, 15.0, (10, 12, 14)).astype(np.float32)
    mask = np.zeros(values.shape, np.uint8)
    mask[2:8, 3:9, 4:10] = 1
    values[mask == 0] = 5000.0  # outside values must not influence the statistics
    out = normalise_in_mask(values, mask, sequence="t1")
    assert out.dtype == np.float32
    assert abs(out[mask > 0].mean()) < 1e-5
    assert out[mask > 0].std() == pytest.approx(1.0, abs=1e-4)
    assert np.all(out[mask == 0] == 0)


def test_constant_sequence_in_the_brain_is_an_error_naming_it() -> None:
    values = np.full((6, 6, 6), 42.0, np.float32)
    values[0] = 0.0  # contrast outside the brain does not count
    mask = np.zeros(values.shape, np.uint8)
    mask[2:5, 2:5, 2:5] = 1
    with pytest.raises(PreprocessError, match="'flair' is constant") as info:
        normalise_in_mask(values, mask, sequence="flair", subject="S1")
    assert info.value.subject == "S1" and info.value.stage == "normalise"


def test_mode_mad_ignores_a_bright_lesion_that_shifts_the_zscore() -> None:
    """A FLAIR-bright lesion on 12 % of the brain moves z-scored normal tissue by ~0.4 and shrinks its sd
    below 0.3; mode + MAD keeps it at ~0 +- 1 (the grade leak of docs/training.md)."""
    rng = np.random.default_rng(1)
    values = rng.normal(100.0, 10.0, (20, 20, 20)).astype(np.float32)
    lesion = np.zeros(values.shape, bool)
    lesion[:5, :, :12] = True  # 12 % of the voxels, 3x brighter
    values[lesion] = rng.normal(300.0, 20.0, lesion.sum())
    mask = np.ones(values.shape, np.uint8)
    z = normalise_in_mask(values, mask, sequence="flair")
    robust = normalise_in_mask(values, mask, sequence="flair", method="mode_mad")
    assert z[~lesion].mean() < -0.35 and z[~lesion].std() < 0.3
    assert abs(robust[~lesion].mean()) < 0.1 and 0.75 < robust[~lesion].std() < 1.05
    assert histogram_mode(values[~lesion]) == pytest.approx(100.0, abs=2.0)


def test_mode_mad_keeps_a_scale_when_most_voxels_share_one_value() -> None:
    values = np.zeros((10, 10, 10), np.float32)
    values[:3] = 50.0  # 70 % at the mode: MAD = 0, the RMS deviation is the scale
    out = normalise_in_mask(values, np.ones(values.shape, np.uint8), sequence="t2", method="mode_mad")
    assert np.isfinite(out).all() and out.max() == pytest.approx(50.0 / np.sqrt(0.3 * 50.0**2), rel=1e-4)


def test_unknown_normalisation_is_an_error_naming_it() -> None:
    with pytest.raises(PreprocessError, match="unknown normalisation 'nyul'; valid: zscore, mode_mad"):
        normalise_in_mask(np.ones((3, 3, 3)), np.ones((3, 3, 3)), sequence="t1", method="nyul")


def test_empty_mask_is_an_error() -> None:
    with pytest.raises(PreprocessError, match="empty"):
        normalise_in_mask(np.ones((3, 3, 3), np.float32), np.zeros((3, 3, 3), np.uint8), sequence="t1")


def test_brain_stats_are_computed_inside_the_mask() -> None:
    values = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    mask = values < 100
    stats = brain_stats(values, mask)
    assert stats["mean"] == pytest.approx(49.5)
    assert stats["p1"] == pytest.approx(0.99)
    assert stats["p99"] == pytest.approx(98.01)


def test_n4_removes_a_smooth_bias_field() -> None:
    import SimpleITK as sitk

    from gliomagrade.preprocess.intensity import apply_log_bias, n4_log_bias

    from .conftest import phantom

    image = phantom().images["t1"]
    values = sitk.GetArrayFromImage(image)
    zz = np.linspace(-1, 1, values.shape[0])[:, None, None]
    biased = sitk.GetImageFromArray((values * np.exp(0.4 * zz)).astype(np.float32))
    biased.CopyInformation(image)
    log_bias = n4_log_bias(biased, shrink=2, iterations=(50, 50, 50))
    on_image = sitk.GetArrayFromImage(sitk.Resample(log_bias, biased, sitk.Transform(), sitk.sitkLinear))
    corrected = apply_log_bias(sitk.GetArrayFromImage(biased), on_image)
    wm = sitk.GetArrayFromImage(phantom().brain_mask) > 0
    wm &= values > np.percentile(values[wm], 75)  # bright tissue: its spread is mostly the bias

    def spread(a: np.ndarray) -> float:
        return float(a[wm].std() / a[wm].mean())

    original, before = spread(values), spread(sitk.GetArrayFromImage(biased))
    assert before > original + 0.02  # the field is real...
    assert spread(corrected) - original < 0.5 * (before - original)  # ...and mostly removed
