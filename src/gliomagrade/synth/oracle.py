"""How separable are the grades *in the drawn parameters*? A ceiling for image models, used to tune
``difficulty``: cross-validated AUC (LGG vs HGG) of gradient boosting on the true tumour parameters,
for all parameters and for the subsets that one sequence shows.
"""

from __future__ import annotations

import numpy as np

from gliomagrade.synth.params import SynthParams
from gliomagrade.synth.tumour import GRADE_TABLE, draw_parameter

FEATURES = ("enhancing", "coverage", "enhancement", "necrosis", "necrosis_fraction", "oedema_extent",
            "radius", "heterogeneity", "irregularity", "mass_effect", "mismatch")
VISIBLE = {
    "all": FEATURES,
    # enhancement and the dark necrotic core need t1ce; oedema extent needs T2/FLAIR
    "t1ce": ("enhancing", "coverage", "enhancement", "necrosis", "necrosis_fraction", "radius", "heterogeneity",
             "irregularity"),
    "flair": ("oedema_extent", "radius", "irregularity", "mass_effect", "necrosis"),
    # the T2-FLAIR mismatch needs both
    "t2+flair": ("oedema_extent", "radius", "irregularity", "mass_effect", "necrosis", "mismatch"),
}


def draw_features(params: SynthParams, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` draws of (feature matrix, is_hgg) with the cohort's grade mix and difficulty."""
    from gliomagrade.synth.cohort import draw_grade

    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        who = draw_grade(params, rng)
        d = {name: draw_parameter(name, who, params.difficulty, rng) for name in GRADE_TABLE}
        enh, nec = d["p_enhancing"], d["p_necrosis"]
        rows.append([enh, enh * np.clip(d["enhancing_coverage"], 0.05, 0.95), enh * d["enhancement_ratio"], nec,
                     nec * d["necrosis_fraction"], d["oedema_extent"], d["radius_mm"], d["heterogeneity"],
                     d["irregularity"], d["mass_effect"], d["p_mismatch"]])
        labels.append(who == 4)
    return np.asarray(rows), np.asarray(labels)


def oracle_auc(
    params: SynthParams | None = None, n: int = 1500, seed: int = 0, subsets: tuple[str, ...] = tuple(VISIBLE)
) -> dict[str, float]:
    """5-fold AUC of gradient boosting on the true parameters visible to each sequence subset."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    x, y = draw_features(params or SynthParams(), n, seed)
    out = {}
    for name in subsets:
        idx = [FEATURES.index(c) for c in VISIBLE[name]]
        scores = cross_val_score(GradientBoostingClassifier(random_state=0), x[:, idx], y, cv=5, scoring="roc_auc")
        out[name] = float(np.mean(scores))
    return out
