"""Write synthetic cases in the folder layouts the ingester reads (BraTS 2020/2019, manifest, DICOM).

Every layout also writes ``<out>/ground_truth/<subject>.json`` (pose, grade, tumour parameters),
``<out>/ground_truth/<subject>_brainmask.nii.gz`` (t1ce grid) and ``<out>/ground_truth/cases.csv``
(subject, grades and the image paths relative to ``<out>``, used by the montage).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from gliomagrade.constants import SEQUENCES
from gliomagrade.errors import ConfigError
from gliomagrade.synth.cohort import SyntheticCase

NAME_MAPPING_HEADER = (
    "Grade", "BraTS_2017_subject_ID", "BraTS_2018_subject_ID", "TCGA_TCIA_subject_ID",
    "BraTS_2019_subject_ID", "BraTS_2020_subject_ID",
)
MANIFEST_HEADER = ("subject_id", "who_grade", "grade", *SEQUENCES, "seg")
CASES_HEADER = ("subject_id", "who_grade", "grade", *SEQUENCES, "seg", "brainmask")
DICOM_DESCRIPTIONS = {"t1": "T1 PRE", "t1ce": "T1 POST GAD", "t2": "T2 FSE", "flair": "FLAIR"}
ORIENTATION_PREFIX = {"axial": "AX", "coronal": "COR", "sagittal": "SAG"}


def _write_csv(path: Path, header: tuple[str, ...], rows: list[dict]) -> None:
    """Write rows (dicts keyed by header) as CSV."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(header), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True)
class LayoutWriter:
    """Base writer: NIfTI files in one folder per case; subclasses name folders and tables."""

    out_dir: Path

    @property
    def root(self) -> Path:
        """Folder that ingest.discover reads."""
        return self.out_dir

    @property
    def truth_dir(self) -> Path:
        return self.out_dir / "ground_truth"

    def prepare(self) -> None:
        """Create the folders; refuse to mix a new cohort into an existing one."""
        if self.truth_dir.exists() and any(self.truth_dir.iterdir()):
            raise ConfigError(f"{self.out_dir} already holds a synthetic cohort (ground_truth/ is not empty)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.truth_dir.mkdir(parents=True, exist_ok=True)

    def subject_id(self, index: int) -> str:
        return f"SYN_{index + 1:04d}"

    def case_dir(self, case: SyntheticCase) -> Path:
        return self.root / case.subject_id

    def write_case(self, case: SyntheticCase) -> dict:
        """Write images, seg and ground truth of one case; return its row (paths relative to out_dir)."""
        folder = self.case_dir(case)
        folder.mkdir(parents=True, exist_ok=True)
        row: dict = {"subject_id": case.subject_id, "who_grade": case.who_grade, "grade": case.grade}
        for seq in SEQUENCES:
            path = folder / f"{folder.name}_{seq}.nii.gz"
            sitk.WriteImage(case.images[seq], str(path), useCompression=True)
            row[seq] = path.relative_to(self.out_dir).as_posix()
        seg_path = folder / f"{folder.name}_seg.nii.gz"
        sitk.WriteImage(case.seg, str(seg_path), useCompression=True)
        row["seg"] = seg_path.relative_to(self.out_dir).as_posix()
        return self._write_truth(case, row)

    def _write_truth(self, case: SyntheticCase, row: dict) -> dict:
        """Ground-truth JSON and brain mask of one case."""
        mask_path = self.truth_dir / f"{case.subject_id}_brainmask.nii.gz"
        sitk.WriteImage(case.brain_mask, str(mask_path), useCompression=True)
        row["brainmask"] = mask_path.relative_to(self.out_dir).as_posix()
        truth = {**case.truth, "subject_id": case.subject_id, "files": {k: row[k] for k in (*SEQUENCES, "seg")},
                 "seg_grid": "t1ce"}
        (self.truth_dir / f"{case.subject_id}.json").write_text(json.dumps(truth, indent=1))
        return row

    def finish(self, rows: list[dict]) -> Path:
        """Write the cohort tables; return the root."""
        _write_csv(self.truth_dir / "cases.csv", CASES_HEADER, rows)
        return self.root


@dataclass(frozen=True)
class Brats2020Writer(LayoutWriter):
    """MICCAI_BraTS2020_TrainingData/BraTS20_Training_XXX/... + name_mapping.csv."""

    @property
    def root(self) -> Path:
        return self.out_dir / "MICCAI_BraTS2020_TrainingData"

    def subject_id(self, index: int) -> str:
        return f"BraTS20_Training_{index + 1:03d}"

    def finish(self, rows: list[dict]) -> Path:
        mapping = [
            dict(zip(NAME_MAPPING_HEADER, (r["grade"], "NA", "NA", "NA", "NA", r["subject_id"]), strict=True))
            for r in rows
        ]
        _write_csv(self.root / "name_mapping.csv", NAME_MAPPING_HEADER, mapping)
        return super().finish(rows)


@dataclass(frozen=True)
class Brats2019Writer(LayoutWriter):
    """MICCAI_BraTS_2019_Data_Training/{HGG,LGG}/BraTS19_SYN_XXXX_1/... (grade from the folder)."""

    @property
    def root(self) -> Path:
        return self.out_dir / "MICCAI_BraTS_2019_Data_Training"

    def subject_id(self, index: int) -> str:
        return f"BraTS19_SYN_{index + 1:04d}_1"

    def case_dir(self, case: SyntheticCase) -> Path:
        return self.root / case.grade / case.subject_id


@dataclass(frozen=True)
class ManifestWriter(LayoutWriter):
    """<subject>/<subject>_{seq}.nii.gz + manifest.csv (paths relative to the manifest)."""

    def finish(self, rows: list[dict]) -> Path:
        _write_csv(self.root / "manifest.csv", MANIFEST_HEADER, rows)
        return super().finish(rows)


@dataclass(frozen=True)
class DicomWriter(LayoutWriter):
    """<subject>/<NN_DESCRIPTION>/IMxxxx.dcm per sequence + labels.csv; seg in ground_truth/."""

    def write_case(self, case: SyntheticCase) -> dict:
        from pydicom.uid import generate_uid

        from gliomagrade.dicomio import write_series

        folder = self.case_dir(case)
        study_uid = generate_uid()
        row: dict = {"subject_id": case.subject_id, "who_grade": case.who_grade, "grade": case.grade}
        for number, seq in enumerate(SEQUENCES, start=1):
            orientation = case.truth["sequences"][seq]["orientation"]
            description = f"{ORIENTATION_PREFIX[orientation]} {DICOM_DESCRIPTIONS[seq]}"
            series_dir = folder / f"{number:02d}_{description.replace(' ', '_')}"
            write_series(case.images[seq], series_dir, series_description=description, series_number=number,
                         patient_id=case.subject_id, patient_name=f"SYNTHETIC^{case.subject_id}",
                         study_uid=study_uid)
            row[seq] = series_dir.relative_to(self.out_dir).as_posix()
        seg_path = self.truth_dir / f"{case.subject_id}_seg.nii.gz"
        sitk.WriteImage(case.seg, str(seg_path), useCompression=True)
        row["seg"] = seg_path.relative_to(self.out_dir).as_posix()
        return self._write_truth(case, row)

    def finish(self, rows: list[dict]) -> Path:
        _write_csv(self.root / "labels.csv", ("subject_id", "who_grade", "grade"), rows)
        return super().finish(rows)


WRITERS: dict[str, type[LayoutWriter]] = {
    "brats2020": Brats2020Writer,
    "brats2019": Brats2019Writer,
    "manifest": ManifestWriter,
    "dicom": DicomWriter,
}


def get_writer(layout: str, out_dir: Path) -> LayoutWriter:
    """Writer for ``layout`` rooted at ``out_dir``."""
    if layout not in WRITERS:
        raise ConfigError(f"layout must be one of {', '.join(WRITERS)}, got {layout!r}")
    return WRITERS[layout](Path(out_dir))
