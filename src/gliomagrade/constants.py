"""Names shared by every stage: sequences, labels, grade mapping."""

from __future__ import annotations

SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
"""Channel order of every preprocessed tensor (training and serving)."""

REFERENCE_SEQUENCE = "t1ce"
"""Sequences are co-registered to this one; CAM maps are returned on its grid."""

BRATS_LABELS: dict[int, str] = {0: "background", 1: "necrosis/non-enhancing", 2: "oedema", 4: "enhancing"}

BINARY_CLASSES: tuple[str, ...] = ("LGG", "HGG")
WHO_CLASSES: tuple[str, ...] = ("WHO-II", "WHO-III", "WHO-IV")

# BraTS convention (the only public labels we can train on): LGG mixes WHO II and III, HGG is WHO IV.
WHO_TO_BINARY: dict[int, str] = {2: "LGG", 3: "LGG", 4: "HGG"}


def binary_grade(who_grade: int) -> str:
    """Map a WHO grade (2, 3, 4) to LGG/HGG with the BraTS convention (III -> LGG)."""
    try:
        return WHO_TO_BINARY[int(who_grade)]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"WHO grade must be 2, 3 or 4, got {who_grade!r}") from exc


def parse_sequences(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Parse 't1ce,flair' (or a list) into a validated tuple in canonical channel order."""
    items = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = sorted(set(items) - set(SEQUENCES))
    if unknown or not items:
        raise ValueError(f"sequences must be a non-empty subset of {SEQUENCES}, got {items}")
    return tuple(s for s in SEQUENCES if s in items)

QC_DRIFT_FEATURES: tuple[str, ...] = ("t1ce_mean", "brain_volume_ml")
"""Input statistics (preprocessing QC: t1ce brain mean before z-scoring, brain volume in ml) that get a
drift reference and a training range at release, and are watched by the transformer at serving."""


GATE_OPTIONS = ("lesion_gate", "tissue_width")
"""Model options every network family takes (the lesion gate and its tissue path; ``models.LesionGate``)."""
DEFAULT_TISSUE_WIDTH = 32
"""Channels of the tissue path when ``--lesion-gate tissue`` is asked of a profile that names none."""
