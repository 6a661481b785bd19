"""Scanner effects: head pose, per-sequence motion, slice geometry, bias field, Rician noise, scaling.

Convention (recorded in every ground-truth JSON): ``template_to_image`` is the 4x4 affine that maps a
template-space point (LPS mm) to the physical point (LPS mm) of the written image. It is the head pose
(rotation about the template brain centre, then translation) composed with the sequence's own small
motion. Registration of the written image to the template should recover its inverse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from gliomagrade.constants import SEQUENCES
from gliomagrade.synth.params import SynthParams
from gliomagrade.synth.tumour import resize_linear

FOV_MM = (240.0, 256.0, 220.0)
"""Scanner field of view along L-R, A-P, S-I."""
BRATS_SIZE = (240, 240, 155)
ORIENTATIONS: dict[str, tuple[tuple[float, ...], str]] = {
    # name: (direction matrix, row-major, columns = image axes in LPS), DICOM description prefix
    "axial": ((1, 0, 0, 0, 1, 0, 0, 0, 1), "AX"),
    "coronal": ((1, 0, 0, 0, 0, 1, 0, -1, 0), "COR"),
    "sagittal": ((0, 0, -1, 1, 0, 0, 0, -1, 0), "SAG"),
}
BASE_SCALE = {"t1": 550.0, "t1ce": 600.0, "t2": 450.0, "flair": 500.0}
"""Typical stored value of white matter on T1-weighted scans / a unit of relative signal."""


@dataclass
class SequenceAcquisition:
    """How one sequence was acquired (recorded in the ground truth)."""

    orientation: str
    spacing: list[float]
    size: list[int]
    origin: list[float]
    direction: list[float]
    misregistration_deg: list[float]
    misregistration_mm: list[float]
    template_to_image: list[list[float]]
    noise_sigma: float
    bias_amplitude: float
    scale: float
    offset: float


def rigid_matrix(angles_deg: list[float], translation: list[float], center: np.ndarray) -> np.ndarray:
    """4x4 of the SimpleITK Euler3D rigid transform (angles x, y, z in degrees) about ``center``."""
    tx = sitk.Euler3DTransform()
    tx.SetCenter([float(v) for v in center])
    tx.SetRotation(*[float(np.deg2rad(a)) for a in angles_deg])
    tx.SetTranslation([float(v) for v in translation])
    m = np.eye(4)
    m[:3, :3] = np.asarray(tx.GetMatrix()).reshape(3, 3)
    m[:3, 3] = np.asarray(tx.GetTranslation()) + np.asarray(tx.GetCenter()) - m[:3, :3] @ np.asarray(tx.GetCenter())
    return m


def affine_transform(matrix: np.ndarray) -> sitk.AffineTransform:
    """SimpleITK transform of a 4x4 affine (maps points x -> A x + b)."""
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(matrix[:3, :3].ravel().tolist())
    tx.SetTranslation(matrix[:3, 3].tolist())
    return tx


def grid(center: np.ndarray, orientation: str, spacing: tuple[float, float, float], fov: tuple[float, ...]) -> sitk.Image:
    """Empty image of the scanner box ``fov`` (L-R, A-P, S-I mm) centred on ``center``, in ``orientation``."""
    direction = np.asarray(ORIENTATIONS[orientation][0], dtype=float).reshape(3, 3)
    extent = [fov[int(np.argmax(np.abs(direction[:, k])))] for k in range(3)]
    size = [max(2, int(round(e / s))) for e, s in zip(extent, spacing, strict=True)]
    image = sitk.Image(size, sitk.sitkUInt8)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection(direction.ravel().tolist())
    half = direction @ ((np.asarray(size) - 1) * np.asarray(spacing) / 2.0)
    image.SetOrigin((np.asarray(center) - half).tolist())
    return image


def plan_acquisition(params: SynthParams, center: np.ndarray, rng: np.random.Generator) -> dict:
    """Draw the pose and every sequence's geometry and scanner effects."""
    r = params.resolution
    if params.brats_like:
        pose = {"angles_deg": [0.0, 0.0, 0.0], "translation_mm": [0.0, 0.0, 0.0]}
    else:
        pose = {
            "angles_deg": rng.uniform(-params.max_rotation_deg, params.max_rotation_deg, 3).tolist(),
            "translation_mm": rng.uniform(-params.max_translation_mm, params.max_translation_mm, 3).tolist(),
        }
    pose_m = rigid_matrix(pose["angles_deg"], pose["translation_mm"], center)
    moves = (not params.brats_like) and rng.random() < params.misregistration_prob
    sequences = {}
    for seq in SEQUENCES:
        sequences[seq] = _plan_sequence(seq, params, center, pose_m, moves, rng, r)
    return {"center_mm": center.tolist(), "pose": {**pose, "template_to_scanner": pose_m.tolist()},
            "motion_between_sequences": bool(moves), "sequences": sequences}


def _plan_sequence(
    seq: str, params: SynthParams, center: np.ndarray, pose_m: np.ndarray, moves: bool,
    rng: np.random.Generator, r: float,
) -> SequenceAcquisition:
    """One sequence: orientation, slice thickness, motion relative to t1ce, noise, bias, scaling."""
    if params.brats_like:
        orientation, thickness, ref = "axial", 1.0, grid(center, "axial", (1.0, 1.0, 1.0), (240.0, 240.0, 155.0))
    else:
        orientation = str(rng.choice(list(ORIENTATIONS), p=list(params.sequence_orientations)))
        iso = rng.random() < (0.4 if seq in ("t1", "t1ce") else 0.1)
        thickness = 1.0 if iso else float(np.round(rng.uniform(1.5, params.max_slice_thickness_mm), 1))
        thickness = max(thickness, r)
        ref = grid(center, orientation, (r, r, thickness), FOV_MM)
    if moves and seq != "t1ce":
        mis_deg = (rng.uniform(1.0, 3.0, 3) * rng.choice([-1, 1], 3)).tolist()
        mis_mm = (rng.uniform(1.0, 3.0, 3) * rng.choice([-1, 1], 3)).tolist()
    else:
        mis_deg, mis_mm = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    matrix = pose_m @ rigid_matrix(mis_deg, mis_mm, center)
    return SequenceAcquisition(
        orientation=orientation,
        spacing=list(ref.GetSpacing()),
        size=list(ref.GetSize()),
        origin=list(ref.GetOrigin()),
        direction=list(ref.GetDirection()),
        misregistration_deg=mis_deg,
        misregistration_mm=mis_mm,
        template_to_image=matrix.tolist(),
        noise_sigma=float(rng.uniform(0.015, 0.045) * (1.3 if seq == "flair" else 1.0)),
        bias_amplitude=float(rng.uniform(0.05, 0.2)),
        scale=float(BASE_SCALE[seq] * np.exp(rng.normal(0.0, 0.35))),
        offset=float(rng.uniform(0.0, 30.0)),
    )


def reference_image(acq: SequenceAcquisition) -> sitk.Image:
    """Empty image with the sequence's written grid."""
    image = sitk.Image([int(s) for s in acq.size], sitk.sitkUInt8)
    image.SetSpacing(acq.spacing)
    image.SetOrigin(acq.origin)
    image.SetDirection(acq.direction)
    return image


def image_to_template(acq: SequenceAcquisition) -> sitk.Transform:
    """Transform for resampling template-space volumes onto the sequence's grid."""
    return affine_transform(np.linalg.inv(np.asarray(acq.template_to_image)))


def acquire(signal: sitk.Image, acq: SequenceAcquisition, rng: np.random.Generator, resolution: float) -> sitk.Image:
    """Sample the template-space signal as the scanner would: thick slices, bias, Rician noise, int16."""
    ref = reference_image(acq)
    thickness = acq.spacing[2]
    if thickness > resolution * 1.01:  # integrate over the slice profile (FWHM = thickness)
        step = max(resolution, thickness / 2.0)
        fine = grid_like(ref, step)
        image = sitk.Resample(signal, fine, image_to_template(acq), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        array = ndimage.gaussian_filter1d(sitk.GetArrayViewFromImage(image), thickness / 2.355 / step, axis=0)
        smooth = sitk.GetImageFromArray(array)
        smooth.CopyInformation(image)
        image = sitk.Resample(smooth, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    else:
        image = sitk.Resample(signal, ref, image_to_template(acq), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image) * bias_field(array_shape(ref), acq.bias_amplitude, rng)
    sigma = np.float32(acq.noise_sigma)
    real = array + sigma * rng.standard_normal(array.shape, dtype=np.float32)
    noisy = np.hypot(real, sigma * rng.standard_normal(array.shape, dtype=np.float32))  # Rician magnitude
    stored = np.clip(np.rint(noisy * acq.scale + acq.offset), 0, 32767).astype(np.int16)
    out = sitk.GetImageFromArray(stored)
    out.CopyInformation(ref)
    return out


def array_shape(image: sitk.Image) -> tuple[int, int, int]:
    """(z, y, x) shape of an image's array."""
    return tuple(reversed(image.GetSize()))  # type: ignore[return-value]


def grid_like(ref: sitk.Image, slice_spacing: float) -> sitk.Image:
    """The same box and orientation as ``ref`` but with slices every ``slice_spacing`` mm."""
    spacing = np.asarray(ref.GetSpacing())
    size = np.asarray(ref.GetSize())
    direction = np.asarray(ref.GetDirection()).reshape(3, 3)
    center = np.asarray(ref.GetOrigin()) + direction @ ((size - 1) * spacing / 2.0)
    new_size = size.copy()
    new_size[2] = int(np.ceil(size[2] * spacing[2] / slice_spacing))
    new_spacing = np.array([spacing[0], spacing[1], slice_spacing])
    image = sitk.Image([int(s) for s in new_size], sitk.sitkUInt8)
    image.SetSpacing(new_spacing.tolist())
    image.SetDirection(direction.ravel().tolist())
    image.SetOrigin((center - direction @ ((new_size - 1) * new_spacing / 2.0)).tolist())
    return image


def bias_field(shape: tuple[int, int, int], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(cubic polynomial) with log-sd about ``amplitude``.

    Evaluated on a coarse grid (the field is smooth) and linearly up-sampled to ``shape``.
    """
    coarse_shape = tuple(min(n, 24) for n in shape)
    axes = [np.linspace(-1.0, 1.0, n) for n in coarse_shape]
    terms = [(i, j, k) for i in range(4) for j in range(4) for k in range(4) if 0 < i + j + k <= 3]
    coeffs = rng.normal(0.0, 1.0, len(terms))
    coeffs *= amplitude / np.sqrt(np.sum(coeffs**2) / 3.0)
    log_field = np.zeros(coarse_shape)
    for (i, j, k), c in zip(terms, coeffs, strict=True):
        log_field += c * np.multiply.outer(np.multiply.outer(axes[0] ** i, axes[1] ** j), axes[2] ** k)
    return resize_linear(np.exp(log_field).astype(np.float32), shape)


def resample_labels(labels: sitk.Image, acq: SequenceAcquisition) -> sitk.Image:
    """Nearest-neighbour resampling of a template-space label map onto the sequence's grid."""
    return sitk.Resample(labels, reference_image(acq), image_to_template(acq), sitk.sitkNearestNeighbor, 0,
                         sitk.sitkUInt8)


def to_dict(acq: SequenceAcquisition) -> dict:
    return asdict(acq)
