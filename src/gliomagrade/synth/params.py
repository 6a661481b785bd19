"""Knobs of the synthetic cohort, validated up front so a bad value fails before any case is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from gliomagrade.errors import ConfigError

LAYOUTS: tuple[str, ...] = ("brats2020", "brats2019", "manifest", "dicom")


@dataclass(frozen=True)
class SynthParams:
    """Cohort-level generation parameters (every case of a cohort shares them)."""

    hgg_fraction: float = 0.75
    """Share of WHO IV (HGG) cases; the rest are LGG (WHO II or III)."""
    grade3_share: float = 0.5
    """Share of WHO III among the LGG cases."""
    difficulty: float = 0.2
    """0 = grade distributions as in the docs table; 1 = every grade drawn from the pooled mean."""
    skull_prob: float = 0.8
    """Probability that a case keeps skull and scalp (so skull stripping is needed)."""
    misregistration_prob: float = 0.5
    """Probability that a case has small head motion between sequences (1-3 mm / 1-3 deg)."""
    max_rotation_deg: float = 15.0
    """Largest rotation of the head pose about each axis."""
    max_translation_mm: float = 15.0
    """Largest translation of the head pose along each axis."""
    max_slice_thickness_mm: float = 3.0
    """Thickest slice of the anisotropic sequences (in-plane spacing stays at ``resolution``)."""
    resolution: float = 1.0
    """Working and in-plane voxel size in mm (2 mm for demos, 3-4 mm for tests)."""
    brats_like: bool = False
    """Write skull-stripped, co-registered 240x240x155 1 mm images without pose, as BraTS is."""
    sequence_orientations: tuple[float, float, float] = field(default=(0.7, 0.15, 0.15))
    """Probabilities of axial, coronal and sagittal slices for each sequence."""

    def __post_init__(self) -> None:
        _in_range("hgg_fraction", self.hgg_fraction, 0.0, 1.0)
        _in_range("grade3_share", self.grade3_share, 0.0, 1.0)
        _in_range("difficulty", self.difficulty, 0.0, 1.0)
        _in_range("skull_prob", self.skull_prob, 0.0, 1.0)
        _in_range("misregistration_prob", self.misregistration_prob, 0.0, 1.0)
        _in_range("max_rotation_deg", self.max_rotation_deg, 0.0, 45.0)
        _in_range("max_translation_mm", self.max_translation_mm, 0.0, 40.0)
        _in_range("max_slice_thickness_mm", self.max_slice_thickness_mm, 1.0, 6.0)
        _in_range("resolution", self.resolution, 1.0, 6.0)
        probs = self.sequence_orientations
        if len(probs) != 3 or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise ConfigError(f"sequence_orientations must be 3 probabilities summing to 1, got {probs}")

    def to_dict(self) -> dict:
        """JSON-ready copy (recorded in every ground-truth file)."""
        return asdict(self)


def _in_range(name: str, value: float, low: float, high: float) -> None:
    """Raise ConfigError naming the parameter when ``value`` is outside [low, high]."""
    try:
        ok = low <= float(value) <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be a number in [{low}, {high}], got {value!r}")
