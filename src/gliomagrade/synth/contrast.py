"""Tissue-specific contrast of the four sequences: mean signal of every tissue class per sequence.

Values are relative to white matter on T1 and follow the usual appearance at 1.5-3 T: T1 WM > GM > CSF;
T2 CSF > GM > WM; FLAIR like T2 with CSF suppressed; t1ce like T1 plus gadolinium enhancement.
Every case jitters them (scanner and subject variability); tumour classes vary more than tissue.
"""

from __future__ import annotations

import numpy as np

from gliomagrade.constants import SEQUENCES
from gliomagrade.synth.anatomy import Anatomy
from gliomagrade.synth.tumour import TumourMaps, TumourParams, smooth_noise

# class: (t1, t1ce, t2, flair)
CONTRAST: dict[str, tuple[float, float, float, float]] = {
    "csf": (0.30, 0.32, 2.00, 0.12),
    "gm": (0.62, 0.64, 1.10, 1.05),
    "wm": (1.00, 1.00, 0.75, 0.78),
    "oedema": (0.66, 0.68, 1.65, 1.55),  # vasogenic: water-rich, brighter than solid tumour on T2/FLAIR
    "net": (0.50, 0.55, 1.35, 1.30),
    "necrosis": (0.30, 0.32, 1.90, 0.60),
    "enhancing": (0.62, 1.50, 1.25, 1.20),  # t1ce replaced by the tumour's enhancement ratio
    "haemorrhage": (1.35, 1.40, 0.55, 1.00),
    "extra_csf": (0.30, 0.32, 2.00, 0.12),
    "bone": (0.06, 0.06, 0.08, 0.06),
    "marrow": (0.75, 0.78, 0.60, 0.65),
    "scalp": (1.25, 1.30, 1.00, 1.05),
}
TISSUE_JITTER = 0.04
"""Log-normal sd of per-case tissue contrasts."""
TUMOUR_JITTER = 0.10
"""Log-normal sd of per-case tumour contrasts."""
NECROSIS_FLAIR_RANGE = (0.3, 1.3)
"""Necrotic fluid ranges from FLAIR-dark to FLAIR-bright (protein content)."""
MISMATCH_FLAIR_RANGE = (0.55, 0.9)
"""FLAIR of a T2-FLAIR-mismatch core (about white matter; its oedema stays bright: the rim)."""
MISMATCH_T2_RANGE = (1.7, 1.9)
"""T2 of a mismatch core: homogeneously bright, near fluid."""


def sample_contrast(t: TumourParams, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Per-case contrast table {sequence: {class: mean}} with jitter and the tumour's enhancement."""
    table: dict[str, dict[str, float]] = {s: {} for s in SEQUENCES}
    tumour_classes = {"oedema", "net", "necrosis", "enhancing", "haemorrhage"}
    for name, values in CONTRAST.items():
        sd = TUMOUR_JITTER if name in tumour_classes else TISSUE_JITTER
        factor = float(np.exp(rng.normal(0.0, sd)))  # shared across sequences: tissue property
        for seq, value in zip(SEQUENCES, values, strict=True):
            table[seq][name] = value * factor * float(np.exp(rng.normal(0.0, sd / 2)))
    table["t1ce"]["enhancing"] = t.enhancement_ratio
    table["flair"]["necrosis"] = float(rng.uniform(*NECROSIS_FLAIR_RANGE))
    if t.mismatch:
        table["flair"]["net"] = float(rng.uniform(*MISMATCH_FLAIR_RANGE))
        table["t2"]["net"] = float(rng.uniform(*MISMATCH_T2_RANGE))
    return table


def compose(
    anatomy: Anatomy,
    maps: TumourMaps,
    contrast: dict[str, dict[str, float]],
    shell: dict[str, np.ndarray] | None,
    heterogeneity: float,
) -> dict[str, np.ndarray]:
    """Noise-free signal of every sequence on the template grid (float32, z/y/x)."""
    gm, wm, csf = (np.array(getattr(anatomy, n)) for n in ("gm", "wm", "csf"))
    gm[maps.box], wm[maps.box], csf[maps.box] = maps.tissue["gm"], maps.tissue["wm"], maps.tissue["csf"]
    f = maps.fractions
    core = f["necrosis"] + f["net"] + f["enhancing"] + f["haemorrhage"]
    keep = np.clip(1.0 - core, 0.0, 1.0)
    oedema = f["oedema"] * keep
    texture = 1.0 + heterogeneity * maps.texture
    out = {}
    for seq in SEQUENCES:
        c = contrast[seq]
        signal = c["gm"] * gm + c["wm"] * wm + c["csf"] * csf
        box = signal[maps.box]
        tumour = sum(c[name] * f[name] for name in ("necrosis", "net", "enhancing", "haemorrhage"))
        # oedema replaces the share of the (partial-volume) tissue it infiltrates; the core replaces all
        box_signal = box * keep * (1.0 - f["oedema"]) + (c["oedema"] * oedema + tumour) * texture
        signal[maps.box] = box_signal
        if shell is not None:
            signal += sum(c[name] * frac for name, frac in shell.items())
        out[seq] = signal.astype(np.float32)
    return out


def head_shell(anatomy: Anatomy, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Extra-axial CSF, skull (cortical bone around marrow) and scalp as fractions outside the brain."""
    d = anatomy.outside_mm
    wobble = smooth_noise(d.shape, 25.0 / anatomy.spacing, rng)
    csf_t = np.float32(2.0 + rng.uniform(0, 1.0)) + np.float32(0.4) * wobble.clip(-2, 2)
    bone_t = csf_t + np.float32(rng.uniform(5.0, 7.5))
    scalp_t = bone_t + np.float32(rng.uniform(4.0, 6.0))

    soft = np.float32(anatomy.spacing * 0.5)

    def band(low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
        """Soft indicator of low < d < high (partial volume over one voxel)."""
        return np.clip((d - low) / soft + 0.5, 0, 1) - np.clip((d - high) / soft + 0.5, 0, 1)

    outside = d > 0
    mid = (csf_t + bone_t) / 2.0
    marrow_half = (bone_t - csf_t) * 0.22
    marrow = band(mid - marrow_half, mid + marrow_half) * outside
    return {
        "extra_csf": band(0.0, csf_t) * outside,
        "bone": np.clip(band(csf_t, bone_t) * outside - marrow, 0, 1),
        "marrow": marrow,
        "scalp": band(bone_t, scalp_t) * outside,
    }
