"""DICOM series folders and DICOM zips: geometry, series choice, broken slices, unsafe archives."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from ingest_fixtures import FAKE_PATIENT_ID, FAKE_PATIENT_NAME, SERIES_DESCRIPTIONS, volume, write_dicom_case

from gliomagrade.dicomio import write_series
from gliomagrade.errors import ImageError, InputError
from gliomagrade.imageio import read_dicom_zip, read_image, read_image_bytes


def _zip(files: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _zip_dir(root: Path) -> bytes:
    return _zip({str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.dcm"))})


def _no_identifiers(text: str) -> None:
    assert FAKE_PATIENT_NAME not in text and "Doe" not in text and FAKE_PATIENT_ID not in text


def test_series_folder_reads_with_its_geometry(tmp_path: Path) -> None:
    source = volume((10, 9, 6), spacing=(0.9, 1.1, 2.0), seed=4)
    source.SetDirection(sitk.VersorTransform((0.0, 0.0, 1.0), 0.2).GetMatrix())
    write_series(source, tmp_path / "t1ce", series_description="AX T1 POST", series_number=3,
                 patient_id=FAKE_PATIENT_ID, patient_name=FAKE_PATIENT_NAME)
    image = read_image(tmp_path / "t1ce", subject="case01", sequence="t1ce")
    assert image.GetSize() == source.GetSize() and image.GetPixelID() == sitk.sitkFloat32
    assert image.GetOrigin() == pytest.approx(source.GetOrigin(), abs=1e-4)
    assert image.GetDirection() == pytest.approx(source.GetDirection(), abs=1e-5)
    assert image.GetSpacing() == pytest.approx(source.GetSpacing(), abs=1e-5)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(source), atol=0.01)


def test_folder_with_several_series_is_chosen_by_sequence(tmp_path: Path) -> None:
    for number, (seq, description) in enumerate(SERIES_DESCRIPTIONS.items(), start=1):
        write_series(volume((10, 10, 6), seed=number), tmp_path / "flat", series_description=description,
                     series_number=number, patient_id=FAKE_PATIENT_ID, patient_name=FAKE_PATIENT_NAME)
        (tmp_path / "flat").joinpath("IM0001.dcm").rename(tmp_path / "flat" / f"{seq}_0001.dcm")
        for k in range(2, 7):
            (tmp_path / "flat" / f"IM{k:04d}.dcm").rename(tmp_path / "flat" / f"{seq}_{k:04d}.dcm")
    image = read_image(tmp_path / "flat", sequence="t2")
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(volume((10, 10, 6), seed=3)),
                               atol=0.01)
    with pytest.raises(ImageError, match=r"directory holds 4 series \(no sequence given to choose one\): "
                                         r"series 1 'AX T1 SE' -> t1; series 2 'AX T1 POST GAD' -> t1ce") as err:
        read_image(tmp_path / "flat", subject="case01")
    _no_identifiers(str(err.value))
    assert read_image(tmp_path / "flat", sequence="t1", sequence_map={"t1": "AX T2 FSE"}).GetSize() == (10, 10, 6)


def test_slice_with_truncated_pixels_names_series_and_file(tmp_path: Path) -> None:
    paths = write_series(volume((10, 10, 6)), tmp_path / "t2", series_description="AX T2 FSE", series_number=4,
                         patient_id=FAKE_PATIENT_ID, patient_name=FAKE_PATIENT_NAME)
    paths[2].write_bytes(paths[2].read_bytes()[:-60])
    with pytest.raises(ImageError, match=r"series 4 'AX T2 FSE': unreadable slice IM0003.dcm: found 140 bytes "
                                         r"of pixel data, expected 200") as err:
        read_image(tmp_path / "t2", subject="case01", sequence="t2")
    _no_identifiers(str(err.value))


def test_garbage_file_in_series_folder_is_named(tmp_path: Path) -> None:
    paths = write_series(volume((10, 10, 6)), tmp_path / "t2", series_description="AX T2 FSE", series_number=4,
                         patient_id=FAKE_PATIENT_ID, patient_name=FAKE_PATIENT_NAME)
    paths[5].write_bytes(b"\x00garbage" * 40)
    with pytest.raises(ImageError, match=r"1 file\(s\) are not readable DICOM: IM0006.dcm"):
        read_image(tmp_path / "t2", sequence="t2")


def test_missing_slice_is_not_read_silently(tmp_path: Path) -> None:
    paths = write_series(volume((10, 10, 8)), tmp_path / "t1", series_description="AX T1", series_number=2,
                         patient_id=FAKE_PATIENT_ID, patient_name=FAKE_PATIENT_NAME)
    paths[4].unlink()
    with pytest.raises(ImageError, match=r"series 2 'AX T1': 7 slices with non-uniform spacing between 1.5 and 3 mm"):
        read_image(tmp_path / "t1", sequence="t1")


def test_dicom_zip_maps_series_and_reports_unmapped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_dicom_case(tmp_path / "case", extra={"dwi": "AX DWI b1000"})
    caplog.set_level("DEBUG")
    images = read_dicom_zip(_zip_dir(tmp_path / "case"), subject="req-7")
    assert sorted(images) == ["flair", "t1", "t1ce", "t2"]
    np.testing.assert_allclose(sitk.GetArrayFromImage(images["t1ce"]),
                               sitk.GetArrayFromImage(volume((10, 10, 6), seed=2)), atol=0.01)
    assert "series 5 'AX DWI b1000'" in caplog.text
    _no_identifiers(caplog.text)


def test_dicom_zip_missing_sequence_lists_what_was_found(tmp_path: Path) -> None:
    write_dicom_case(tmp_path / "case", descriptions={"t1": "AX T1 SE", "t1ce": "AX T1 POST", "x": "Mystery 7"})
    with pytest.raises(InputError, match=r"no series for t2, flair; found t1 = series 1 'AX T1 SE'; t1ce = "
                                         r"series 2 'AX T1 POST'; unmapped: series 3 'Mystery 7'"):
        read_dicom_zip(_zip_dir(tmp_path / "case"))
    images = read_dicom_zip(_zip_dir(tmp_path / "case"), sequence_map={"t2": "mystery*"}, required=("t1ce", "t2"))
    assert sorted(images) == ["t1", "t1ce", "t2"]


def test_read_image_bytes_accepts_a_dicom_zip(tmp_path: Path) -> None:
    write_dicom_case(tmp_path / "case")
    image = read_image_bytes(_zip_dir(tmp_path / "case"), sequence="flair")
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(volume((10, 10, 6), seed=4)),
                               atol=0.01)


def test_unreadable_slice_in_zip_names_the_member(tmp_path: Path) -> None:
    paths = write_dicom_case(tmp_path / "case")
    (paths["t1"] / "IM0002.dcm").write_bytes(b"not dicom" * 30)
    with pytest.raises(ImageError, match=r"not readable DICOM: t1/IM0002.dcm"):
        read_dicom_zip(_zip_dir(tmp_path / "case"))
    slice_ = paths["t1"] / "IM0002.dcm"
    write_series(volume((10, 10, 6), seed=1), paths["t1"], series_description="AX T1 SE", series_number=1,
                 patient_id=FAKE_PATIENT_ID, patient_name=FAKE_PATIENT_NAME)
    slice_.write_bytes(slice_.read_bytes()[:-40])
    with pytest.raises(ImageError, match=r"sequence t1: series 1 'AX T1 SE': unreadable slice t1/IM0002.dcm: found"):
        read_dicom_zip(_zip_dir(tmp_path / "case"))


@pytest.mark.parametrize("name", ["../evil.dcm", "series/../../evil.dcm", "/etc/evil.dcm", "C:/evil.dcm"])
def test_zip_path_traversal_is_refused(name: str) -> None:
    with pytest.raises(InputError, match=r"absolute or parent \('..'\) path \(path traversal\)"):
        read_dicom_zip(_zip({"ok.dcm": b"x", name: b"x"}))


def test_zip_symlink_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        link = zipfile.ZipInfo("series/link.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(InputError, match="'series/link.dcm' is a symbolic link"):
        read_dicom_zip(buf.getvalue())


def test_zip_member_count_size_and_ratio_limits() -> None:
    with pytest.raises(InputError, match="zip has 5 members, limit 4"):
        read_dicom_zip(_zip({f"f{i}.dcm": b"x" for i in range(5)}), max_members=4)
    with pytest.raises(InputError, match="uncompressed size exceeds the limit of 1000 bytes"):
        read_dicom_zip(_zip({"a.dcm": bytes(600), "b.dcm": bytes(600)}), max_total_bytes=1000)
    bomb = _zip({"bomb.dcm": bytes(5_000_000)}, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(InputError, match=r"'bomb.dcm' compression ratio \d+ exceeds 200 \(zip bomb\?\)"):
        read_dicom_zip(bomb)


def test_zip_that_lies_about_its_sizes_is_stopped_while_extracting() -> None:
    """Forged sizes (small declared size) must not let a member inflate: extraction stops and fails its CRC."""
    data = bytearray(_zip({"a.dcm": bytes(range(256)) * 40}, compression=zipfile.ZIP_DEFLATED))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("a.dcm")
    forged = (100).to_bytes(4, "little")
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = forged  # uncompressed size in the central directory
    data[info.header_offset + 22:info.header_offset + 26] = forged  # and in the local header
    with pytest.raises(InputError, match=r"corrupt zip archive \(Bad CRC-32 for file 'a.dcm'\)"):
        read_dicom_zip(bytes(data), max_ratio=1e9)


def test_not_a_zip() -> None:
    with pytest.raises(InputError, match="not a readable zip archive"):
        read_dicom_zip(b"PK\x03\x04 but nothing else")
