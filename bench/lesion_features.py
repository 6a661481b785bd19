"""What a preprocessed cohort's images hold about the grade *once the lesion is known* (docs/training.md).

For every case with a segmentation, per sequence: mean, 5th/95th percentile and std inside the tumour
core (BraTS labels 1, 3, 4), the oedema (2) and both; and the extent that sequence *shows*: the lesion
voxels it makes abnormal (beyond ``ABNORMAL_SD`` robust sd of the normal brain), in the core and in the
oedema, and their log ratio. Cross-validated AUC (LGG vs HGG, logistic regression, 5 folds x
``--repeats`` shuffles) per sequence set shows whether four sequences *can* beat one on this cohort when
a model looks at the lesion: a ceiling for a CNN that must also find it.

    python bench/lesion_features.py COHORT_DIR [--sets t1ce,flair,t2,t1,t2+flair,all] [--repeats 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gliomagrade.cam_eval import case_arrays
from gliomagrade.constants import SEQUENCES

REGIONS = {"core": (1, 3, 4), "oedema": (2,), "lesion": (1, 2, 3, 4)}
ABNORMAL_SD = 2.5
"""A lesion voxel counts as shown by a sequence when it is this many robust sd from the normal brain."""


def lesion_features(image: np.ndarray, seg: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """Per sequence: intensity statistics in every region, and the extent of the lesion it shows."""
    out: dict[str, float] = {}
    normal = brain & (seg == 0)
    masks = {region: np.isin(seg, labels) for region, labels in REGIONS.items()}
    for i, seq in enumerate(SEQUENCES):
        for region, inside in masks.items():
            v = image[i][inside].astype(np.float64) if inside.any() else np.zeros(1)
            p5, p95 = np.percentile(v, [5, 95])
            out |= {f"{seq}:{region}:mean": v.mean(), f"{seq}:{region}:p5": p5, f"{seq}:{region}:p95": p95,
                    f"{seq}:{region}:std": v.std()}
        ref = image[i][normal].astype(np.float64) if normal.any() else np.zeros(1)
        centre = np.median(ref)
        spread = 1.4826 * np.median(np.abs(ref - centre)) or 1.0
        shown = (seg > 0) & (np.abs(image[i].astype(np.float64) - centre) > ABNORMAL_SD * spread)
        core, oedema = np.log1p((shown & masks["core"]).sum()), np.log1p((shown & masks["oedema"]).sum())
        out |= {f"{seq}:shown:core": core, f"{seq}:shown:oedema": oedema, f"{seq}:shown:ratio": oedema - core}
    return out


def set_auc(x: pd.DataFrame, y: np.ndarray, sequences: tuple[str, ...], repeats: int = 5) -> float:
    """Mean CV AUC of logistic regression on the features of ``sequences``."""
    cols = [c for c in x.columns if c.split(":")[0] in sequences]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000))
    aucs = []
    for seed in range(repeats):
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        p = cross_val_predict(model, x[cols], y, cv=folds, method="predict_proba")[:, 1]
        aucs.append(roc_auc_score(y, p))
    return float(np.mean(aucs))


def parse_set(name: str) -> tuple[str, ...]:
    """``all`` -> the four sequences; ``t2+flair`` -> (t2, flair)."""
    seqs = tuple(SEQUENCES) if name == "all" else tuple(name.split("+"))
    unknown = [s for s in seqs if s not in SEQUENCES]
    if unknown:
        raise SystemExit(f"unknown sequence(s) {unknown} in set {name!r}; valid: {', '.join(SEQUENCES)}, all")
    return seqs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cohort", type=Path)
    ap.add_argument("--sets", default="t1ce,flair,t2,t1,t2+flair,t1ce+flair,all")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    if not (args.cohort / "cohort.csv").is_file():
        raise SystemExit(f"{args.cohort}: no cohort.csv (give a preprocessed cohort directory)")
    sets = {name: parse_set(name) for name in args.sets.split(",")}
    table = pd.read_csv(args.cohort / "cohort.csv").dropna(subset=["npz"])
    rows, grades = [], []
    for row in table.itertuples():
        image, brain, seg = case_arrays(args.cohort, row.npz)
        if seg is None or not (seg > 0).any():
            continue
        rows.append(lesion_features(image, seg, brain))
        grades.append(row.grade == "HGG")
    y = np.asarray(grades)
    if len(set(y)) < 2 or min(y.sum(), (~y).sum()) < 5:
        raise SystemExit(f"{args.cohort}: needs >= 5 cases of each grade with a segmentation; found {len(y)} "
                         f"({int(y.sum())} HGG)")
    x = pd.DataFrame(rows)
    print(f"{len(y)} cases ({int(y.sum())} HGG)")
    for name, seqs in sets.items():
        print(f"{name}: AUC {set_auc(x, y, seqs, args.repeats):.3f}")


if __name__ == "__main__":
    main()
