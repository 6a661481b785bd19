"""Preprocessing: raw sequences -> z-scored 4-channel tensor on a fixed MNI-template grid (training == serving)."""

from __future__ import annotations

from gliomagrade.preprocess.case import PreprocessedCase, preprocess_case
from gliomagrade.preprocess.cohort import CohortSummary, preprocess_cohort
from gliomagrade.preprocess.geometry import Geometry, to_reference_space

__all__ = ["CohortSummary", "Geometry", "PreprocessedCase", "preprocess_case", "preprocess_cohort",
           "to_reference_space"]
