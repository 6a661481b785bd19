"""Read and validate MRI volumes: NIfTI files, DICOM series folders, uploaded bytes and DICOM zips.

Every reader returns a float32 3D ``sitk.Image`` in ITK's LPS frame (ITK's header reader converts
NIfTI's RAS affine) or raises ``ImageError`` naming the subject, sequence and file, with found vs expected.
ITK's NIfTI reader silently zero-fills a truncated file and replaces NaN/Inf by 0, so NIfTI voxels are
decoded here from the raw bytes (checked against the header) and only the geometry comes from ITK.
DICOM slices are grouped and ordered from their own headers (pydicom) rather than GDCM's series
scanner, which skips an unreadable slice without a word. Nothing here logs or raises DICOM identifiers
(PatientName, PatientID, dates, UIDs): series are named by number and description only.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from gliomagrade.constants import REFERENCE_SEQUENCE, SEQUENCES
from gliomagrade.errors import ImageError, InputError

logger = logging.getLogger(__name__)

MIN_AXIS_VOXELS = 4
"""Fewer voxels than this along an axis is a slice or a line, not a 3D volume."""
MAX_AXIS_VOXELS = 2048
MAX_VOXELS = 512**3
"""Largest volume accepted (512 MiB as float32); guards memory against forged headers."""
MAX_SPACING_MM = 20.0
MAX_IMAGE_BYTES = 1 << 30
"""Largest upload accepted by ``read_image_bytes``."""
ZIP_MAX_MEMBERS = 10_000
ZIP_MAX_TOTAL_BYTES = 2 << 30
ZIP_MAX_RATIO = 200.0
"""Largest uncompressed/compressed ratio of a zip member; DICOM rarely exceeds 20, zip bombs exceed 1000."""

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_NIFTI1_MAGIC = (b"n+1\x00", b"ni1\x00")
_NIFTI2_MAGIC = (b"n+2\x00\r\n\x1a\n", b"ni2\x00\r\n\x1a\n")
_CHUNK = 1 << 20
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_ZIP_JUNK = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$)")


def _where(sequence: str | None) -> str:
    """Short 'sequence t1ce: ' prefix for messages (the subject is carried by the error itself)."""
    return f"sequence {sequence}: " if sequence else ""


# --------------------------------------------------------------------------------------------- NIfTI
def sniff_format(head: bytes) -> str:
    """Name the format of a file from its first bytes: 'gzip', 'zip', 'nifti1', 'nifti2' or 'unknown'."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if len(head) >= 348 and head[344:348] in _NIFTI1_MAGIC:
        sizeof_hdr = int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")
        if 348 in sizeof_hdr:
            return "nifti1"
    if len(head) >= 12 and head[4:12] in _NIFTI2_MAGIC:
        return "nifti2"
    return "unknown"


def _nifti_header(head: bytes, kind: str, source: str, subject: str | None, sequence: str | None):
    """Parse the NIfTI-1/2 header with nibabel; reject single-file headers that point elsewhere."""
    header_cls = nib.Nifti1Header if kind == "nifti1" else nib.Nifti2Header
    try:
        header = header_cls.from_fileobj(io.BytesIO(head), check=False)
    except Exception as exc:  # noqa: BLE001 - nibabel raises several types for a bad header
        raise ImageError(f"{_where(sequence)}unreadable NIfTI header ({exc})",
                         subject=subject, source=source) from exc
    if header["magic"].item() in (b"ni1", b"ni2"):
        raise ImageError(f"{_where(sequence)}NIfTI header/image pair (.hdr/.img) is not supported; "
                         "expected a single-file .nii or .nii.gz", subject=subject, source=source)
    return header


def _data_offset(header, kind: str) -> int:
    """Byte offset of the voxels in a single-file NIfTI (352/544 at least, whatever the header says)."""
    return max(int(header.get_data_offset()), 352 if kind == "nifti1" else 544)


def _gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress gzip member(s) in C (CRC and length checked by zlib), at most ``limit`` bytes.

    Raises EOFError when a member ends early (truncated) and _TooLarge past ``limit`` (a gzip bomb).
    """
    out, tail = [], raw
    size = 0
    while tail.startswith(_GZIP_MAGIC):
        stream = zlib.decompressobj(wbits=31)
        chunk = stream.decompress(tail, limit - size + 1)
        size += len(chunk)
        out.append(chunk)
        if size > limit:
            raise _TooLarge(size)
        if not stream.eof:
            raise EOFError(f"compressed stream ended after {size} bytes, before its end-of-stream marker")
        tail = stream.unused_data
    return b"".join(out)


class _TooLarge(Exception):
    """A file decompressed past the size its header allows."""


def _nifti_expected_bytes(header, kind: str) -> int:
    """Bytes a complete single-file NIfTI holds: data offset plus every voxel."""
    n_voxels = int(np.prod(header.get_data_shape(), dtype=np.int64))
    return _data_offset(header, kind) + n_voxels * header.get_data_dtype().itemsize


def _load_nifti_bytes(path: Path, subject: str | None, sequence: str | None):
    """Parse a NIfTI file's header and return (kind, header, bytes), gunzipped and checked complete."""
    source = str(path)
    raw = path.read_bytes()
    compressed = raw.startswith(_GZIP_MAGIC)
    try:
        head = zlib.decompressobj(wbits=31).decompress(raw, 544) if compressed else raw[:544]
        kind = sniff_format(head)
        if kind not in ("nifti1", "nifti2"):
            raise ImageError(f"{_where(sequence)}not a NIfTI image: found {kind} content (first bytes "
                             f"{head[:8]!r}); expected a NIfTI-1/2 header, optionally gzipped",
                             subject=subject, source=source)
        header = _nifti_header(head, kind, source, subject, sequence)
        _check_header_size(header.get_data_shape(), source, subject, sequence)
        expected = _nifti_expected_bytes(header, kind)
        data = _gunzip(raw, limit=expected + _CHUNK) if compressed else raw
    except (EOFError, zlib.error) as exc:
        raise ImageError(f"{_where(sequence)}truncated or corrupt gzip stream ({exc})",
                         subject=subject, source=source) from exc
    except _TooLarge as exc:
        raise ImageError(f"{_where(sequence)}decompresses past {exc} bytes, far more than its header declares "
                         f"({expected}; corrupt, or a gzip bomb)", subject=subject, source=source) from exc
    if len(data) < expected:
        raise ImageError(f"{_where(sequence)}truncated NIfTI: found {len(data)} bytes, header "
                         f"{header.get_data_shape()} {header.get_data_dtype()} needs {expected}",
                         subject=subject, source=source)
    return kind, header, data


def _check_header_size(shape: Sequence[int], source: str, subject: str | None, sequence: str | None) -> None:
    """Refuse absurd sizes before any voxel is loaded (a forged header must not exhaust memory)."""
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 0
    if n > MAX_VOXELS or any(d > MAX_AXIS_VOXELS for d in shape):
        raise ImageError(f"{_where(sequence)}image size {tuple(shape)} exceeds the limits "
                         f"({MAX_AXIS_VOXELS} per axis, {MAX_VOXELS} voxels)", subject=subject, source=source)


def _read_nifti(path: Path, subject: str | None, sequence: str | None, *, as_float: bool = True) -> sitk.Image:
    """Read a NIfTI file in one pass: voxels decoded here, geometry (RAS -> LPS) from ITK's header reader.

    ITK's NIfTI reader silently zero-fills a truncated file and replaces NaN/Inf by 0, so the voxels are
    decoded from the raw bytes (checked complete and finite) and only the geometry is taken from ITK.
    SimpleITK 2.5 cannot read NIfTI-2 headers: their geometry comes from nibabel's affine.
    """
    source = str(path)
    kind, header, data = _load_nifti_bytes(path, subject, sequence)
    shape = tuple(int(d) for d in header.get_data_shape())
    dtype = header.get_data_dtype()
    voxels = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=_data_offset(header, kind))
    if dtype.kind in "fc":
        n_bad = int(voxels.size - np.count_nonzero(np.isfinite(voxels)))
        if n_bad:
            raise ImageError(f"{_where(sequence)}found {n_bad} non-finite voxels (NaN/Inf) of {voxels.size}, "
                             "expected all finite", subject=subject, source=source)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ImageError(f"{_where(sequence)}found a {len(shape)}D image of size {shape}, expected "
                         + ("one 3D volume (a 4th dimension of 1 is accepted)" if len(shape) > 3 else "a 3D volume"),
                         subject=subject, source=source)
    array = _scaled(voxels, header, as_float)
    image = sitk.GetImageFromArray(array.reshape(shape[::-1]))  # NIfTI stores x fastest, as ITK does
    origin, spacing, direction = (_itk_geometry(path, sequence, subject) if kind == "nifti1"
                                  else _nibabel_geometry(header, sequence, subject, source))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def _scaled(voxels: np.ndarray, header, as_float: bool) -> np.ndarray:
    """Apply scl_slope/scl_inter (float32, in place); keep the stored type when unscaled and not ``as_float``."""
    slope, inter = header.get_slope_inter()
    slope = None if slope is None or slope == 1.0 else np.float32(slope)
    inter = None if inter is None or inter == 0.0 else np.float32(inter)
    if not as_float and slope is None and inter is None:
        return voxels
    array = voxels.astype(np.float32)
    if slope is not None:
        array *= slope
    if inter is not None:
        array += inter
    return array


def _itk_geometry(path: Path, sequence: str | None, subject: str | None):
    """Origin, spacing and direction (LPS) of a NIfTI-1 file as ITK reads its header."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("NiftiImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageError(f"{_where(sequence)}SimpleITK could not read the NIfTI header ({_itk_reason(exc)})",
                         subject=subject, source=str(path)) from exc
    dim = reader.GetDimension()
    direction = np.asarray(reader.GetDirection()).reshape(dim, dim)[:3, :3]
    return reader.GetOrigin()[:3], reader.GetSpacing()[:3], tuple(direction.flatten())


def _nibabel_geometry(header, sequence: str | None, subject: str | None, source: str):
    """Origin, spacing and direction (LPS) from nibabel's affine: LPS = diag(-1, -1, 1) @ RAS."""
    lps = np.diag([-1.0, -1.0, 1.0]) @ header.get_best_affine()[:3, :4]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    direction = lps[:, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ImageError(f"{_where(sequence)}NIfTI affine has shear; expected orthogonal axes",
                         subject=subject, source=source)
    return tuple(lps[:, 3]), tuple(spacing), tuple(direction.flatten())


def _itk_reason(exc: Exception) -> str:
    """The last meaningful line of an ITK exception (drop the C++ file/line noise)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------- validation
def _squeeze_to_3d(image: sitk.Image, source: str, subject: str | None, sequence: str | None) -> sitk.Image:
    """Drop trailing singleton dimensions (4D with one volume); refuse 2D, multi-volume and vector images."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(f"{_where(sequence)}found {image.GetNumberOfComponentsPerPixel()} components "
                         "per voxel, expected a scalar image", subject=subject, source=source)
    size = list(image.GetSize())
    if len(size) > 3:
        if any(d != 1 for d in size[3:]):
            raise ImageError(f"{_where(sequence)}found a {len(size)}D image of size {tuple(size)}, "
                             "expected one 3D volume (a 4th dimension of 1 is accepted)",
                             subject=subject, source=source)
        image = sitk.Extract(image, [*size[:3], *([0] * (len(size) - 3))], [0] * len(size))
    if image.GetDimension() != 3:
        raise ImageError(f"{_where(sequence)}found a {image.GetDimension()}D image of size "
                         f"{image.GetSize()}, expected a 3D volume", subject=subject, source=source)
    return image


def validate_volume(image: sitk.Image, *, source: str, subject: str | None = None,
                    sequence: str | None = None) -> sitk.Image:
    """Check a 3D image's size, spacing and voxels (finite, not constant); return it as float32."""
    image = _squeeze_to_3d(image, source, subject, sequence)
    size = image.GetSize()
    if min(size) < MIN_AXIS_VOXELS:
        raise ImageError(f"{_where(sequence)}found size {size}, expected at least {MIN_AXIS_VOXELS} "
                         "voxels along every axis (a 2D slice is not a volume)", subject=subject, source=source)
    _check_header_size(size, source, subject, sequence)
    spacing = image.GetSpacing()
    if not all(0 < s < MAX_SPACING_MM for s in spacing):
        raise ImageError(f"{_where(sequence)}found voxel spacing {tuple(round(s, 4) for s in spacing)} "
                         f"mm, expected every spacing in (0, {MAX_SPACING_MM}) mm", subject=subject, source=source)
    image = sitk.Cast(image, sitk.sitkFloat32)
    voxels = sitk.GetArrayViewFromImage(image)
    n_bad = int(voxels.size - np.count_nonzero(np.isfinite(voxels)))
    if n_bad:
        raise ImageError(f"{_where(sequence)}found {n_bad} non-finite voxels (NaN/Inf) of "
                         f"{voxels.size}, expected all finite", subject=subject, source=source)
    lo, hi = float(voxels.min()), float(voxels.max())
    if lo == hi:
        what = "an all-zero (empty) image" if lo == 0 else f"a constant image (every voxel {lo:g})"
        raise ImageError(f"{_where(sequence)}found {what}, expected varying intensities",
                         subject=subject, source=source)
    return image


def read_segmentation(path: str | Path, *, subject: str | None = None) -> sitk.Image:
    """Read a label map (.nii/.nii.gz): complete, 3D, non-negative integer labels; returned as uint8."""
    path = Path(path)
    if not path.is_file():
        raise ImageError("segmentation: file not found", subject=subject, source=str(path))
    image = _read_nifti(path, subject, "seg", as_float=False)
    labels = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)) or labels.min() < 0 \
            or labels.max() > 255:
        raise ImageError(f"segmentation: found labels outside the integers 0-255 (range {labels.min()} to "
                         f"{labels.max()})", subject=subject, source=str(path))
    return sitk.Cast(image, sitk.sitkUInt8)


def physical_extent(image: sitk.Image) -> np.ndarray:
    """Size in mm of the axis-aligned (LPS) box that holds every voxel of the image."""
    size = np.asarray(image.GetSize(), dtype=float)
    unit_corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, -1).T
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint((c * size - 0.5).tolist())
                        for c in unit_corners])
    return corners.max(axis=0) - corners.min(axis=0)


def check_same_extent(images: Mapping[str, sitk.Image], tolerance: float, subject: str | None = None) -> None:
    """Raise if a sequence's physical field of view differs from the reference's by more than ``tolerance``."""
    if len(images) < 2:
        return
    ref = REFERENCE_SEQUENCE if REFERENCE_SEQUENCE in images else next(iter(images))
    ref_extent = physical_extent(images[ref])
    problems = []
    for name, image in images.items():
        if name == ref:
            continue
        extent = physical_extent(image)
        rel = float(np.max(np.abs(extent - ref_extent) / np.maximum(np.maximum(extent, ref_extent), 1e-6)))
        if rel > tolerance:
            problems.append(f"{ref} {_mm(ref_extent)} vs {name} {_mm(extent)} (relative difference "
                            f"{rel:.2f} > tolerance {tolerance:g})")
    if problems:
        raise ImageError("sequences cover different fields of view: " + "; ".join(problems), subject=subject)


def _mm(extent: np.ndarray) -> str:
    return "x".join(f"{v:.0f}" for v in extent) + " mm"


# ------------------------------------------------------------------------------------ public readers
def read_image(path: str | Path, *, subject: str | None = None, sequence: str | None = None,
               sequence_map: Mapping[str, str | Sequence[str]] | None = None) -> sitk.Image:
    """Read and validate one sequence: a .nii/.nii.gz file or a DICOM series directory -> float32 3D."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{_where(sequence)}file not found", subject=subject, source=str(path))
    if path.is_dir():
        image = read_dicom_dir(path, subject=subject, sequence=sequence, sequence_map=sequence_map)
    elif path.name.lower().endswith(NIFTI_SUFFIXES):
        image = _read_nifti(path, subject, sequence)
    else:
        raise ImageError(f"{_where(sequence)}unsupported file type {path.name!r}, expected "
                         ".nii, .nii.gz or a DICOM series directory", subject=subject, source=str(path))
    return validate_volume(image, source=str(path), subject=subject, sequence=sequence)


def read_image_bytes(data: bytes, *, sequence: str, subject: str | None = None,
                     max_bytes: int = MAX_IMAGE_BYTES,
                     sequence_map: Mapping[str, str | Sequence[str]] | None = None) -> sitk.Image:
    """Read an uploaded volume (NIfTI-1/2, gzipped or not, or a DICOM zip) by its magic bytes, not a name."""
    source = f"<upload {sequence}>"
    if len(data) > max_bytes:
        raise ImageError(f"{_where(sequence)}upload is {len(data)} bytes, limit {max_bytes}",
                         subject=subject, source=source)
    kind = sniff_format(data[:544])
    if kind == "zip":
        images = read_dicom_zip(data, subject=subject, sequence_map=sequence_map, required=(sequence,))
        return images[sequence]
    if kind == "gzip":
        try:
            inner = sniff_format(zlib.decompressobj(wbits=31).decompress(data, 544))
        except zlib.error as exc:
            raise ImageError(f"{_where(sequence)}truncated or corrupt gzip stream ({exc})",
                             subject=subject, source=source) from exc
        kind = inner if inner in ("nifti1", "nifti2") else "gzip of " + inner
    if kind not in ("nifti1", "nifti2"):
        raise ImageError(f"{_where(sequence)}not a NIfTI or DICOM zip upload: found {kind} content "
                         f"(first bytes {data[:8]!r})", subject=subject, source=source)
    suffix = ".nii.gz" if data.startswith(_GZIP_MAGIC) else ".nii"
    with tempfile.TemporaryDirectory(prefix="glioma-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            image = _read_nifti(path, subject, sequence)
            return validate_volume(image, source=source, subject=subject, sequence=sequence)
        except ImageError as exc:
            raise ImageError(exc.reason, subject=subject, source=source) from exc


# ------------------------------------------------------------------------------------- DICOM series
@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found on disk: its slices in order along the slice normal, no identifiers."""

    uid: str
    """SeriesInstanceUID: used for grouping only, never logged or written."""
    number: int | None
    description: str
    protocol: str
    files: tuple[Path, ...]

    @property
    def label(self) -> str:
        """How the series is named in messages: number and description, nothing identifying."""
        return f"series {self.number if self.number is not None else '?'} {self.description or self.protocol!r}"

    def sequence(self, overrides: Mapping[str, str | Sequence[str]] | None = None) -> str | None:
        """The sequence this series holds, from SeriesDescription then ProtocolName."""
        for text in (self.description, self.protocol):
            if text and (found := map_series_to_sequence(text, overrides)):
                return found
        return None


def _header(path: Path) -> pydicom.Dataset | None:
    """Read a DICOM file's header (no pixels); None for files that are not DICOM images."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    if sop_class == _DICOMDIR_CLASS or "SeriesInstanceUID" not in ds:
        return None
    return ds


def scan_dicom(files: Iterable[Path], *, source: str, subject: str | None = None) -> list[DicomSeries]:
    """Group DICOM files into series by SeriesInstanceUID and order each along its slice normal."""
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    unreadable: list[str] = []
    for path in sorted(files):
        try:
            ds = _header(path)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError):
            unreadable.append(path.name)
            continue
        if ds is not None:
            groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise ImageError(f"{len(unreadable)} file(s) are not readable DICOM: {shown}",
                         subject=subject, source=source)
    series = [_make_series(uid, members, source, subject) for uid, members in groups.items()]
    return sorted(series, key=lambda s: (s.number if s.number is not None else 1 << 30, s.description))


def _make_series(uid: str, members: list[tuple[Path, pydicom.Dataset]], source: str,
                 subject: str | None) -> DicomSeries:
    """Build a ``DicomSeries`` with slices sorted by position along the normal (InstanceNumber fallback)."""
    first = members[0][1]
    number = int(first.SeriesNumber) if first.get("SeriesNumber") not in (None, "") else None
    series = DicomSeries(uid, number, str(first.get("SeriesDescription", "")).strip(),
                         str(first.get("ProtocolName", "")).strip(), ())
    try:
        iop = np.asarray([float(v) for v in first.ImageOrientationPatient]).reshape(2, 3)
        normal = np.cross(iop[0], iop[1])
        keys = [float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for _, ds in members]
    except (AttributeError, ValueError, TypeError) as exc:
        raise ImageError(f"{series.label}: slices lack ImagePositionPatient/ImageOrientationPatient, "
                         "cannot place them in space", subject=subject, source=source) from exc
    order = np.argsort(keys, kind="stable")
    positions = np.asarray(keys)[order]
    if len(positions) > 2:
        gaps = np.diff(positions)
        if gaps.min() <= 1e-4 or gaps.max() / gaps.min() > 1.05:
            raise ImageError(f"{series.label}: {len(positions)} slices with non-uniform spacing between "
                             f"{gaps.min():.3g} and {gaps.max():.3g} mm (missing or duplicate slices?)",
                             subject=subject, source=source)
    return DicomSeries(uid, number, series.description, series.protocol,
                       tuple(members[i][0] for i in order))


def _check_pixels(series: DicomSeries, source: str, subject: str | None, sequence: str | None) -> None:
    """Make sure every slice's pixel data is present and complete (GDCM would skip a broken slice)."""
    for path in series.files:
        try:
            ds = pydicom.dcmread(path)
            data = ds.PixelData
        except Exception as exc:  # noqa: BLE001 - any failure means this slice cannot be used
            raise ImageError(f"{_where(sequence)}{series.label}: unreadable slice {path.name} "
                             f"({type(exc).__name__})", subject=subject, source=source) from exc
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            expected = int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * frames * int(ds.BitsAllocated) // 8
            if len(data) < expected:
                raise ImageError(f"{_where(sequence)}{series.label}: unreadable slice {path.name}: found "
                                 f"{len(data)} bytes of pixel data, expected {expected}",
                                 subject=subject, source=source)


def read_dicom_series(series: DicomSeries, *, source: str, subject: str | None = None,
                      sequence: str | None = None) -> sitk.Image:
    """Read one series' slices (already ordered) with SimpleITK's series reader."""
    _check_pixels(series, source, subject, sequence)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageError(f"{_where(sequence)}{series.label}: SimpleITK could not read the series "
                         f"({_itk_reason(exc)})", subject=subject, source=source) from exc
    return image


def _pick_series(found: list[DicomSeries], sequence: str | None, overrides, source: str,
                 subject: str | None) -> DicomSeries:
    """Choose the one series of a directory (or the one mapped to ``sequence`` when there are several)."""
    if not found:
        raise ImageError(f"{_where(sequence)}no DICOM image series found", subject=subject, source=source)
    if len(found) == 1:
        return found[0]
    matches = [s for s in found if sequence and s.sequence(overrides) == sequence]
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(f"{s.label} -> {s.sequence(overrides) or 'unmapped'}" for s in found)
    why = f"{len(matches)} map to {sequence}" if sequence else "no sequence given to choose one"
    raise ImageError(f"{_where(sequence)}directory holds {len(found)} series ({why}): {listing}; "
                     "use a sequence map to choose", subject=subject, source=source)


def dicom_files(directory: Path) -> list[Path]:
    """Regular, non-hidden files below ``directory`` (DICOM slices rarely carry an extension)."""
    return [p for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.is_symlink() and not any(part.startswith(".") for part in
                                                              p.relative_to(directory).parts)
            and p.suffix.lower() not in (".txt", ".csv", ".json", ".md", ".yaml", ".yml", ".xml")]


def read_dicom_dir(directory: str | Path, *, subject: str | None = None, sequence: str | None = None,
                   sequence_map: Mapping[str, str | Sequence[str]] | None = None) -> sitk.Image:
    """Read the DICOM series in ``directory`` (chosen by ``sequence`` when there are several)."""
    directory = Path(directory)
    source = str(directory)
    found = scan_dicom(dicom_files(directory), source=source, subject=subject)
    series = _pick_series(found, sequence, sequence_map, source, subject)
    return read_dicom_series(series, source=source, subject=subject, sequence=sequence)


# ------------------------------------------------------------------------------------ sequence names
_SEP = re.compile(r"[_\-/\\.,:;()\[\]]+")
_EXCLUDE = re.compile(r"\b(DWI|DTI|ADC|TRACE|SWI|SWAN|PERF|PERFUSION|DSC|DCE|ASL|LOCALI[SZ]ER|SCOUT|SURVEY|"
                      r"CALIBRATION|MRA|TOF|MRS|SPECTRO\w*|BOLD|DIFFUSION|SUBTRACTION|MIP)\b|T2\s?\*|T2\s?STAR")
_FLAIR = re.compile(r"FLAIR|DARK\s?FLUID|\bT2F\b|\bTIRM\b")
_CONTRAST = re.compile(r"\bPOST|\bGAD|\bGD\b|\+\s?C\b|\bC\s?\+|\bCE\b|\bT1\s?CE\b|\bT1C\b|\bT1\s?GD|\bCONTRAST|"
                       r"\bENHANC|\bKM\b")
_PRE = re.compile(r"\bPRE\b|\bPRECONTRAST|\bNATIVE?\b|\bWITHOUT\b|\bNON\s?CONTRAST|\bNO\s?CONTRAST|\bT1N\b")
_T1 = re.compile(r"\bT1|MP\s?RAGE|SPGR|BRAVO|\bVIBE|\bFL3D|\bTFE\b")
_T2 = re.compile(r"\bT2")


def _normalise(text: str) -> str:
    return " ".join(_SEP.sub(" ", text.upper()).split())


def _matches_override(text: str, patterns: str | Sequence[str]) -> bool:
    """True when ``text`` equals or glob-matches one of ``patterns`` (case and separators ignored)."""
    norm = _normalise(text)
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        p = _normalise(pattern)
        if norm == p or fnmatch.fnmatchcase(norm, p):
            return True
    return False


def map_series_to_sequence(description: str,
                           overrides: Mapping[str, str | Sequence[str]] | None = None) -> str | None:
    """Map a SeriesDescription/ProtocolName to t1/t1ce/t2/flair, None when unsure.

    Overrides win, and a sequence named in the overrides is assigned by them alone: the built-in rules
    never give it to another series, so an override settles a folder where two series look alike.
    """
    overrides = overrides or {}
    for seq, patterns in overrides.items():
        if _matches_override(description, patterns):
            return seq
    found = _rule_sequence(description)
    return None if found in overrides else found


def _rule_sequence(description: str) -> str | None:
    """The built-in SeriesDescription rules (contrast markers make a T1 a t1ce, 'PRE' undoes them)."""
    text = _normalise(description)
    if not text or _EXCLUDE.search(text):
        return None
    is_t1 = bool(_T1.search(text))
    contrast = bool(_CONTRAST.search(text)) and not _PRE.search(text)
    if _FLAIR.search(text) and not (is_t1 and not _T2.search(text)):
        return "flair"
    if is_t1:
        return "t1ce" if contrast else "t1"
    if _T2.search(text):
        return "t2"
    return "t1ce" if contrast else None


def check_sequence_map(sequence_map: Mapping[str, str | Sequence[str]] | None) -> dict[str, list[str]]:
    """Validate a sequence override map (keys must be known sequences); normalise values to lists."""
    out: dict[str, list[str]] = {}
    for seq, patterns in (sequence_map or {}).items():
        if seq not in SEQUENCES:
            raise InputError(f"sequence map key {seq!r} is not one of {SEQUENCES}")
        values = [patterns] if isinstance(patterns, str) else list(patterns)
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise InputError(f"sequence map entry for {seq} must be a non-empty string or list, got {patterns!r}")
        out[seq] = values
    return out


# ---------------------------------------------------------------------------------------- DICOM zip
def _safe_members(archive: zipfile.ZipFile, max_members: int, max_total_bytes: int, max_ratio: float,
                  source: str, subject: str | None) -> list[zipfile.ZipInfo]:
    """Vet every member before anything is extracted: names, links, counts, sizes and ratios."""
    infos = archive.infolist()
    if len(infos) > max_members:
        raise InputError(f"zip has {len(infos)} members, limit {max_members}", subject=subject, source=source)
    total = 0
    members = []
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise InputError(f"zip member {name!r} has an absolute or parent ('..') path (path traversal)",
                             subject=subject, source=source)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InputError(f"zip member {name!r} is a symbolic link; links are not accepted",
                             subject=subject, source=source)
        if info.flag_bits & 0x1:
            raise InputError(f"zip member {name!r} is encrypted", subject=subject, source=source)
        if info.is_dir() or _ZIP_JUNK.search(name):
            continue
        total += info.file_size
        if total > max_total_bytes:
            raise InputError(f"zip uncompressed size exceeds the limit of {max_total_bytes} bytes",
                             subject=subject, source=source)
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > max_ratio:
            raise InputError(f"zip member {name!r} compression ratio {ratio:.0f} exceeds {max_ratio:g} "
                             "(zip bomb?)", subject=subject, source=source)
        members.append(info)
    return members


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], out_dir: Path, max_total_bytes: int,
             source: str, subject: str | None) -> dict[Path, str]:
    """Stream members to numbered files (names never become paths); enforce sizes as really decompressed."""
    written: dict[Path, str] = {}
    total = 0
    for k, info in enumerate(members):
        target = out_dir / f"m{k:06d}.dcm"
        size = 0
        with archive.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                total += len(chunk)
                if size > info.file_size or total > max_total_bytes:
                    raise InputError(f"zip member {info.filename!r} decompresses past its declared size or the "
                                     f"{max_total_bytes}-byte limit (zip bomb?)", subject=subject, source=source)
                dst.write(chunk)
        written[target] = info.filename
    return written


def read_dicom_zip(data: bytes, *, subject: str | None = None,
                   sequence_map: Mapping[str, str | Sequence[str]] | None = None,
                   required: Sequence[str] = SEQUENCES, max_members: int = ZIP_MAX_MEMBERS,
                   max_total_bytes: int = ZIP_MAX_TOTAL_BYTES, max_ratio: float = ZIP_MAX_RATIO
                   ) -> dict[str, sitk.Image]:
    """Safely unpack a zip of DICOM series and return one validated image per mapped sequence."""
    source = "<dicom zip>"
    overrides = check_sequence_map(sequence_map)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a readable zip archive ({exc})", subject=subject, source=source) from exc
    with archive, tempfile.TemporaryDirectory(prefix="glioma-dicomzip-") as tmp:
        members = _safe_members(archive, max_members, max_total_bytes, max_ratio, source, subject)
        try:
            names = _extract(archive, members, Path(tmp), max_total_bytes, source, subject)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise InputError(f"corrupt zip archive ({exc})", subject=subject, source=source) from exc
        with _member_names(names, subject, source):
            found = scan_dicom(names, source=source, subject=subject)
        by_sequence: dict[str, list[DicomSeries]] = {}
        for series in found:
            by_sequence.setdefault(series.sequence(overrides) or "", []).append(series)
        unmapped = [s.label for s in by_sequence.pop("", [])]
        if unmapped:
            logger.info("DICOM zip: %d series not mapped to a sequence: %s", len(unmapped), "; ".join(unmapped))
        _check_mapping(by_sequence, required, unmapped, source, subject)
        images = {}
        for seq in [s for s in SEQUENCES if s in by_sequence]:
            series = by_sequence[seq][0]
            with _member_names(names, subject, source):
                image = read_dicom_series(series, source=source, subject=subject, sequence=seq)
            images[seq] = validate_volume(image, source=f"{source} {series.label}", subject=subject, sequence=seq)
        return images


@contextlib.contextmanager
def _member_names(names: Mapping[Path, str], subject: str | None, source: str) -> Iterator[None]:
    """Re-raise an ImageError with the zip member names the user knows instead of our temporary names."""
    try:
        yield
    except ImageError as exc:
        reason = exc.reason
        for path, name in names.items():
            reason = reason.replace(path.name, name)
        raise ImageError(reason, subject=subject, source=source) from exc


def _check_mapping(by_sequence: Mapping[str, list[DicomSeries]], required: Sequence[str], unmapped: list[str],
                   source: str, subject: str | None) -> None:
    """Raise when a sequence maps to several series or a required one maps to none."""
    for seq, series in by_sequence.items():
        if len(series) > 1:
            raise InputError(f"{len(series)} series map to {seq}: " + "; ".join(s.label for s in series)
                             + "; use a sequence map to choose one", subject=subject, source=source)
    missing = [s for s in required if s not in by_sequence]
    if missing:
        raise InputError(f"no series for {', '.join(missing)}; found "
                         + ("; ".join(f"{s} = {v[0].label}" for s, v in by_sequence.items()) or "no mapped series")
                         + (f"; unmapped: {'; '.join(unmapped)}" if unmapped else ""),
                         subject=subject, source=source)
