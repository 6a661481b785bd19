"""imageio: NIfTI reading and every validation rule, upload bytes, orientation, extents, series names."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from ingest_fixtures import segmentation, volume

from gliomagrade.errors import ImageError
from gliomagrade.imageio import (
    check_same_extent,
    map_series_to_sequence,
    physical_extent,
    read_image,
    read_image_bytes,
    read_segmentation,
    sniff_format,
)


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("name", ["t1.nii", "t1.nii.gz"])
def test_reads_nifti_as_float32_3d(tmp_path: Path, name: str) -> None:
    src = sitk.Cast(volume(), sitk.sitkInt16)
    image = read_image(_write(src, tmp_path / name), subject="c1", sequence="t1")
    assert image.GetPixelID() == sitk.sitkFloat32
    assert image.GetSize() == (12, 12, 10)
    assert image.GetSpacing() == pytest.approx((1.0, 1.0, 1.5))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(src))


def test_truncated_nii_gz_is_an_error(tmp_path: Path) -> None:
    data = _write(volume(), tmp_path / "full.nii.gz").read_bytes()
    cut = tmp_path / "t1ce.nii.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt gzip") as err:
        read_image(cut, subject="BraTS_007", sequence="t1ce")
    assert err.value.subject == "BraTS_007" and err.value.source == str(cut)
    assert "sequence t1ce" in str(err.value) and "case BraTS_007" in str(err.value)


def test_truncated_uncompressed_nii_reports_found_vs_expected_bytes(tmp_path: Path) -> None:
    data = _write(volume(), tmp_path / "full.nii").read_bytes()
    cut = tmp_path / "t2.nii"
    cut.write_bytes(data[:-100])
    with pytest.raises(ImageError, match=rf"truncated NIfTI: found {len(data) - 100} bytes, header .* needs {len(data)}"):
        read_image(cut, sequence="t2")


@pytest.mark.parametrize("payload, found", [(b"this is not an image at all" * 40, "unknown"),
                                             (gzip.compress(b"<html>not an image</html>" * 40), "unknown")])
def test_non_image_bytes_are_an_error(tmp_path: Path, payload: bytes, found: str) -> None:
    path = tmp_path / "flair.nii.gz"
    path.write_bytes(payload)
    with pytest.raises(ImageError, match=f"not a NIfTI image: found {found} content"):
        read_image(path, sequence="flair")


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="unsupported file type 'scan.mha'"):
        read_image(_write(volume(), tmp_path / "scan.mha"))
    with pytest.raises(ImageError, match="file not found"):
        read_image(tmp_path / "absent.nii.gz", sequence="t1")


def test_2d_images_are_rejected(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), tmp_path / "slice.nii.gz")
    with pytest.raises(ImageError, match=r"found a 2D image of size \(8, 8\), expected a 3D volume"):
        read_image(tmp_path / "slice.nii.gz")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 1), np.float32), np.eye(4)),
             tmp_path / "one_slice.nii.gz")
    with pytest.raises(ImageError, match=r"found size \(8, 8, 1\), expected at least 4 voxels"):
        read_image(tmp_path / "one_slice.nii.gz")


def test_4d_singleton_is_squeezed_and_multi_volume_rejected(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((8, 9, 10, 1), np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "single.nii.gz")
    image = read_image(tmp_path / "single.nii.gz")
    assert image.GetDimension() == 3 and image.GetSize() == (8, 9, 10)
    nib.save(nib.Nifti1Image(np.repeat(data, 3, axis=3), np.eye(4)), tmp_path / "dwi.nii.gz")
    with pytest.raises(ImageError, match=r"found a 4D image of size \(8, 9, 10, 3\), expected one 3D volume"):
        read_image(tmp_path / "dwi.nii.gz", sequence="t2")


def test_nan_and_inf_voxels_are_counted(tmp_path: Path) -> None:
    array = sitk.GetArrayFromImage(volume())
    array[0, 0, :3] = np.nan
    array[1, 1, 1] = np.inf
    bad = sitk.GetImageFromArray(array)
    with pytest.raises(ImageError, match=r"found 4 non-finite voxels \(NaN/Inf\) of 1440"):
        read_image(_write(bad, tmp_path / "t1.nii.gz"), sequence="t1")


def test_all_zero_and_constant_images_are_rejected(tmp_path: Path) -> None:
    zero = sitk.Image(12, 12, 10, sitk.sitkFloat32)
    with pytest.raises(ImageError, match=r"sequence flair: found an all-zero \(empty\) image"):
        read_image(_write(zero, tmp_path / "flair.nii.gz"), sequence="flair")
    with pytest.raises(ImageError, match=r"constant image \(every voxel 7\)"):
        read_image(_write(zero + 7, tmp_path / "t1.nii.gz"), sequence="t1")


def test_insane_spacing_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"voxel spacing \(1.0, 1.0, 25.0\) mm, expected every spacing in"):
        read_image(_write(volume(spacing=(1.0, 1.0, 25.0)), tmp_path / "t2.nii.gz"))


def test_read_image_bytes_nifti_and_gzip(tmp_path: Path) -> None:
    plain = _write(volume(), tmp_path / "a.nii").read_bytes()
    packed = _write(volume(), tmp_path / "a.nii.gz").read_bytes()
    assert sniff_format(plain) == "nifti1" and sniff_format(packed) == "gzip"
    for data in (plain, packed):
        image = read_image_bytes(data, sequence="t1ce", subject="upload")
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(volume()))


def test_nifti2_bytes_keep_the_geometry_of_the_same_nifti1(tmp_path: Path) -> None:
    """SimpleITK cannot read NIfTI-2: the nibabel path must give what ITK gives for the same NIfTI-1."""
    data = np.random.default_rng(1).random((6, 7, 8), np.float32) + 1
    affine = _oblique_affine()
    nib.save(nib.Nifti2Image(data, affine), tmp_path / "n2.nii")
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "n1.nii")
    raw = (tmp_path / "n2.nii").read_bytes()
    assert sniff_format(raw) == "nifti2"
    image, reference = read_image_bytes(raw, sequence="t2"), sitk.ReadImage(str(tmp_path / "n1.nii"))
    assert image.GetSize() == reference.GetSize() == (6, 7, 8)
    assert image.GetSpacing() == pytest.approx(reference.GetSpacing(), abs=1e-5)
    assert image.GetDirection() == pytest.approx(reference.GetDirection(), abs=1e-5)
    assert image.GetOrigin() == pytest.approx(reference.GetOrigin(), abs=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))


def test_read_image_bytes_rejects_truncated_gzip_and_junk(tmp_path: Path) -> None:
    packed = _write(volume(), tmp_path / "a.nii.gz").read_bytes()
    with pytest.raises(ImageError, match="truncated or corrupt gzip") as err:
        read_image_bytes(packed[: len(packed) * 2 // 3], sequence="flair", subject="req-1")
    assert err.value.source == "<upload flair>" and err.value.subject == "req-1"
    with pytest.raises(ImageError, match=r"not a NIfTI or DICOM zip upload: found unknown content"):
        read_image_bytes(b"GIF89a" + bytes(600), sequence="t1")
    with pytest.raises(ImageError, match="upload is 3000 bytes, limit 1000"):
        read_image_bytes(bytes(3000), sequence="t1", max_bytes=1000)


def _oblique_affine() -> np.ndarray:
    """A RAS affine with a rotation, a flipped axis and anisotropic voxels."""
    rotation = np.asarray(sitk.VersorTransform((0.0, 0.0, 1.0), 0.3).GetMatrix()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = rotation @ np.diag([1.2, -0.9, 2.0]), (10.0, -20.0, 30.0)
    return affine


def test_nifti_orientation_matches_simpleitk_and_ras_to_lps(tmp_path: Path) -> None:
    """An oblique, flipped RAS affine: same LPS geometry as SimpleITK's reader, and x, y negated vs RAS."""
    affine = _oblique_affine()
    data = np.random.default_rng(3).random((7, 8, 9), np.float32) + 1
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "oblique.nii.gz")
    reference = sitk.ReadImage(str(tmp_path / "oblique.nii.gz"))
    for image in (read_image(tmp_path / "oblique.nii.gz"),
                  read_image_bytes((tmp_path / "oblique.nii.gz").read_bytes(), sequence="t1")):
        assert image.GetOrigin() == pytest.approx(reference.GetOrigin())
        assert image.GetDirection() == pytest.approx(reference.GetDirection())
        assert image.GetSpacing() == pytest.approx(reference.GetSpacing())
        index = (2, 5, 7)
        ras = affine @ np.array([*index, 1.0])
        lps = image.TransformIndexToPhysicalPoint(index)
        assert lps == pytest.approx((-ras[0], -ras[1], ras[2]))
        assert image[index] == pytest.approx(float(data[index]))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))


def test_scaled_big_endian_int16_matches_simpleitk(tmp_path: Path) -> None:
    """scl_slope/scl_inter and byte order are applied exactly as ITK applies them."""
    data = np.random.default_rng(5).integers(-300, 3000, (9, 8, 7)).astype(">i2")
    img = nib.Nifti1Image(data, _oblique_affine())
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    image, reference = read_image(tmp_path / "scaled.nii.gz"), sitk.ReadImage(str(tmp_path / "scaled.nii.gz"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference), rtol=1e-6)
    assert sitk.GetArrayFromImage(image)[1, 2, 3] == pytest.approx(0.5 * data[3, 2, 1] + 10.0)
    assert image.GetDirection() == pytest.approx(reference.GetDirection())


def test_physical_extent_and_fov_mismatch_names_both_sequences() -> None:
    images = {"t1ce": volume(), "t1": volume(spacing=(1.1, 1.0, 1.5)), "flair": volume(spacing=(0.1, 0.1, 0.1))}
    assert physical_extent(images["t1ce"]) == pytest.approx([12, 12, 15])
    with pytest.raises(ImageError, match=r"t1ce 12x12x15 mm vs flair 1x1x1 mm \(relative difference 0.9\d > "
                                         r"tolerance 0.25\)") as err:
        check_same_extent(images, 0.25, subject="c9")
    assert "vs t1 " not in str(err.value) and err.value.subject == "c9"
    check_same_extent({"t1ce": images["t1ce"], "t1": images["t1"]}, 0.25)


def test_read_segmentation_keeps_integer_labels(tmp_path: Path) -> None:
    seg = read_segmentation(_write(segmentation(), tmp_path / "seg.nii.gz"), subject="c1")
    assert seg.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(seg))) == {0, 1, 2, 4}
    with pytest.raises(ImageError, match="labels outside the integers 0-255"):
        read_segmentation(_write(volume(), tmp_path / "bad_seg.nii.gz"))


@pytest.mark.parametrize("description, expected", [
    ("AX T1 POST GAD", "t1ce"), ("T1+C", "t1ce"), ("T1 C+", "t1ce"), ("t1ce", "t1ce"), ("BraTS T1Gd", "t1ce"),
    ("SAG MPRAGE POST", "t1ce"), ("T1_CE", "t1ce"), ("t1c", "t1ce"),
    ("T1 MPRAGE", "t1"), ("AX T1 PRE", "t1"), ("3D T1 SPGR", "t1"), ("t1n", "t1"), ("T1 FLAIR", "t1"),
    ("AX FLAIR", "flair"), ("T2_FLAIR_3D", "flair"), ("t2f", "flair"),
    ("AX T2 FSE", "t2"), ("T2W_TSE", "t2"), ("t2w", "t2"),
    ("T2*", None), ("AX DWI b1000", None), ("ADC", None), ("Localizer", None), ("", None), ("SURVEY", None),
])
def test_series_description_rules(description: str, expected: str | None) -> None:
    assert map_series_to_sequence(description) == expected


def test_series_overrides_win_and_accept_globs() -> None:
    assert map_series_to_sequence("Series 7 weird", {"t1ce": "series 7*"}) == "t1ce"
    assert map_series_to_sequence("ax_t1_post", {"t1": "AX T1 POST"}) == "t1"
    assert map_series_to_sequence("AX T1 POST", {"flair": ["nothing", "else"]}) == "t1ce"
    assert map_series_to_sequence("AX T1 POST", {"t1ce": "AX T1 POST 3D"}) is None  # t1ce is pinned
