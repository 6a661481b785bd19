"""Preprocessing: raw sequences -> z-scored 4-channel tensor on a fixed MNI-template grid (training == serving)."""

from __future__ import annotations

from gliomagrade.preprocess.case import PreprocessedCase, preprocess_case
from gliomagrade.preprocess.geometry import Geometry, to_reference_space

__all__ = ["Geometry", "PreprocessedCase", "preprocess_case", "preprocess_cohort", "to_reference_space",
           "CohortSummary"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: the cohort runner pulls in matplotlib and the IO modules
    if name in ("preprocess_cohort", "CohortSummary"):
        from gliomagrade.preprocess import cohort

        return getattr(cohort, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
