"""Builders of tiny test cohorts: NIfTI volumes, BraTS case folders, CSVs, DICOM series with fake identifiers."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from gliomagrade.constants import SEQUENCES
from gliomagrade.dicomio import write_series

FAKE_PATIENT_NAME = "Doe^Jane"
FAKE_PATIENT_ID = "PID-SECRET-4711"
SERIES_DESCRIPTIONS = {"t1": "AX T1 SE", "t1ce": "AX T1 POST GAD", "t2": "AX T2 FSE", "flair": "AX T2 FLAIR"}
NAME_MAPPING_HEADER = ["Grade", "BraTS_2017_subject_ID", "BraTS_2018_subject_ID", "TCGA_TCIA_subject_ID",
                       "BraTS_2019_subject_ID", "BraTS_2020_subject_ID"]


def volume(size: tuple[int, int, int] = (12, 12, 10), spacing: tuple[float, float, float] = (1.0, 1.0, 1.5),
           seed: int = 0) -> sitk.Image:
    """A small float32 volume with varying positive intensities."""
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray((rng.random(size[::-1]) * 100 + 10).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((-6.0, -6.0, -7.5))
    return image


def segmentation(size: tuple[int, int, int] = (12, 12, 10), spacing=(1.0, 1.0, 1.5)) -> sitk.Image:
    """A label map on the same grid as ``volume`` with BraTS labels 0, 1, 2, 4."""
    labels = np.zeros(size[::-1], np.uint8)
    labels[3:6, 3:6, 3:6], labels[4, 4, 4], labels[2, 2, 2] = 2, 4, 1
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing)
    image.SetOrigin((-6.0, -6.0, -7.5))
    return image


def write_brats_case(case_dir: Path, *, ext: str = ".nii.gz", sequences: Iterable[str] = SEQUENCES,
                     seg_name: str | None = "default", images: dict[str, sitk.Image] | None = None) -> Path:
    """Write ``<case>/<case>_<seq><ext>`` files (and a segmentation) like the BraTS releases."""
    case_dir.mkdir(parents=True, exist_ok=True)
    images = images or {}
    for k, seq in enumerate(sequences):
        sitk.WriteImage(images.get(seq, volume(seed=k)), str(case_dir / f"{case_dir.name}_{seq}{ext}"))
    if seg_name is not None:
        name = f"{case_dir.name}_seg{ext}" if seg_name == "default" else seg_name
        sitk.WriteImage(segmentation(), str(case_dir / name))
    return case_dir


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_dicom_case(case_dir: Path, *, descriptions: dict[str, str] | None = None,
                     extra: dict[str, str] | None = None) -> dict[str, Path]:
    """One folder per series (``<case>/<seq>/IM*.dcm``) carrying a recognisable fake patient name and ID."""
    out = {}
    series = {**(descriptions or SERIES_DESCRIPTIONS), **(extra or {})}
    for number, (name, description) in enumerate(series.items(), start=1):
        out[name] = case_dir / name
        write_series(volume((10, 10, 6), seed=number), out[name], series_description=description,
                     series_number=number, patient_id=FAKE_PATIENT_ID, patient_name=FAKE_PATIENT_NAME)
    return out
