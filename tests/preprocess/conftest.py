"""Tiny preprocessing fixtures: the template at 4 mm, phantoms at 4 mm, a 24^3 output grid."""

from __future__ import annotations

from functools import lru_cache

import pytest

from gliomagrade.config import PreprocessConfig
from gliomagrade.preprocess.phantom import PhantomCase, make_phantom

TINY = {"grid": (24, 24, 24), "registration_spacing_mm": 4.0, "registration_shrink": (2, 1),
        "registration_sampling": 0.1, "template_mask_dilate_mm": 4.0, "skull_strip_band_mm": 8.0}


@pytest.fixture
def tiny_cfg() -> PreprocessConfig:
    """Coarse settings: registration at 4 mm, a 24^3 grid."""
    return PreprocessConfig(**TINY)


@lru_cache(maxsize=8)
def phantom(rotation: tuple[float, float, float] = (0.0, 0.0, 0.0),
            translation: tuple[float, float, float] = (0.0, 0.0, 0.0), *, skull: bool = True,
            orientation: str = "LPS", misregistered: bool = False) -> PhantomCase:
    """A 4 mm phantom (cached: tests must not modify it)."""
    mis = {"t2": ((0.0, 4.0, -3.0), (3.0, -4.0, 2.0)), "flair": ((-3.0, 0.0, 4.0), (-2.0, 3.0, 4.0))}
    return make_phantom(rotation_deg=rotation, translation_mm=translation, size=(56, 64, 48),
                        spacing=(4.0, 4.0, 4.0), orientation=orientation, skull=skull, template_spacing_mm=4.0,
                        misregistration=mis if misregistered else None, noise=0.01, seed=1)
