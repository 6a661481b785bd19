"""Synthetic glioma cohorts on real anatomy (MNI152 2009a): four sequences, WHO grade, ground truth.

``synthesize_case`` makes one case in memory; ``write_cohort`` writes a cohort in a layout the ingester
reads. See docs/synthetic_cohort.md for the model and its parameter table.
"""

from gliomagrade.synth.cohort import SyntheticCase, synthesize_case, write_cohort
from gliomagrade.synth.params import LAYOUTS, SynthParams

__all__ = ["LAYOUTS", "SynthParams", "SyntheticCase", "synthesize_case", "write_cohort"]
