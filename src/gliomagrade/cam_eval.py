"""Does the CAM point at the tumour? Scores every out-of-fold case that has a segmentation.

For each case, the model of the fold that held it out gives the exact CAM (GAP + linear head: CAM ==
Grad-CAM, see ``explain``) of the highest-grade class (HGG, or WHO IV) for every case — the same map
the serving transformer returns. It answers "where does the model see high-grade evidence?", which is
what a reader checks; the low-grade map marks the *absence* of such evidence, i.e. the rest of the
brain (measured: its peak fell in the tumour in 0 of 49 LGG-predicted cases). The map is upsampled to the grid, restricted to
the brain (the input is zero outside it), and scored against tumour + oedema (BraTS labels > 0):

- ``cam_mass_inside``: the fraction of positive CAM mass inside the tumour + oedema;
- ``pointing_hit``: whether the CAM's maximum lies inside it (the pointing game);
- ``evidence_<sequence>`` (models with per-sequence encoders): that encoder's share of the
  highest-grade logit, centred over the classes, i.e. how far each sequence pushed the call;
- ``dice_lesion`` (lesion-gated models and ``unet``) and ``dice_<class>`` (``unet``): how well the model's
  own segmentation of the held-out case matches its labels (``segment.segmentation_dice``).

Writes ``RUN/cam/cam_stats.csv`` (read by ``evaluate.cam_summary``) and overlays of the best and worst
cases on t1ce and FLAIR (``RUN/cam/*.png``, shown in the report).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gliomagrade.constants import SEQUENCES
from gliomagrade.explain import cam_from_features, cam_mass_inside, pointing_game, tumour_mask, upsample_cam
from gliomagrade.segment import segmentation_dice

log = logging.getLogger(__name__)

N_EXAMPLES = 3
"""Best and worst cases drawn as overlays."""


@dataclass(frozen=True)
class CaseCam:
    """One scored case: its CAM on the grid and the arrays to draw it on."""

    subject_id: str
    cam: np.ndarray
    image: np.ndarray
    seg: np.ndarray
    sequences: tuple[str, ...]


def case_arrays(cohort_dir: Path, npz: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(image, brain mask as bool, segmentation or None) of one preprocessed case."""
    with np.load(cohort_dir / npz) as data:
        seg = data["seg"] if "seg" in data.files else None
        return data["image"], data["mask"].astype(bool), seg


def score_fold(fold_dir: Path, cohort_dir: Path, rows: pd.DataFrame, class_names: list[str]) -> list[tuple[dict, CaseCam]]:
    """CAM scores of one fold's held-out cases that carry a segmentation."""
    from gliomagrade.checkpoint import load_checkpoint

    model, meta = load_checkpoint(fold_dir)
    sequences = tuple(meta["sequences"])
    channels = [SEQUENCES.index(s) for s in sequences]
    weight = model.classifier.weight.detach()
    out = []
    for row in rows.itertuples(index=False):
        image, brain, seg = case_arrays(cohort_dir, row.npz)
        if seg is None or not tumour_mask(seg).any():
            continue
        x = torch.from_numpy(image[channels].astype(np.float32))[None]
        with torch.no_grad():
            _, fmap, seg_logits = model.forward_with_gate(x)
        probs = [float(getattr(row, f"prob_{c}")) for c in class_names]
        target = len(class_names) - 1  # the highest grade, as served
        cam = upsample_cam(cam_from_features(fmap[0], weight, target), brain.shape) * brain
        stats = {"subject_id": row.subject_id, "fold": int(row.fold), "label": int(row.label),
                 "predicted": class_names[int(np.argmax(probs))], "cam_class": class_names[target],
                 "cam_mass_inside": cam_mass_inside(cam, tumour_mask(seg)),
                 "pointing_hit": bool(pointing_game(cam, tumour_mask(seg)))}
        stats |= sequence_evidence(model, fmap, sequences, target)
        if seg_logits is not None:  # a lesion gate's or a unet's own segmentation of the case
            stats |= segmentation_dice(seg_logits[0], seg)
        out.append((stats, CaseCam(str(row.subject_id), cam, image, seg, sequences)))
    return out


def sequence_evidence(model: torch.nn.Module, fmap: torch.Tensor, sequences: tuple[str, ...], target: int
                      ) -> dict[str, float]:
    """``{"evidence_<seq>": share}`` for a model with per-sequence encoders (else ``{}``): each encoder's
    share of the ``target`` logit minus its mean share over the classes (bias excluded)."""
    if getattr(model, "sequence_groups", 1) < 2:
        return {}
    with torch.no_grad():
        shares = model.sequence_logits(fmap)[0] - model.classifier.bias.float()  # (G, K)
    evidence = shares[:, target] - shares.mean(dim=1)
    return {f"evidence_{seq}": float(e) for seq, e in zip(sequences, evidence, strict=True)}


def overlay_png(case: CaseCam, score: float, path: Path) -> Path:
    """Axial slice through the CAM peak: t1ce and FLAIR with the CAM and the tumour outline."""
    from matplotlib.figure import Figure

    z = int(np.unravel_index(np.argmax(case.cam), case.cam.shape)[0])
    cam = case.cam[z] / (case.cam.max() or 1.0)
    fig = Figure(figsize=(6, 3.2), dpi=110)
    for i, seq in enumerate(("t1ce", "flair")):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(case.image[SEQUENCES.index(seq), z].astype(np.float32), cmap="gray", origin="lower")
        ax.imshow(np.ma.masked_less(cam, 0.05), cmap="jet", alpha=0.45, vmin=0, vmax=1, origin="lower")
        ax.contour(tumour_mask(case.seg[z]).astype(float), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(seq, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{case.subject_id}: CAM mass inside tumour {score:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


def evaluate_cams(run_dir: str | Path, cohort_dir: str | Path) -> Path | None:
    """Score every OOF case with a segmentation; write ``cam/cam_stats.csv`` and overlays. None if no seg."""
    run, cohort_dir = Path(run_dir), Path(cohort_dir)
    oof = pd.read_csv(run / "oof.csv", dtype={"subject_id": str})
    table = pd.read_csv(cohort_dir / "cohort.csv", dtype={"subject_id": str})[["subject_id", "npz"]]
    oof = oof.merge(table, on="subject_id", how="left")
    class_names = [c.removeprefix("prob_") for c in oof.columns if c.startswith("prob_")]
    scored: list[tuple[dict, CaseCam]] = []
    for fold, rows in oof.groupby("fold"):
        scored += score_fold(run / "folds" / str(fold), cohort_dir, rows, class_names)
    if not scored:
        log.info("no segmentation in the cohort: CAM localisation not scored")
        return None
    out = run / "cam"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    stats = pd.DataFrame([s for s, _ in scored]).sort_values("cam_mass_inside", ascending=False)
    stats.to_csv(out / "cam_stats.csv", index=False)
    by_id = {c.subject_id: c for _, c in scored}
    ranked = stats.dropna(subset=["cam_mass_inside"])
    picks = [("best", r) for r in ranked.head(N_EXAMPLES).itertuples()]
    picks += [("worst", r) for r in ranked.tail(N_EXAMPLES).iloc[::-1].itertuples()]
    for i, (kind, r) in enumerate(picks):
        overlay_png(by_id[r.subject_id], r.cam_mass_inside, out / f"{i:02d}_{kind}_{r.subject_id}.png")
    log.info("CAM: mean mass inside tumour %.2f, pointing game %.2f over %d cases",
             stats["cam_mass_inside"].mean(), stats["pointing_hit"].mean(), len(stats))
    return out / "cam_stats.csv"
