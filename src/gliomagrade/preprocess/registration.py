"""Rigid/affine registration with Mattes mutual information (SimpleITK), multi-resolution, sparse sampling.

Two uses: co-registration of t1/t2/flair to t1ce (rigid, same session) and t1ce to the MNI template
(rigid then affine). Images given here are already coarse and isotropic (``registration_spacing_mm``);
the shrink factors are relative to that spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from gliomagrade.errors import PreprocessError


@dataclass(frozen=True)
class RegistrationResult:
    """A transform (fixed point -> moving point) and the final metric value (Mattes MI: lower is better)."""

    transform: sitk.Transform
    metric: float
    iterations: int
    stop: str


@dataclass(frozen=True)
class RegistrationSettings:
    """Optimiser and pyramid settings shared by every registration of a run."""

    shrink: tuple[int, ...] = (2, 1)
    sampling: float = 0.05
    iterations: int = 100
    bins: int = 32
    seed: int = 0


def head_mask(image: sitk.Image) -> sitk.Image:
    """Foreground (head or brain) by Otsu threshold, largest component, holes filled."""
    fg = sitk.OtsuThreshold(image, 0, 1)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(fg), sortByObjectSize=True)
    return sitk.BinaryFillhole(sitk.Cast(components == 1, sitk.sitkUInt8))


def _method(settings: RegistrationSettings, fixed_mask: sitk.Image | None, spacing_mm: float
            ) -> sitk.ImageRegistrationMethod:
    """A configured registration method: Mattes MI, random sampling, regular-step gradient descent, pyramid.

    Steps are in physical units (scales from physical shift): the first step moves points by about
    1.3 voxels of the finest level and halves on each reversal down to 1/60 voxel. (Plain gradient
    descent with a learning rate estimated each iteration took coarse-level steps of a whole shrunk
    voxel and settled 4-8 mm off on the template registration.)
    """
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # Keep the number of samples constant across levels: a coarse level has f**3 times fewer voxels.
    method.SetMetricSamplingPercentagePerLevel(
        [min(1.0, settings.sampling * f**3) for f in settings.shrink], settings.seed + 1
    )  # +1: seed 0 means "wall clock" to SimpleITK, and runs must be reproducible
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=4.0 / 3.0 * spacing_mm, minStep=spacing_mm / 60.0, numberOfIterations=settings.iterations,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(settings.shrink))
    method.SetSmoothingSigmasPerLevel([max(0.0, f / 2 - 0.5) for f in settings.shrink])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return method


def register(fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, settings: RegistrationSettings, *,
             fixed_mask: sitk.Image | None = None, subject: str = "case", stage: str = "registration"
             ) -> RegistrationResult:
    """Optimise ``initial`` (modified copy) so that ``moving`` sampled through it matches ``fixed``."""
    method = _method(settings, fixed_mask, float(min(fixed.GetSpacing())))
    transform = initial.__class__(initial)
    method.SetInitialTransform(transform, inPlace=True)
    try:
        method.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
    except RuntimeError as exc:
        raise PreprocessError(f"registration failed: {str(exc).splitlines()[-1][:300]}", subject=subject,
                              stage=stage) from exc
    metric = float(method.GetMetricValue())
    if not np.isfinite(metric):
        raise PreprocessError(f"registration metric is {metric}", subject=subject, stage=stage)
    return RegistrationResult(transform, metric, int(method.GetOptimizerIteration()),
                              method.GetOptimizerStopConditionDescription())


def coregister(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings, *,
               fixed_mask: sitk.Image | None = None, subject: str = "case", stage: str = "coregister"
               ) -> RegistrationResult:
    """Rigid registration of one sequence (moving) to t1ce (fixed), started from the scanner geometry."""
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    # Same session: the scanner coordinates are the best start; only the rotation centre is set above.
    euler = sitk.Euler3DTransform()
    euler.SetCenter(sitk.Euler3DTransform(initial).GetCenter())
    return register(fixed, moving, euler, settings, fixed_mask=fixed_mask, subject=subject, stage=stage)


def rigid_to_affine(rigid: sitk.Transform) -> sitk.AffineTransform:
    """The same mapping as an affine transform with the same centre (the starting point of affine stage)."""
    euler = sitk.Euler3DTransform(rigid)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(euler.GetCenter())
    affine.SetMatrix(euler.GetMatrix())
    affine.SetTranslation(euler.GetTranslation())
    return affine


def register_template(template: sitk.Image, template_mask: sitk.Image, subject_image: sitk.Image,
                      settings: RegistrationSettings, *, affine: bool, subject: str = "case"
                      ) -> tuple[RegistrationResult, RegistrationResult | None]:
    """Template (fixed) -> subject t1ce (moving): moments initialisation, rigid, then optionally affine.

    The metric samples only the template brain (slightly dilated), so a skull in the subject is not
    matched against the brain-only template's empty background; the subject's moments give the start.
    """
    initial = sitk.CenteredTransformInitializer(
        template, subject_image, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    rigid = register(template, subject_image, sitk.Euler3DTransform(initial), settings, fixed_mask=template_mask,
                     subject=subject, stage="template-rigid")
    if not affine:
        return rigid, None
    refined = register(template, subject_image, rigid_to_affine(rigid.transform), settings,
                       fixed_mask=template_mask, subject=subject, stage="template-affine")
    return rigid, refined


def affine_scales(transform: sitk.Transform) -> np.ndarray:
    """Singular values of the linear part (1 for rigid): a registration that shrank or blew up shows here."""
    from gliomagrade.preprocess.geometry import as_affine

    return np.linalg.svd(np.asarray(as_affine(transform).GetMatrix()).reshape(3, 3), compute_uv=False)
