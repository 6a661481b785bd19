"""One synthetic case: determinism, labels, anatomy, contrasts and recorded pose against the written grids."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from gliomagrade.constants import SEQUENCES
from gliomagrade.synth import SyntheticCase, SynthParams, synthesize_case
from gliomagrade.synth.acquisition import affine_transform
from gliomagrade.synth.anatomy import load_anatomy
from gliomagrade.synth.tumour import sample_tumour

COARSE = 4.0  # mm, as in conftest.py


def _arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _to_template(image: sitk.Image, matrix: list[list[float]], nearest: bool = False) -> np.ndarray:
    """Resample a written image into template space with a recorded template_to_image matrix."""
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    ref = load_anatomy(COARSE).reference
    out = sitk.Resample(image, ref, affine_transform(np.asarray(matrix)), interp, 0.0, sitk.sitkFloat32)
    return _arr(out)


def test_same_seed_same_case_and_other_seed_differs(case: SyntheticCase, coarse_params: SynthParams) -> None:
    again = synthesize_case(0, 11, coarse_params)
    assert again.truth == case.truth
    for seq in SEQUENCES:
        assert np.array_equal(_arr(again.images[seq]), _arr(case.images[seq])), seq
    assert np.array_equal(_arr(again.seg), _arr(case.seg))
    other = synthesize_case(1, 11, coarse_params)
    assert other.truth["tumour"] != case.truth["tumour"]


def test_images_are_int16_on_their_recorded_grids(case: SyntheticCase) -> None:
    for seq, image in case.images.items():
        acq = case.truth["sequences"][seq]
        assert image.GetPixelID() == sitk.sitkInt16
        assert np.allclose(image.GetSpacing(), acq["spacing"]) and np.allclose(image.GetOrigin(), acq["origin"])
        assert np.allclose(image.GetDirection(), acq["direction"])
        assert list(image.GetSize()) == acq["size"]
        assert COARSE <= image.GetSpacing()[2] <= max(COARSE, 3.0)
    t1ce = case.images["t1ce"]
    for label_map in (case.seg, case.brain_mask):
        assert label_map.GetSize() == t1ce.GetSize() and np.allclose(label_map.GetOrigin(), t1ce.GetOrigin())


def test_seg_has_brats_labels_inside_the_brain(case: SyntheticCase) -> None:
    seg, brain = _arr(case.seg), _arr(case.brain_mask)
    assert set(np.unique(seg)) <= {0, 1, 2, 4}
    assert (seg > 0).sum() > 0
    assert np.all(brain[seg > 0] == 1)
    template = _arr(case.template_seg)
    assert np.all(load_anatomy(COARSE).brain[template > 0] == 1)


def test_recorded_pose_maps_template_tumour_onto_written_seg(case: SyntheticCase) -> None:
    matrix = case.truth["sequences"]["t1ce"]["template_to_image"]
    back = _to_template(case.seg, matrix, nearest=True) > 0
    truth = _arr(case.template_seg) > 0
    dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
    assert dice > 0.6
    # the tumour centre, moved by the recorded matrix, lies in the written tumour
    centre = np.asarray(matrix) @ np.append(case.truth["tumour"]["center_mm"], 1.0)
    index = case.seg.TransformPhysicalPointToIndex(centre[:3].tolist())
    assert case.seg[index] > 0
    # pose is not the identity: without it the tumour would not line up
    pose = np.asarray(case.truth["pose"]["template_to_scanner"])
    assert not np.allclose(pose, np.eye(4), atol=1e-3)


def test_misregistration_is_recorded_and_small(case: SyntheticCase) -> None:
    ref = np.asarray(case.truth["sequences"]["t1ce"]["template_to_image"])
    for seq in ("t1", "t2", "flair"):
        acq = case.truth["sequences"][seq]
        assert all(1.0 <= abs(a) <= 3.0 for a in acq["misregistration_deg"] + acq["misregistration_mm"])
        assert not np.allclose(np.asarray(acq["template_to_image"]), ref)


def _tissue_medians(case: SyntheticCase, seq: str) -> dict[str, float]:
    """Median written intensity of pure tissue voxels far from the tumour, found through the recorded pose."""
    anatomy = load_anatomy(COARSE)
    values = _to_template(case.images[seq], case.truth["sequences"][seq]["template_to_image"])
    from scipy import ndimage

    away = ~ndimage.binary_dilation(_arr(case.template_seg) > 0, iterations=3)
    masks = {"gm": anatomy.gm > 0.7, "wm": anatomy.wm > 0.9, "csf": anatomy.csf > 0.9}
    return {name: float(np.median(values[m & away & (anatomy.depth_mm > 4)])) for name, m in masks.items()}


@pytest.mark.parametrize("seq", SEQUENCES)
def test_sequence_contrasts_are_ordered(case: SyntheticCase, seq: str) -> None:
    m = _tissue_medians(case, seq)
    expected = {"t1": ("wm", "gm", "csf"), "t1ce": ("wm", "gm", "csf"), "t2": ("csf", "gm", "wm"),
                "flair": ("gm", "wm", "csf")}[seq]
    assert m[expected[0]] > m[expected[1]] > m[expected[2]], m


def test_enhancing_tumour_is_bright_on_t1ce_only() -> None:
    params = SynthParams(resolution=COARSE, hgg_fraction=1.0, difficulty=0.0, skull_prob=0.0)
    case = next(c for c in (synthesize_case(i, 5, params) for i in range(6)) if c.truth["tumour"]["enhancing"])
    template = _arr(case.template_seg)
    ratios = {}
    for seq in ("t1", "t1ce"):
        values = _to_template(case.images[seq], case.truth["sequences"][seq]["template_to_image"])
        wm = np.median(values[(load_anatomy(COARSE).wm > 0.9) & (template == 0)])
        ratios[seq] = np.median(values[template == 4]) / wm
    assert ratios["t1ce"] > 1.0 > ratios["t1"]


def test_t2_flair_mismatch_core_is_t2_bright_but_flair_dark_inside_a_bright_rim() -> None:
    """The mismatch sign needs both sequences: on T2 the core is brighter than its oedema, on FLAIR it
    is darker than the oedema rim; a core without the sign is about as FLAIR-bright as its oedema."""
    params = SynthParams(resolution=COARSE, hgg_fraction=0.0, grade3_share=0.0, difficulty=0.0, skull_prob=0.0)
    cases = [synthesize_case(i, 3, params) for i in range(8)]
    with_sign = [c for c in cases if c.truth["tumour"]["mismatch"] and not c.truth["tumour"]["haemorrhage"]]
    without = [c for c in cases if not c.truth["tumour"]["mismatch"] and not c.truth["tumour"]["haemorrhage"]]
    assert with_sign and without, "seed 3 should give WHO II cases with and without the sign"
    assert with_sign[0].truth["generator_revision"] == 2

    def core_over_oedema(case: SyntheticCase, seq: str) -> float:
        template = _arr(case.template_seg)
        values = _to_template(case.images[seq], case.truth["sequences"][seq]["template_to_image"])
        return float(np.median(values[template == 1]) / np.median(values[template == 2]))

    assert core_over_oedema(with_sign[0], "t2") > 1.1
    assert core_over_oedema(with_sign[0], "flair") < 0.8
    assert core_over_oedema(without[0], "flair") > 0.9


def test_mismatch_occurs_in_lower_grades_only_at_difficulty_zero() -> None:
    anatomy = load_anatomy(COARSE)
    rng = np.random.default_rng(2)
    rate = {g: np.mean([sample_tumour(anatomy, g, 0.0, rng).mismatch for _ in range(300)]) for g in (2, 3, 4)}
    assert rate[4] == 0.0 and rate[2] > rate[3] > 0.15, rate


def test_brats_like_is_skull_stripped_240_240_155_without_pose() -> None:
    case = synthesize_case(0, 3, SynthParams(resolution=COARSE, brats_like=True))
    assert not case.truth["skull"]
    assert np.allclose(case.truth["pose"]["template_to_scanner"], np.eye(4))
    brain = _arr(case.brain_mask)
    for image in case.images.values():
        assert image.GetSize() == (240, 240, 155) and image.GetSpacing() == (1.0, 1.0, 1.0)
        assert np.all(_arr(image)[brain == 0] == 0)
    assert case.seg.GetSize() == (240, 240, 155)
