"""Grids, orientation, the Geometry record and the way back to the input image."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from gliomagrade.preprocess import Geometry, to_reference_space
from gliomagrade.preprocess.geometry import Grid, output_grid, reorient, resample
from gliomagrade.preprocess.phantom import rigid
from gliomagrade.preprocess.template import load_template


def test_reorient_changes_axes_not_physical_space() -> None:
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((5, 6, 7)).astype(np.float32))
    image.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))  # an oblique-free but permuted acquisition
    image.SetOrigin((10.0, -20.0, 30.0))
    out = reorient(image, "RAS")
    assert np.allclose(np.asarray(out.GetDirection()).reshape(3, 3), np.diag([-1, -1, 1]))
    point = image.TransformIndexToPhysicalPoint((3, 2, 4))
    assert out.GetPixel(out.TransformPhysicalPointToIndex(point)) == image.GetPixel((3, 2, 4))


def test_output_grid_is_fixed_and_covers_the_template_brain() -> None:
    grid = output_grid((20, 24, 28), 8.0)
    assert grid.size == (28, 24, 20)  # sitk (x, y, z) order for a (D, H, W) grid
    assert grid == output_grid((20, 24, 28), 8.0)
    brain = load_template(4.0).brain
    on_grid = sitk.GetArrayFromImage(resample(sitk.Cast(brain, sitk.sitkFloat32), grid, sitk.Transform()))
    inside = sitk.GetArrayFromImage(brain).sum() * 64.0  # mm^3 of template brain
    covered = on_grid.sum() * np.prod(grid.spacing)
    assert abs(covered - inside) / inside < 0.03
    # The margin leaves the border slices empty.
    assert on_grid[0].max() == 0 and on_grid[-1].max() == 0 and on_grid[:, :, 0].max() == 0


def _geometry() -> Geometry:
    reference = sitk.Image([40, 50, 30], sitk.sitkFloat32)
    reference.SetSpacing((2.0, 2.0, 3.0))
    reference.SetOrigin((-40.0, -60.0, -30.0))
    reference = sitk.DICOMOrient(reference, "PIR")
    pose = rigid((8.0, -5.0, 12.0), (6.0, -4.0, 3.0), (0.0, -18.0, 10.0))
    return Geometry.build(output_grid((32, 32, 32), 8.0), reference, pose, {"t2": rigid((1, 0, 0), (2, 0, 0), (0, 0, 0))})


def test_geometry_round_trips_through_json() -> None:
    geometry = _geometry()
    again = Geometry.from_dict(json.loads(json.dumps(geometry.to_dict())))
    assert again == geometry
    assert again.coregistration_transform("t2").TransformPoint((0, 0, 0)) == (2.0, 0.0, 0.0)


def test_to_reference_space_puts_a_blob_back_where_it_was() -> None:
    geometry = _geometry()
    reference = geometry.reference.reference(sitk.sitkFloat32)
    # A blob on the input (t1ce) image, then onto the grid the way preprocessing samples it.
    centre_mm = np.asarray((5.0, -10.0, 15.0))
    index = np.asarray(reference.TransformPhysicalPointToContinuousIndex(centre_mm.tolist()))
    xx, yy, zz = np.meshgrid(*[np.arange(n) for n in reference.GetSize()], indexing="ij")
    phys = np.stack([xx, yy, zz], -1) - index
    blob = (np.linalg.norm(phys * np.asarray(reference.GetSpacing()), axis=-1) < 15).astype(np.float32)
    blob_img = sitk.GetImageFromArray(np.transpose(blob, (2, 1, 0)).copy())
    blob_img.CopyInformation(reference)
    on_grid = sitk.GetArrayFromImage(resample(blob_img, geometry.grid, geometry.template_to_reference()))
    assert on_grid.sum() > 10
    back = to_reference_space(on_grid, geometry)
    assert Grid.of(back) == geometry.reference
    back_arr, orig = sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(blob_img)
    dice = 2 * ((back_arr > 0.5) & (orig > 0.5)).sum() / ((back_arr > 0.5).sum() + (orig > 0.5).sum())
    assert dice > 0.8

    def centroid(a: np.ndarray) -> np.ndarray:
        idx = np.argwhere(a > 0.5).mean(axis=0)[::-1]
        return np.asarray(back.TransformContinuousIndexToPhysicalPoint(idx.tolist()))

    assert np.linalg.norm(centroid(back_arr) - centroid(orig)) < 2.0
    labels = to_reference_space((on_grid > 0.5).astype(np.uint8), geometry, interpolator="nearest")
    assert labels.GetPixelID() == sitk.sitkUInt8
