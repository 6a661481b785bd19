"""DICOM writer: geometry and values survive a SimpleITK round trip; tags a reader relies on are there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from gliomagrade.dicomio import int16_scaling, write_series
from gliomagrade.errors import ImageError


def _image(direction: np.ndarray, dtype=np.float32) -> sitk.Image:
    rng = np.random.default_rng(0)
    array = (rng.random((6, 12, 10)) * 1500.0 - 200.0).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.9, 1.1, 3.0))
    image.SetOrigin((-10.5, 20.25, 33.0))
    image.SetDirection(direction.ravel().tolist())
    return image


def _rotation() -> np.ndarray:
    tx = sitk.Euler3DTransform()
    tx.SetRotation(0.2, -0.1, 0.25)
    return np.asarray(tx.GetMatrix()).reshape(3, 3)


def _read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _write(image: sitk.Image, folder: Path) -> list[Path]:
    return write_series(image, folder, series_description="AX T1 POST GAD", series_number=4,
                        patient_id="SYN_0001", patient_name="SYNTHETIC^SYN_0001")


def test_round_trip_keeps_physical_space_and_values(tmp_path: Path) -> None:
    image = _image(_rotation())
    paths = _write(image, tmp_path)
    assert len(paths) == image.GetSize()[2]
    back = _read(tmp_path)
    assert np.allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-3)
    assert np.allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-3)
    assert np.allclose(back.GetDirection(), image.GetDirection(), atol=1e-3)
    slope, _ = int16_scaling(sitk.GetArrayViewFromImage(image))
    error = np.abs(sitk.GetArrayFromImage(back) - sitk.GetArrayFromImage(image)).max()
    assert error <= slope / 2 + 1e-6


def test_integer_image_is_stored_exactly(tmp_path: Path) -> None:
    image = sitk.Cast(sitk.Round(_image(np.eye(3))), sitk.sitkInt16)
    _write(image, tmp_path)
    assert np.array_equal(sitk.GetArrayFromImage(_read(tmp_path)), sitk.GetArrayFromImage(image))


def test_left_handed_image_keeps_voxel_positions(tmp_path: Path) -> None:
    direction = np.diag([1.0, 1.0, -1.0]) @ np.eye(3)
    image = _image(direction)
    _write(image, tmp_path)
    back = _read(tmp_path)
    # the same physical space: resampling the read-back onto the original grid reproduces the values
    same = sitk.Resample(back, image, sitk.Transform(), sitk.sitkNearestNeighbor, -9999.0, sitk.sitkFloat32)
    assert np.abs(sitk.GetArrayFromImage(same) - sitk.GetArrayFromImage(image)).max() < 0.05


def test_tags_a_reader_relies_on(tmp_path: Path) -> None:
    paths = _write(_image(_rotation()), tmp_path)
    slices = [pydicom.dcmread(p) for p in paths]
    first = slices[0]
    assert first.SeriesDescription == "AX T1 POST GAD" and first.ProtocolName == "AX T1 POST GAD"
    assert first.Modality == "MR" and first.SeriesNumber == 4
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([1.1, 0.9])
    assert float(first.SliceThickness) == pytest.approx(3.0)
    assert float(first.SpacingBetweenSlices) == pytest.approx(3.0)
    assert len({s.SOPInstanceUID for s in slices}) == len(slices)
    assert len({s.SeriesInstanceUID for s in slices}) == 1
    assert len({s.StudyInstanceUID for s in slices}) == 1
    positions = np.array([[float(v) for v in s.ImagePositionPatient] for s in slices])
    assert np.allclose(np.linalg.norm(np.diff(positions, axis=0), axis=1), 3.0, atol=1e-3)


def test_study_uid_is_shared_when_given(tmp_path: Path) -> None:
    image = _image(np.eye(3))
    kwargs = {"series_number": 1, "patient_id": "P", "patient_name": "P", "study_uid": "1.2.3.4"}
    a = write_series(image, tmp_path / "a", series_description="AX T2 FSE", **kwargs)
    b = write_series(image, tmp_path / "b", series_description="AX FLAIR", **kwargs)
    assert pydicom.dcmread(a[0]).StudyInstanceUID == pydicom.dcmread(b[0]).StudyInstanceUID == "1.2.3.4"
    assert pydicom.dcmread(a[0]).SeriesInstanceUID != pydicom.dcmread(b[0]).SeriesInstanceUID


def test_rejects_2d_and_non_finite_images(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="scalar 3D"):
        _write(sitk.Image([4, 4], sitk.sitkFloat32), tmp_path)
    image = _image(np.eye(3))
    image[1, 1, 1] = float("nan")
    with pytest.raises(ImageError, match="non-finite"):
        _write(image, tmp_path)

