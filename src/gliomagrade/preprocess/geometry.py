"""Grids and transforms: the fixed output box in template space, orientation, and the way back.

Conventions: numpy arrays are ``(D, H, W)`` = sitk ``(z, y, x)``; physical points are LPS mm (ITK);
the output grid has the template's orientation, ``GRID_ORIENTATION`` = RAS (voxel x grows towards the
patient's right, y anterior, z superior); every transform maps *template* points to *subject* (t1ce)
points, which is what resampling onto the template grid needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import SimpleITK as sitk

from gliomagrade.preprocess.template import load_template

GRID_ORIENTATION = "RAS"
"""Orientation code (ITK/DICOMOrient convention) of the output grid and of reoriented inputs."""

INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


@dataclass(frozen=True)
class Grid:
    """A sampling grid in physical space (sitk order: x, y, z)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Grid:
        """The grid an image is sampled on."""
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    def reference(self, pixel: int = sitk.sitkUInt8) -> sitk.Image:
        """An empty image on this grid, used as a resampling reference."""
        image = sitk.Image([int(n) for n in self.size], pixel)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


@lru_cache(maxsize=16)
def output_grid(grid: tuple[int, int, int], margin_mm: float) -> Grid:
    """The fixed box around the template brain (bounding box + margin) sampled at ``grid`` = (D, H, W)."""
    brain = load_template(1.0).brain
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(brain)
    x0, y0, z0, nx, ny, nz = stats.GetBoundingBox(1)
    spacing_in = np.asarray(brain.GetSpacing())
    direction = np.asarray(brain.GetDirection()).reshape(3, 3)
    extent = np.asarray([nx, ny, nz]) * spacing_in + 2 * margin_mm
    size = np.asarray(grid[::-1], dtype=int)
    spacing = extent / size
    # Physical position of the box's corner (the outer edge of voxel (x0, y0, z0) minus the margin).
    corner_index = np.asarray([x0, y0, z0], dtype=float) - 0.5 - margin_mm / spacing_in
    corner = np.asarray(brain.TransformContinuousIndexToPhysicalPoint(corner_index.tolist()))
    origin = corner + direction @ (spacing / 2)
    return Grid(tuple(int(n) for n in size), tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
                tuple(float(d) for d in direction.ravel()))


def reorient(image: sitk.Image, orientation: str = GRID_ORIENTATION) -> sitk.Image:
    """Permute/flip axes so the image has a standard orientation; voxels and physical space unchanged."""
    return sitk.DICOMOrient(image, orientation)


def resample(image: sitk.Image, grid: Grid, transform: sitk.Transform, interpolator: str = "linear",
             pixel: int = sitk.sitkFloat32, default: float = 0.0) -> sitk.Image:
    """Sample ``image`` on ``grid`` through ``transform`` (grid point -> image point)."""
    return sitk.Resample(image, grid.reference(pixel), transform, INTERPOLATORS[interpolator], default, pixel)


def compose(*transforms: sitk.Transform) -> sitk.Transform:
    """One transform applying ``transforms`` in the order given (first argument first)."""
    composite = sitk.CompositeTransform(3)
    for transform in reversed(transforms):  # a CompositeTransform applies the last added first
        composite.AddTransform(transform)
    return composite


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """A rigid/similarity/affine transform (or a composite of them) flattened into one affine."""
    points = np.asarray([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], dtype=float)
    mapped = np.asarray([transform.TransformPoint(p.tolist()) for p in points])
    matrix = ((mapped[1:] - mapped[0]) / 100.0).T
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(matrix.ravel().tolist())
    affine.SetTranslation(mapped[0].tolist())
    return affine


@dataclass(frozen=True)
class Geometry:
    """Where a preprocessed case lives: the output grid, the t1ce input grid and template->t1ce affine."""

    grid_size: tuple[int, int, int]
    grid_spacing: tuple[float, float, float]
    grid_origin: tuple[float, float, float]
    grid_direction: tuple[float, ...]
    reference_size: tuple[int, int, int]
    reference_spacing: tuple[float, float, float]
    reference_origin: tuple[float, float, float]
    reference_direction: tuple[float, ...]
    matrix: tuple[float, ...]
    """Row-major 3x3 of the template->t1ce affine: ``y = matrix @ x + translation`` (LPS mm)."""
    translation: tuple[float, float, float]
    coregistration: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Per sequence, the t1ce->sequence rigid as 12 numbers (row-major 3x3 matrix, then translation)."""

    @classmethod
    def build(cls, grid: Grid, reference: sitk.Image, template_to_reference: sitk.Transform,
              coregistration: dict[str, sitk.Transform] | None = None) -> Geometry:
        """Record a case's geometry from its grid, t1ce image and registration results."""
        affine = as_affine(template_to_reference)
        ref = Grid.of(reference)
        coreg = {seq: tuple(as_affine(t).GetMatrix()) + tuple(as_affine(t).GetTranslation())
                 for seq, t in (coregistration or {}).items()}
        return cls(grid.size, grid.spacing, grid.origin, grid.direction, ref.size, ref.spacing, ref.origin,
                   ref.direction, tuple(affine.GetMatrix()), tuple(affine.GetTranslation()), coreg)

    @property
    def grid(self) -> Grid:
        return Grid(self.grid_size, self.grid_spacing, self.grid_origin, self.grid_direction)

    @property
    def reference(self) -> Grid:
        return Grid(self.reference_size, self.reference_spacing, self.reference_origin, self.reference_direction)

    def template_to_reference(self) -> sitk.AffineTransform:
        """The affine mapping template (grid) points to t1ce points."""
        affine = sitk.AffineTransform(3)
        affine.SetMatrix(self.matrix)
        affine.SetTranslation(self.translation)
        return affine

    def coregistration_transform(self, sequence: str) -> sitk.AffineTransform:
        """The t1ce->``sequence`` rigid found by co-registration (identity when not co-registered)."""
        affine = sitk.AffineTransform(3)
        if sequence in self.coregistration:
            params = self.coregistration[sequence]
            affine.SetMatrix(params[:9])
            affine.SetTranslation(params[9:])
        return affine

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, ready for JSON."""
        data: dict[str, Any] = {k: list(v) for k, v in asdict(self).items() if k != "coregistration"}
        data["coregistration"] = {k: list(v) for k, v in self.coregistration.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        """Inverse of ``to_dict``."""
        fields = {k: tuple(int(x) if k.endswith("_size") else float(x) for x in v)
                  for k, v in data.items() if k != "coregistration"}
        coreg = {k: tuple(float(x) for x in v) for k, v in data.get("coregistration", {}).items()}
        return cls(**fields, coregistration=coreg)


def grid_image(volume: np.ndarray, grid: Grid) -> sitk.Image:
    """Wrap a ``(D, H, W)`` array as an image on ``grid``."""
    expected = tuple(grid.size[::-1])
    if volume.shape != expected:
        raise ValueError(f"volume shape {volume.shape} does not match the grid (D, H, W) {expected}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


def to_reference_space(volume: np.ndarray, geometry: Geometry, *, interpolator: str = "linear") -> sitk.Image:
    """Map a grid volume (a CAM, a mask) back onto the original t1ce image grid so it overlays the input."""
    if interpolator not in INTERPOLATORS:
        raise ValueError(f"interpolator must be one of {sorted(INTERPOLATORS)}, got {interpolator!r}")
    if volume.dtype == bool:
        volume = volume.astype(np.uint8)
    pixel = sitk.sitkFloat32 if interpolator != "nearest" else sitk.GetImageFromArray(volume[:1, :1, :1]).GetPixelID()
    source = grid_image(volume.astype(np.float32) if interpolator != "nearest" else volume, geometry.grid)
    inverse = geometry.template_to_reference().GetInverse()
    return resample(source, geometry.reference, inverse, interpolator, pixel=pixel)


def rigid_error(estimated: sitk.Transform, truth: sitk.Transform, points: Sequence[Sequence[float]]) -> float:
    """Mean distance (mm) between two transforms' images of ``points`` (registration error)."""
    return float(np.mean([np.linalg.norm(np.subtract(estimated.TransformPoint(p), truth.TransformPoint(p)))
                          for p in points]))
