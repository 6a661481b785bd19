"""Tiny cohorts built in tmp_path: BraTS 2019/2020 folders and DICOM series with fake identifiers."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_fixtures import NAME_MAPPING_HEADER, write_brats_case, write_csv, write_dicom_case


@pytest.fixture
def brats2020(tmp_path: Path) -> Path:
    """BraTS 2020: three cases (one `.nii`), case 355 with its odd segmentation name, name_mapping.csv."""
    root = tmp_path / "MICCAI_BraTS2020_TrainingData"
    write_brats_case(root / "BraTS20_Training_001")
    write_brats_case(root / "BraTS20_Training_002", ext=".nii")
    write_brats_case(root / "BraTS20_Training_355", ext=".nii", seg_name="W39_1998.09.19_Segm.nii")
    write_csv(root / "name_mapping.csv", NAME_MAPPING_HEADER, [
        ["HGG", "Brats17_CBICA_AAB_1", "Brats18_CBICA_AAB_1", "NA", "BraTS19_CBICA_AAB_1", "BraTS20_Training_001"],
        ["LGG", "Brats17_TCIA_101_1", "Brats18_TCIA_101_1", "TCGA-XX", "BraTS19_TCIA_101_1", "BraTS20_Training_002"],
        ["HGG", "NA", "NA", "NA", "NA", "BraTS20_Training_355"],
    ])
    return root


@pytest.fixture
def brats2019(tmp_path: Path) -> Path:
    """BraTS 2019: grade from the HGG/ and LGG/ folders."""
    root = tmp_path / "MICCAI_BraTS_2019_Data_Training"
    write_brats_case(root / "HGG" / "BraTS19_CBICA_AAB_1")
    write_brats_case(root / "HGG" / "BraTS19_2013_2_1")
    write_brats_case(root / "LGG" / "BraTS19_TCIA10_103_1", ext=".nii")
    return root


@pytest.fixture
def dicom_cohort(tmp_path: Path) -> Path:
    """Two DICOM cases (one with an extra unmapped DWI series) and a labels.csv."""
    root = tmp_path / "dicom"
    write_dicom_case(root / "case01", extra={"dwi": "AX DWI b1000"})
    write_dicom_case(root / "case02")
    write_csv(root / "labels.csv", ["subject_id", "who_grade"], [["case01", "4"], ["case02", "2"]])
    return root
