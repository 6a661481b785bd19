"""Synthesise one case or a whole cohort, deterministically for a seed.

Case ``i`` of a cohort with seed ``s`` draws from ``SeedSequence(s).spawn(n)[i]``, so a case does not
depend on how many workers made the cohort or in which order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from gliomagrade.constants import REFERENCE_SEQUENCE, SEQUENCES, binary_grade
from gliomagrade.errors import ConfigError, GliomaError
from gliomagrade.synth import acquisition as acq_mod
from gliomagrade.synth.anatomy import Anatomy, load_anatomy
from gliomagrade.synth.contrast import compose, head_shell, sample_contrast
from gliomagrade.synth.params import LAYOUTS, SynthParams
from gliomagrade.synth.tumour import TumourParams, render_tumour, sample_tumour

if TYPE_CHECKING:
    from gliomagrade.synth.layouts import LayoutWriter

log = logging.getLogger(__name__)

GENERATOR_REVISION = 2
"""Bumped when the same seed makes different images (2: T2/FLAIR oedema contrast, T2-FLAIR mismatch)."""


@dataclass
class SyntheticCase:
    """One generated subject: images on their acquisition grids, ground truth on the t1ce grid."""

    subject_id: str
    who_grade: int
    images: dict[str, sitk.Image]
    seg: sitk.Image
    """BraTS labels (0, 1, 2, 4) on the t1ce grid."""
    brain_mask: sitk.Image
    """Brain mask (uint8) on the t1ce grid."""
    truth: dict = field(default_factory=dict)
    """Everything drawn for this case (pose, acquisition, tumour, volumes); JSON-serialisable."""
    template_seg: sitk.Image | None = None
    """The BraTS labels in template space, before pose and acquisition (for checks)."""

    @property
    def grade(self) -> str:
        return binary_grade(self.who_grade)


def case_seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    """Independent per-case seed sequences derived from the cohort seed."""
    return np.random.SeedSequence(int(seed)).spawn(int(n))


def draw_grade(params: SynthParams, rng: np.random.Generator) -> int:
    """WHO grade: IV with probability hgg_fraction, else III with probability grade3_share, else II."""
    if rng.random() < params.hgg_fraction:
        return 4
    return 3 if rng.random() < params.grade3_share else 2


def cohort_grades(n: int, seed: int, params: SynthParams) -> list[int]:
    """WHO grades of a cohort in exact proportions (stratified), shuffled by the cohort seed.

    Independent draws per case can leave a small cohort with a single class (12 cases at 75% HGG are all
    HGG 3% of the time), which no cross-validation can use; exact counts cannot.
    """
    n_hgg = int(round(n * params.hgg_fraction))
    n_iii = int(round((n - n_hgg) * params.grade3_share))
    grades = [4] * n_hgg + [3] * n_iii + [2] * (n - n_hgg - n_iii)
    np.random.default_rng(np.random.SeedSequence([int(seed), 0x6A7E])).shuffle(grades)
    return grades


def synthesize_case(
    index: int, seed: int | np.random.SeedSequence, params: SynthParams | None = None, *, subject_id: str | None = None,
    who_grade: int | None = None,
) -> SyntheticCase:
    """Make case ``index``; ``seed`` is the cohort seed (int) or the case's own SeedSequence.

    ``who_grade`` fixes the grade (a cohort's stratified allocation); by default it is drawn.
    """
    params = params or SynthParams()
    seq = seed if isinstance(seed, np.random.SeedSequence) else case_seeds(int(seed), index + 1)[index]
    rng = np.random.default_rng(seq)
    subject_id = subject_id or f"SYN_{index:04d}"
    anatomy = load_anatomy(float(params.resolution))
    drawn = draw_grade(params, rng)  # always drawn, so the case's other draws do not depend on who_grade
    who = int(who_grade) if who_grade is not None else drawn
    tumour = sample_tumour(anatomy, who, params.difficulty, rng)
    maps = render_tumour(anatomy, tumour, rng)
    contrast = sample_contrast(tumour, rng)
    skull = (not params.brats_like) and rng.random() < params.skull_prob
    shell = head_shell(anatomy, rng) if skull else None
    signals = compose(anatomy, maps, contrast, shell, tumour.heterogeneity)
    plan = acq_mod.plan_acquisition(params, anatomy.brain_center, rng)

    labels = np.zeros(anatomy.brain.shape, np.uint8)
    labels[maps.box] = maps.labels
    template_seg = anatomy.to_image(labels, sitk.sitkUInt8)
    ref_acq = plan["sequences"][REFERENCE_SEQUENCE]
    seg = acq_mod.resample_labels(template_seg, ref_acq)
    brain = acq_mod.resample_labels(anatomy.to_image(anatomy.brain, sitk.sitkUInt8), ref_acq)
    images = {}
    for name in SEQUENCES:
        image = acq_mod.acquire(anatomy.to_image(signals[name]), plan["sequences"][name], rng, params.resolution)
        if params.brats_like:  # skull-stripped: zero outside the brain, as BraTS ships it
            image = sitk.Mask(image, brain)
        images[name] = image
    truth = _truth(subject_id, index, who, params, tumour, plan, skull, labels, anatomy, contrast)
    return SyntheticCase(subject_id, who, images, seg, brain, truth, template_seg)


def _truth(subject_id: str, index: int, who: int, params: SynthParams, tumour: TumourParams, plan: dict,
           skull: bool, labels: np.ndarray, anatomy: Anatomy, contrast: dict) -> dict:
    """Ground-truth record of one case (JSON-ready)."""
    voxel_ml = anatomy.spacing**3 / 1000.0
    volumes = {
        "necrosis_nonenhancing_ml": float((labels == 1).sum() * voxel_ml),
        "oedema_ml": float((labels == 2).sum() * voxel_ml),
        "enhancing_ml": float((labels == 4).sum() * voxel_ml),
    }
    volumes["whole_tumour_ml"] = sum(volumes.values())
    return {
        "subject_id": subject_id,
        "generator_revision": GENERATOR_REVISION,
        "index": index,
        "who_grade": who,
        "grade": binary_grade(who),
        "skull": bool(skull),
        "brats_like": params.brats_like,
        "resolution_mm": params.resolution,
        "params": params.to_dict(),
        "tumour": tumour.to_dict(),
        "volumes_template": volumes,
        "contrast": contrast,
        "convention": (
            "template space = MNI152 2009a, LPS mm; template_to_image maps a template point to the "
            "physical point of the written image (pose @ per-sequence motion, rotation about center_mm)"
        ),
        **{k: v for k, v in plan.items() if k != "sequences"},
        "sequences": {s: acq_mod.to_dict(a) for s, a in plan["sequences"].items()},
    }


def write_cohort(
    out_dir: Path,
    n: int,
    seed: int = 0,
    layout: str = "brats2020",
    workers: int = 1,
    params: SynthParams | None = None,
    *,
    progress: bool | None = None,
) -> Path:
    """Generate ``n`` cases into ``out_dir`` in ``layout``; return the cohort root that ingest reads."""
    from gliomagrade.parallel import map_items
    from gliomagrade.synth.layouts import get_writer

    if int(n) < 1:
        raise ConfigError(f"number of cases must be >= 1, got {n}")
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    params = params or SynthParams()
    writer = get_writer(layout, Path(out_dir))
    writer.prepare()
    grades = cohort_grades(int(n), seed, params)
    jobs = [_Job(i, s, params, writer, g) for i, (s, g) in enumerate(zip(case_seeds(seed, n), grades, strict=True))]
    outcomes = map_items(_run_job, jobs, workers=workers, desc="synth", disable=None if progress else True)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        log.error("synthetic case %d failed: %r", o.item.index, o.error)
    root = writer.finish([o.result for o in outcomes if o.ok])  # the tables list the cases that exist
    if failed:
        raise GliomaError(f"{len(failed)} of {n} synthetic cases failed (first: case {failed[0].item.index}: "
                          f"{failed[0].error!r}); the others are in {root}")
    return root


@dataclass(frozen=True)
class _Job:
    """One case to make: its index, its own seed sequence, the cohort parameters, where to write."""

    index: int
    seed: np.random.SeedSequence
    params: SynthParams
    writer: LayoutWriter
    who_grade: int


def _run_job(job: _Job) -> dict:
    """Worker: synthesise one case and write it; return its table row."""
    case = synthesize_case(job.index, job.seed, job.params, subject_id=job.writer.subject_id(job.index),
                           who_grade=job.who_grade)
    return job.writer.write_case(case)
