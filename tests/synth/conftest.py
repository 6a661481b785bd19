"""Shared synthetic cases at a coarse (4 mm) resolution so the synth tests stay fast."""

from __future__ import annotations

import pytest

from gliomagrade.synth import SyntheticCase, SynthParams, synthesize_case

COARSE = 4.0


@pytest.fixture(scope="session")
def coarse_params() -> SynthParams:
    """Every acquisition effect switched on, at 4 mm."""
    return SynthParams(resolution=COARSE, skull_prob=1.0, misregistration_prob=1.0)


@pytest.fixture(scope="session")
def case(coarse_params: SynthParams) -> SyntheticCase:
    return synthesize_case(0, 11, coarse_params)
