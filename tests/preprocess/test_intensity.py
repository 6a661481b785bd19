"""Z-scoring inside the brain, its refusal of constant sequences, and the QC statistics."""

from __future__ import annotations

import numpy as np
import pytest

from gliomagrade.errors import PreprocessError
from gliomagrade.preprocess.intensity import brain_stats, zscore_in_mask


def test_zscore_uses_only_the_mask_and_zeroes_outside() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(100.0, 15.0, (10, 12, 14)).astype(np.float32)
    mask = np.zeros(values.shape, np.uint8)
    mask[2:8, 3:9, 4:10] = 1
    values[mask == 0] = 5000.0  # outside values must not influence the statistics
    out = zscore_in_mask(values, mask, sequence="t1")
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
        zscore_in_mask(values, mask, sequence="flair", subject="S1")
    assert info.value.subject == "S1" and info.value.stage == "normalise"


def test_empty_mask_is_an_error() -> None:
    with pytest.raises(PreprocessError, match="empty"):
        zscore_in_mask(np.ones((3, 3, 3), np.float32), np.zeros((3, 3, 3), np.uint8), sequence="t1")


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
