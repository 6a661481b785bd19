"""Write a 3D SimpleITK image as a DICOM MR series (one file per slice) with exact geometry.

Used by the synthetic cohort generator (``dicom`` layout) and by reader tests as a fixture. Every
slice carries ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness and
SpacingBetweenSlices, so any DICOM reader (SimpleITK's ``ImageSeriesReader`` included) rebuilds the
same physical space. Voxels are stored as int16 with one RescaleSlope/RescaleIntercept for the whole
series: float images are quantised to 65,535 levels between their min and max (error <= slope/2).

DICOM and ITK share the LPS patient frame, so the image direction is written unchanged. A left-handed
image (direction determinant -1) cannot be expressed as slices along +normal, so its slice axis is
reversed first: the written series covers the same voxels in space, with origin/direction of the
flipped image.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gliomagrade.errors import ImageError

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_SOP_CLASS = {"MR": MR_IMAGE_STORAGE, "CT": CT_IMAGE_STORAGE}
_INT16_HALF_RANGE = 32767


def _ds(value: float) -> str:
    """Format a number as a DICOM Decimal String (at most 16 characters), as precisely as fits."""
    for digits in range(12, 4, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot format {value!r} as a DICOM decimal string")


def int16_scaling(array: np.ndarray) -> tuple[float, float]:
    """Pick (slope, intercept) so that ``array`` maps onto int16 stored values without clipping."""
    vmin, vmax = float(array.min()), float(array.max())
    is_integral = np.issubdtype(array.dtype, np.integer) or bool(np.all(np.mod(array, 1) == 0))
    if is_integral and vmin >= -32768 and vmax <= _INT16_HALF_RANGE:
        return 1.0, 0.0
    intercept = float(_ds((vmax + vmin) / 2.0))
    span = max(vmax - intercept, intercept - vmin)
    slope = float(_ds(span / (_INT16_HALF_RANGE - 1))) if span > 0 else 1.0
    # the decimal-string rounding may shrink the slope a hair: widen until nothing clips
    while max(vmax - intercept, intercept - vmin) / slope > _INT16_HALF_RANGE:
        slope = float(_ds(slope * 1.0001))
    return slope, intercept


def _right_handed(image: sitk.Image) -> sitk.Image:
    """Return the image with its slice axis reversed when the direction is left-handed."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    if np.linalg.det(direction) > 0:
        return image
    return sitk.Flip(image, [False, False, True])


def write_series(
    image: sitk.Image,
    out_dir: Path,
    *,
    series_description: str,
    series_number: int,
    patient_id: str,
    patient_name: str,
    study_uid: str | None = None,
    modality: str = "MR",
) -> list[Path]:
    """Write ``image`` as one DICOM file per slice (IM0001.dcm...) into ``out_dir``; return the file paths.

    Files of the same names are overwritten; other files in ``out_dir`` are left alone.
    """
    out_dir = Path(out_dir)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(
            f"write_series needs a scalar 3D image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)",
            source=str(out_dir),
        )
    if modality not in _SOP_CLASS:
        raise ValueError(f"modality must be one of {sorted(_SOP_CLASS)}, got {modality!r}")
    image = _right_handed(image)
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    if not np.all(np.isfinite(array)):
        raise ImageError("image has non-finite voxels; cannot write DICOM", source=str(out_dir))
    slope, intercept = int16_scaling(array)
    stored = np.clip(np.rint((array.astype(np.float64) - intercept) / slope), -32768, _INT16_HALF_RANGE)
    stored = stored.astype("<i2")

    out_dir.mkdir(parents=True, exist_ok=True)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    now = _dt.datetime.now(_dt.timezone.utc)
    common = {
        "modality": modality,
        "study_uid": study_uid,
        "series_uid": series_uid,
        "frame_uid": frame_uid,
        "date": now.strftime("%Y%m%d"),
        "time": now.strftime("%H%M%S"),
        "series_description": series_description,
        "series_number": int(series_number),
        "patient_id": patient_id,
        "patient_name": patient_name,
        "iop": [_ds(v) for v in (*direction[:, 0], *direction[:, 1])],
        "pixel_spacing": [_ds(spacing[1]), _ds(spacing[0])],  # row spacing (y), column spacing (x)
        "thickness": _ds(spacing[2]),
        "slope": _ds(slope),
        "intercept": _ds(intercept),
    }
    paths = []
    for k in range(stored.shape[0]):
        position = origin + direction[:, 2] * spacing[2] * k
        location = _ds(float(position @ direction[:, 2]))
        ds = _slice_dataset(stored[k], k, [_ds(v) for v in position], location, common)
        path = out_dir / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _slice_dataset(
    pixels: np.ndarray, index: int, position: list[str], location: str, c: dict
) -> FileDataset:
    """Build the dataset of one slice (pixels int16, 0-based ``index``; ``location`` along the normal)."""
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASS[c["modality"]]
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = c["study_uid"]
    ds.SeriesInstanceUID = c["series_uid"]
    ds.FrameOfReferenceUID = c["frame_uid"]
    ds.Modality = c["modality"]
    ds.PatientID = c["patient_id"]
    ds.PatientName = c["patient_name"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = c["date"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = c["time"]
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.SeriesDescription = c["series_description"]
    ds.ProtocolName = c["series_description"]
    ds.SeriesNumber = c["series_number"]
    ds.InstanceNumber = index + 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ImagePositionPatient = position
    ds.ImageOrientationPatient = c["iop"]
    ds.PixelSpacing = c["pixel_spacing"]
    ds.SliceThickness = c["thickness"]
    ds.SpacingBetweenSlices = c["thickness"]
    ds.SliceLocation = location
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = c["slope"]
    ds.RescaleIntercept = c["intercept"]
    ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds
