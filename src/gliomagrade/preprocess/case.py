"""``preprocess_case``: the one chain used by training and by the serving transformer.

(N4) -> coarse isotropic copies, reoriented to RAS -> rigid co-registration of t1/t2/flair to t1ce ->
t1ce to the MNI template (rigid, then affine) -> every sequence resampled ONCE onto the fixed template
grid through the composed transform -> brain mask (template prior, refined) -> z-score in the brain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliomagrade.config import PreprocessConfig
from gliomagrade.constants import REFERENCE_SEQUENCE, SEQUENCES
from gliomagrade.errors import ImageError, InputError
from gliomagrade.imageio import check_same_extent
from gliomagrade.preprocess import intensity, skullstrip
from gliomagrade.preprocess.geometry import (
    Geometry,
    Grid,
    compose,
    output_grid,
    reorient,
    resample,
)
from gliomagrade.preprocess.registration import (
    RegistrationSettings,
    affine_scales,
    coregister,
    head_mask,
    register_template,
)
from gliomagrade.preprocess.template import coarse_copy, load_template

QCValue = float | str | bool


@dataclass
class PreprocessedCase:
    """A case on the template grid: ``image`` float16 (4, D, H, W) in SEQUENCES order, z-scored in the brain."""

    image: np.ndarray
    mask: np.ndarray
    seg: np.ndarray | None
    geometry: Geometry
    qc: dict[str, QCValue] = field(default_factory=dict)


class StageTimer:
    """Wall-clock seconds per named stage, for QC and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def _validated(images: Mapping[str, sitk.Image], cfg: PreprocessConfig, subject: str) -> dict[str, sitk.Image]:
    """All four sequences, 3D, finite, float32, with fields of view that agree within ``fov_tolerance``."""
    missing = [s for s in SEQUENCES if s not in images]
    if missing:
        raise InputError(f"missing sequences {missing}; found {sorted(images)}, expected {list(SEQUENCES)}",
                         subject=subject)
    out: dict[str, sitk.Image] = {}
    for seq in SEQUENCES:
        image = images[seq]
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ImageError(f"expected a 3D scalar image, got {image.GetDimension()}D with "
                             f"{image.GetNumberOfComponentsPerPixel()} components", subject=subject, source=seq)
        image = sitk.Cast(image, sitk.sitkFloat32)
        if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
            raise ImageError("image has non-finite voxels (NaN/inf)", subject=subject, source=seq)
        out[seq] = image
    check_same_extent(out, cfg.fov_tolerance, subject)  # the same check ingest applies
    return out


def _settings(cfg: PreprocessConfig) -> RegistrationSettings:
    return RegistrationSettings(shrink=tuple(cfg.registration_shrink), sampling=cfg.registration_sampling,
                                iterations=cfg.registration_iterations, seed=cfg.seed)


@lru_cache(maxsize=4)
def _template_metric_mask(spacing_mm: float, dilate_mm: float) -> sitk.Image:
    """The coarse template brain mask, dilated so the metric sees the brain's edge (brain vs outside)."""
    brain = load_template(spacing_mm).brain
    radius = round(dilate_mm / spacing_mm)
    return sitk.BinaryDilate(brain, [radius] * 3) if radius > 0 else brain


def _coarse(image: sitk.Image, log_bias: sitk.Image | None, spacing_mm: float) -> sitk.Image:
    """Isotropic RAS copy for registration, bias-corrected when a log bias field is given.

    Reorienting permutes axes without moving anything in physical space, so only these copies are
    reoriented; the output is resampled from the original images through physical transforms.
    """
    small = coarse_copy(image, spacing_mm)
    if log_bias is not None:
        field = sitk.Exp(resample(log_bias, Grid.of(small), sitk.Transform(), "linear"))
        small = sitk.Cast(small / field, sitk.sitkFloat32)  # Exp/Divide promote to float64
    return reorient(small)


def _to_grid(image: sitk.Image, log_bias: sitk.Image | None, grid: Grid, transform: sitk.Transform) -> np.ndarray:
    """Resample one sequence onto the output grid (linear), dividing by its bias field when given."""
    values = sitk.GetArrayFromImage(resample(image, grid, transform, "linear"))
    if log_bias is not None:
        values = intensity.apply_log_bias(values, sitk.GetArrayFromImage(resample(log_bias, grid, transform)))
    return values


def _label_to_grid(label: sitk.Image, grid: Grid, transform: sitk.Transform) -> np.ndarray:
    """A label map on the grid by nearest neighbour (labels are never interpolated)."""
    return sitk.GetArrayFromImage(resample(sitk.Cast(label, sitk.sitkUInt8), grid, transform, "nearest",
                                           pixel=sitk.sitkUInt8))


def _mask_to_grid(mask: sitk.Image, grid: Grid, transform: sitk.Transform) -> np.ndarray:
    """A binary mask on the grid with partial-volume thresholding (fraction > 0.5)."""
    fraction = resample(sitk.Cast(mask > 0, sitk.sitkFloat32), grid, transform, "linear")
    return sitk.GetArrayFromImage(fraction) > 0.5


def preprocess_case(images: Mapping[str, sitk.Image], cfg: PreprocessConfig, *, subject: str = "case",
                    seg: sitk.Image | None = None, brain_mask: sitk.Image | None = None) -> PreprocessedCase:
    """Four raw sequences -> z-scored (4, D, H, W) float16 on the template grid, brain mask, seg, geometry, QC."""
    timer = StageTimer()
    qc: dict[str, QCValue] = {}
    with timer("validate"):
        imgs = _validated(images, cfg, subject)
    settings = _settings(cfg)
    coreg_settings = replace(settings, shrink=tuple(cfg.coregister_shrink))
    log_bias: dict[str, sitk.Image] = {}
    if cfg.n4:
        with timer("n4"):
            log_bias = {s: intensity.n4_log_bias(imgs[s], shrink=cfg.n4_shrink, iterations=cfg.n4_iterations)
                        for s in SEQUENCES}
    with timer("coarse"):
        coarse = {s: _coarse(imgs[s], log_bias.get(s), cfg.registration_spacing_mm) for s in SEQUENCES}
    ref = REFERENCE_SEQUENCE
    to_ref: dict[str, sitk.Transform] = {ref: sitk.Transform()}
    with timer("coregister"):
        ref_mask = head_mask(coarse[ref])
        for seq in (s for s in SEQUENCES if s != ref):
            if cfg.coregister:
                result = coregister(coarse[ref], coarse[seq], coreg_settings, fixed_mask=ref_mask, subject=subject,
                                    stage=f"coregister-{seq}")
                to_ref[seq], qc[f"coreg_{seq}_metric"] = result.transform, result.metric
            else:
                to_ref[seq] = sitk.Transform()
    with timer("template"):
        template = load_template(cfg.registration_spacing_mm)
        rigid, affine = register_template(
            template.t1, _template_metric_mask(cfg.registration_spacing_mm, cfg.template_mask_dilate_mm),
            coarse[ref], settings, affine=cfg.template_transform == "affine", subject=subject)
        qc["template_rigid_metric"] = rigid.metric
        if affine is not None:
            qc["template_affine_metric"] = affine.metric
        template_to_ref = (affine or rigid).transform
    grid = output_grid(tuple(cfg.grid), cfg.margin_mm)
    with timer("resample"):
        channels = [_to_grid(imgs[s], log_bias.get(s), grid, compose(template_to_ref, to_ref[s])) for s in SEQUENCES]
    with timer("skull_strip"):
        mask = _brain_mask(cfg, grid, channels, imgs[ref], template_to_ref)
    with timer("normalise"):
        image = np.empty((len(SEQUENCES), *mask.shape), dtype=np.float16)
        for i, (seq, values) in enumerate(zip(SEQUENCES, channels, strict=True)):
            for key, value in intensity.brain_stats(values, mask).items():
                qc[f"{seq}_{key}"] = value
            image[i] = intensity.normalise_in_mask(values, mask, sequence=seq, subject=subject, method=cfg.normalise)
    seg_grid = None
    with timer("labels"):
        if seg is not None:
            seg_grid = _label_to_grid(seg, grid, template_to_ref)
        if brain_mask is not None:
            qc["brain_dice"] = skullstrip.dice(mask, _mask_to_grid(brain_mask, grid, template_to_ref))
    geometry = Geometry.build(grid, images[ref], template_to_ref,
                              {s: t for s, t in to_ref.items() if s != ref and cfg.coregister})
    qc.update(_qc_checks(cfg, qc, mask, grid, template_to_ref))
    qc.update({f"time_{k}_s": round(v, 4) for k, v in timer.seconds.items()})
    qc["time_total_s"] = round(sum(timer.seconds.values()), 4)
    return PreprocessedCase(image=image, mask=mask.astype(np.uint8), seg=seg_grid, geometry=geometry, qc=qc)


def _brain_mask(cfg: PreprocessConfig, grid: Grid, channels: list[np.ndarray], reference: sitk.Image,
                template_to_ref: sitk.Transform) -> np.ndarray:
    """Template prior refined by intensities (skull present), or the inputs' own foreground (skull-stripped)."""
    if not cfg.skull_strip:
        return skullstrip.foreground_mask([_mask_to_grid(sitk.Abs(reference) > 0, grid, template_to_ref)])
    prior = skullstrip.template_brain_on_grid(grid)
    if not cfg.skull_strip_refine:
        return prior.copy()
    return skullstrip.refine_brain(prior, channels, grid.spacing[::-1], cfg.skull_strip_band_mm)


def _qc_checks(cfg: PreprocessConfig, qc: dict[str, QCValue], mask: np.ndarray, grid: Grid,
               template_to_ref: sitk.Transform) -> dict[str, QCValue]:
    """Brain volume in subject space, affine scales, and flags against the configured thresholds."""
    scales = affine_scales(template_to_ref)
    volume = float(mask.sum()) * grid.voxel_ml * float(np.prod(scales))
    metric = float(qc.get("template_affine_metric", qc["template_rigid_metric"]))
    coreg = [float(v) for k, v in qc.items() if k.startswith("coreg_") and k.endswith("_metric")]
    out: dict[str, QCValue] = {
        "brain_volume_ml": round(volume, 1),
        "affine_scale_min": float(scales.min()),
        "affine_scale_max": float(scales.max()),
    }
    reasons = []
    if metric > cfg.qc_template_metric_max:
        reasons.append(f"template metric {metric:.3f} > {cfg.qc_template_metric_max}")
    if scales.min() < cfg.qc_scale_range[0] or scales.max() > cfg.qc_scale_range[1]:
        reasons.append(f"affine scales {scales.min():.2f}..{scales.max():.2f} outside {list(cfg.qc_scale_range)}")
    if coreg and max(coreg) > cfg.qc_coreg_metric_max:
        reasons.append(f"co-registration metric {max(coreg):.3f} > {cfg.qc_coreg_metric_max}")
    if not cfg.qc_brain_ml_range[0] <= volume <= cfg.qc_brain_ml_range[1]:
        reasons.append(f"brain volume {volume:.0f} ml outside {list(cfg.qc_brain_ml_range)}")
    out["registration_suspect"] = bool(reasons)
    out["qc_reasons"] = "; ".join(reasons)
    return out


def qc_summary(qc: Mapping[str, Any]) -> dict[str, Any]:
    """The few QC values a summary table shows."""
    keys = ("brain_dice", "template_affine_metric", "template_rigid_metric", "brain_volume_ml",
            "registration_suspect", "time_total_s")
    return {k: qc[k] for k in keys if k in qc}
