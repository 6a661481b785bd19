"""Synthetic test cases with a known truth, built on the MNI template: pose, skull, bias, misregistration.

Used by the tests and the benchmark (``gliomagrade.synth`` builds full cohorts; this keeps the
preprocessing checks self-contained): four sequences with tissue contrasts from the template's GM/WM
maps, an optional skull and scalp, an optional tumour, a known rigid pose (template -> subject) and
known rigid offsets between sequences, sampled on an anisotropic grid in any orientation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from gliomagrade.constants import REFERENCE_SEQUENCE, SEQUENCES
from gliomagrade.preprocess.geometry import compose
from gliomagrade.preprocess.template import load_template

# Relative intensities (csf, gm, wm, bone, scalp) per sequence; t1/t1ce use the template T1 in the brain.
_CONTRAST = {
    "t1": (0.25, 0.6, 1.0, 0.05, 0.9),
    "t1ce": (0.25, 0.62, 0.95, 0.05, 0.85),
    "t2": (1.0, 0.6, 0.4, 0.05, 0.7),
    "flair": (0.15, 0.75, 0.5, 0.05, 0.8),
}
# Tumour (necrosis, oedema, enhancing) intensities per sequence.
_TUMOUR = {"t1": (0.3, 0.5, 0.6), "t1ce": (0.3, 0.55, 1.4), "t2": (1.1, 0.95, 0.8), "flair": (0.6, 1.0, 0.9)}


@dataclass
class PhantomCase:
    """Images per sequence, truth masks on the t1ce grid and the true transforms."""

    images: dict[str, sitk.Image]
    brain_mask: sitk.Image
    seg: sitk.Image
    pose: sitk.Euler3DTransform
    """True template -> t1ce transform."""
    to_reference: dict[str, sitk.Euler3DTransform] = field(default_factory=dict)
    """True t1ce -> sequence transforms (what co-registration should recover)."""


def rigid(rotation_deg: Sequence[float], translation_mm: Sequence[float], center: Sequence[float]
          ) -> sitk.Euler3DTransform:
    """A rigid transform from Euler angles (deg) and a translation (mm) about ``center``."""
    transform = sitk.Euler3DTransform()
    transform.SetCenter([float(c) for c in center])
    transform.SetRotation(*[float(np.deg2rad(a)) for a in rotation_deg])
    transform.SetTranslation([float(t) for t in translation_mm])
    return transform


def brain_center() -> np.ndarray:
    """Physical centre (LPS mm) of the template brain's bounding box."""
    brain = load_template(1.0).brain
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(brain)
    return np.asarray(stats.GetCentroid(1))


def _tissues(spacing_mm: float, skull: bool, tumour: bool) -> dict[str, sitk.Image]:
    """Template-space images of each sequence (float32) plus brain and seg label maps."""
    tpl = load_template(spacing_mm)
    gm, wm, t1 = (sitk.GetArrayFromImage(x) for x in (tpl.gm, tpl.wm, tpl.t1))
    brain = sitk.GetArrayFromImage(tpl.brain) > 0
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    outside = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(tpl.brain, insideIsPositive=False,
                                                                  squaredDistance=False, useImageSpacing=True))
    seg = np.zeros(brain.shape, dtype=np.uint8)
    if tumour:
        zz, yy, xx = np.indices(brain.shape)
        centre = np.asarray(brain.shape) * np.asarray([0.6, 0.45, 0.35])
        r = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) * spacing_mm
        seg[(r < 22) & brain] = 2
        seg[(r < 14) & brain] = 4
        seg[(r < 9) & brain] = 1
    t1_norm = t1 / max(float(np.percentile(t1[brain], 99)), 1e-6)
    out: dict[str, sitk.Image] = {}
    for seq in SEQUENCES:
        c_csf, c_gm, c_wm, c_bone, c_scalp = _CONTRAST[seq]
        values = (c_csf * csf + c_gm * gm + c_wm * wm) if seq in ("t2", "flair") else t1_norm * (c_wm / 1.0)
        values = values * brain
        if skull:
            values = np.where((outside > 0) & (outside <= 2), c_csf, values)
            values = np.where((outside > 2) & (outside <= 6), c_bone, values)
            values = np.where((outside > 6) & (outside <= 11), c_scalp, values)
        for label, level in zip((1, 2, 4), _TUMOUR[seq], strict=True):
            values = np.where(seg == label, level, values)
        image = sitk.GetImageFromArray((1000.0 * values).astype(np.float32))
        image.CopyInformation(tpl.t1)
        out[seq] = image
    brain_img = sitk.GetImageFromArray(brain.astype(np.uint8))
    seg_img = sitk.GetImageFromArray(seg)
    brain_img.CopyInformation(tpl.t1)
    seg_img.CopyInformation(tpl.t1)
    out["brain"], out["seg"] = brain_img, seg_img
    return out


def _subject_grid(center: np.ndarray, size: Sequence[int], spacing: Sequence[float], orientation: str
                  ) -> sitk.Image:
    """An empty image of ``size``/``spacing`` centred on ``center`` in the given orientation."""
    ref = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    ref.SetSpacing([float(s) for s in spacing])
    ref.SetOrigin((center - (np.asarray(size) - 1) * np.asarray(spacing) / 2).tolist())
    return sitk.DICOMOrient(ref, orientation)


def _bias(reference: sitk.Image, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field exp(polynomial of degree 2) on the reference grid."""
    shape = sitk.GetArrayViewFromImage(reference).shape
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    coeffs = rng.normal(0, strength, size=6)
    linear = sum(c * g for c, g in zip(coeffs[:3], grids, strict=True))
    log_field = linear + sum(c * g**2 for c, g in zip(coeffs[3:], grids, strict=True))
    return np.exp(log_field).astype(np.float32)


def make_phantom(*, rotation_deg: Sequence[float] = (0, 0, 0), translation_mm: Sequence[float] = (0, 0, 0),
                 size: Sequence[int] = (240, 240, 155), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 orientation: str = "LPS", skull: bool = True, tumour: bool = True, bias: float = 0.0,
                 misregistration: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                 template_spacing_mm: float = 1.0, noise: float = 0.02, seed: int = 0) -> PhantomCase:
    """A synthetic case: the template with ``pose`` applied, sampled on an input grid (sitk x, y, z order)."""
    rng = np.random.default_rng(seed)
    tissues = _tissues(template_spacing_mm, skull, tumour)
    centre = brain_center()
    pose = rigid(rotation_deg, translation_mm, centre)
    ref = _subject_grid(np.asarray(pose.TransformPoint(centre.tolist())), size, spacing, orientation)
    inverse_pose = pose.GetInverse()
    images: dict[str, sitk.Image] = {}
    to_reference: dict[str, sitk.Euler3DTransform] = {}
    for seq in SEQUENCES:
        rot, trans = (misregistration or {}).get(seq, ((0, 0, 0), (0, 0, 0)))
        offset = rigid(rot, trans, pose.TransformPoint(centre.tolist()))
        to_reference[seq] = offset
        transform = compose(offset.GetInverse(), inverse_pose)  # sequence point -> t1ce point -> template point
        image = sitk.Resample(tissues[seq], ref, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        values = sitk.GetArrayFromImage(image)
        if bias:
            values = values * _bias(ref, bias, rng)
        values = values + rng.normal(0, noise * 1000.0, values.shape).astype(np.float32) * (values > 0)
        noisy = sitk.GetImageFromArray(values.astype(np.float32))
        noisy.CopyInformation(image)
        images[seq] = noisy
    brain = sitk.Resample(tissues["brain"], ref, inverse_pose, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    seg = sitk.Resample(tissues["seg"], ref, inverse_pose, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return PhantomCase(images=images, brain_mask=brain, seg=seg, pose=pose, to_reference=to_reference)


def pose_error(estimated: sitk.Transform, truth: sitk.Transform, mask: sitk.Image | None = None
               ) -> tuple[float, float]:
    """(mean displacement in mm over the template brain, rotation difference in degrees)."""
    from gliomagrade.preprocess.geometry import as_affine

    brain = mask if mask is not None else load_template(4.0).brain
    idx = np.argwhere(sitk.GetArrayViewFromImage(brain) > 0)[:, ::-1]
    points = [brain.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in idx[:: max(1, len(idx) // 500)]]
    distance = float(np.mean([np.linalg.norm(np.subtract(estimated.TransformPoint(p), truth.TransformPoint(p)))
                              for p in points]))
    a = np.asarray(as_affine(estimated).GetMatrix()).reshape(3, 3)
    b = np.asarray(as_affine(truth).GetMatrix()).reshape(3, 3)
    u, _, vt = np.linalg.svd(a)
    relative = (u @ vt) @ b.T
    angle = float(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1))))
    return distance, angle


__all__ = ["PhantomCase", "make_phantom", "pose_error", "rigid", "brain_center", "REFERENCE_SEQUENCE"]
