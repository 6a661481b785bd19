"""``preprocess_case`` end to end on phantoms: outputs, skull stripping, errors, seg and QC."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import InputError, PreprocessError
from gliomagrade.preprocess import preprocess_case, to_reference_space
from gliomagrade.preprocess.phantom import pose_error

from .conftest import phantom


@pytest.fixture(scope="module")
def result(request):  # noqa: ANN001, ANN201
    from gliomagrade.config import PreprocessConfig

    from .conftest import TINY

    case = phantom((10.0, 6.0, -8.0), (8.0, 5.0, -6.0), skull=True, orientation="PIR", misregistered=True)
    return case, preprocess_case(case.images, PreprocessConfig(**TINY), subject="P1", seg=case.seg,
                                 brain_mask=case.brain_mask)


def test_output_dtype_shape_and_channel_order(result) -> None:  # noqa: ANN001
    case, out = result
    assert out.image.dtype == np.float16 and out.image.shape == (4, 24, 24, 24)
    assert out.mask.dtype == np.uint8 and out.mask.shape == (24, 24, 24)
    assert out.seg is not None and out.seg.dtype == np.uint8
    brain = out.mask > 0
    assert np.all(out.image[:, ~brain] == 0)
    for channel in out.image:
        assert abs(float(channel[brain].astype(np.float32).mean())) < 1e-2
    # Channel order is SEQUENCES: the phantom's tumour core (label 1) is bright on t2, dark on t1.
    core = out.seg == 1
    assert core.sum() > 0
    t1, t2 = (out.image[SEQUENCES.index(s)][core].astype(np.float32).mean() for s in ("t1", "t2"))
    assert t2 > 1.0 > t1


def test_skull_is_stripped_and_pose_recovered(result) -> None:  # noqa: ANN001
    case, out = result
    assert out.qc["brain_dice"] >= 0.93, out.qc["brain_dice"]  # 24^3 grid of ~7 mm voxels
    distance, angle = pose_error(out.geometry.template_to_reference(), case.pose)
    assert distance < 2.5 and angle < 2.0
    assert set(np.unique(out.seg)) <= {0, 1, 2, 4} and {1, 2, 4} <= set(np.unique(out.seg))
    assert not out.qc["registration_suspect"], out.qc["qc_reasons"]
    assert 1000 < out.qc["brain_volume_ml"] < 2400
    assert all(f"time_{s}_s" in out.qc for s in ("coregister", "template", "resample", "normalise"))
    assert {"t1ce_mean", "t1ce_std", "t1ce_p1", "t1ce_p99"} <= set(out.qc)


def test_mask_maps_back_onto_the_input_brain(result) -> None:  # noqa: ANN001
    case, out = result
    back = to_reference_space(out.mask, out.geometry, interpolator="nearest")
    truth = sitk.GetArrayFromImage(case.brain_mask) > 0
    mapped = sitk.GetArrayFromImage(back) > 0
    assert 2 * (truth & mapped).sum() / (truth.sum() + mapped.sum()) > 0.9


def test_missing_sequence_is_an_input_error(tiny_cfg) -> None:  # noqa: ANN001
    images = dict(phantom().images)
    del images["flair"]
    with pytest.raises(InputError, match=r"missing sequences \['flair'\]"):
        preprocess_case(images, tiny_cfg, subject="P2")


def test_field_of_view_mismatch_names_the_sequence(tiny_cfg) -> None:  # noqa: ANN001
    images = dict(phantom().images)
    images["t2"] = images["t2"][:20, :, :]
    with pytest.raises(InputError, match="fields of view.*t2"):
        preprocess_case(images, tiny_cfg, subject="P3")


def test_constant_sequence_fails_with_its_name(tiny_cfg) -> None:  # noqa: ANN001
    images = dict(phantom().images)
    flat = sitk.Image(images["t2"].GetSize(), sitk.sitkFloat32) + 7.0
    flat.CopyInformation(images["t2"])
    images["t2"] = flat
    with pytest.raises(PreprocessError, match="'t2' is constant"):
        preprocess_case(images, tiny_cfg.model_copy(update={"coregister": False}), subject="P4")


def test_skull_stripped_inputs_use_their_foreground_with_n4(tiny_cfg) -> None:  # noqa: ANN001
    case = phantom(skull=False)
    cfg = tiny_cfg.model_copy(update={"skull_strip": False, "n4": True, "n4_shrink": 2, "n4_iterations": (20, 20)})
    out = preprocess_case(case.images, cfg, brain_mask=case.brain_mask)
    assert out.qc["brain_dice"] > 0.93
    assert out.qc["time_n4_s"] > 0 and np.isfinite(out.image.astype(np.float32)).all()


def test_mode_mad_normalisation_is_the_same_case_on_another_scale(tiny_cfg) -> None:  # noqa: ANN001
    """``normalise: mode_mad`` changes only each channel's location and scale (same mask, an affine map of
    the z-scored values) and puts the dominant tissue peak at 0."""
    from gliomagrade.preprocess.intensity import histogram_mode

    case = phantom(skull=False)
    cfg = tiny_cfg.model_copy(update={"skull_strip": False, "coregister": False})
    z = preprocess_case(case.images, cfg, brain_mask=case.brain_mask)
    robust = preprocess_case(case.images, cfg.model_copy(update={"normalise": "mode_mad"}), brain_mask=case.brain_mask)
    assert np.array_equal(z.mask, robust.mask)
    brain = z.mask > 0
    for i, seq in enumerate(SEQUENCES):
        a, b = (c[i][brain].astype(np.float64) for c in (z.image, robust.image))
        slope, intercept = np.polyfit(a, b, 1)
        assert slope > 0 and np.abs(b - (slope * a + intercept)).max() < 0.02, seq
        assert abs(histogram_mode(b)) < 0.1, seq
