"""Registration recovers known transforms on template phantoms (4 mm: tolerances of a coarse grid)."""

from __future__ import annotations

from gliomagrade.preprocess.case import _template_metric_mask
from gliomagrade.preprocess.phantom import pose_error
from gliomagrade.preprocess.registration import RegistrationSettings, coregister, register_template
from gliomagrade.preprocess.template import coarse_copy, load_template

from .conftest import TINY, phantom

SETTINGS = RegistrationSettings(shrink=TINY["registration_shrink"], sampling=TINY["registration_sampling"])


def test_known_pose_with_skull_is_recovered() -> None:
    case = phantom((12.0, -10.0, 8.0), (10.0, -12.0, 6.0), skull=True, orientation="PIR")
    template = load_template(4.0)
    mask = _template_metric_mask(4.0, TINY["template_mask_dilate_mm"])
    rigid, affine = register_template(template.t1, mask, coarse_copy(case.images["t1ce"], 4.0), SETTINGS,
                                      affine=True)
    assert affine is not None
    # 4 mm voxels: the rigid stage lands within a voxel, the affine refinement within half a voxel.
    distance, angle = pose_error(rigid.transform, case.pose)
    assert distance < 3.0 and angle < 3.0, (distance, angle)
    distance, angle = pose_error(affine.transform, case.pose)
    assert distance < 2.0, f"pose error {distance:.2f} mm"
    assert angle < 2.0, f"rotation error {angle:.2f} deg"


def test_coregistration_recovers_a_misregistration() -> None:
    case = phantom(misregistered=True)
    fixed = coarse_copy(case.images["t1ce"], 4.0)
    for seq in ("t2", "flair"):
        result = coregister(fixed, coarse_copy(case.images[seq], 4.0), SETTINGS)
        error, _ = pose_error(result.transform, case.to_reference[seq], mask=case.brain_mask)
        before, _ = pose_error(case.to_reference[seq].GetInverse().GetInverse(), _identity(), mask=case.brain_mask)
        assert before > 4.0  # the offset is real...
        assert error < 1.5, f"{seq}: co-registration error {error:.2f} mm"  # ...and recovered


def _identity():  # noqa: ANN202
    import SimpleITK as sitk

    return sitk.Euler3DTransform()
