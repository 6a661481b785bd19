"""Sequence ablation: the same cross-validation for each single sequence and for all four.

Every variant uses the same seed, hence the same patient-level splits, so the out-of-fold predictions
cover the same subjects and the difference "all four minus the best single sequence" gets a *paired*
bootstrap CI (same resampled subjects for both AUCs). Outputs in ``out_dir``: one CV run per variant
(``<variant>/``), ``ablation.csv`` (one row per variant), ``ablation_oof.csv`` (per-subject
probabilities of every variant), ``ablation.json`` and ``ablation.png``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliomagrade.config import Profile
from gliomagrade.constants import SEQUENCES, parse_sequences
from gliomagrade.errors import ConfigError
from gliomagrade.metrics import N_BOOT, paired_bootstrap_delta_auc
from gliomagrade.train import train_cv

log = logging.getLogger(__name__)

DEFAULT_SETS: tuple[str, ...] = (*SEQUENCES, "all")
SUMMARY_COLUMNS = (
    "variant", "sequences", "n", "auc", "auc_lo", "auc_hi", "balanced_accuracy", "balanced_accuracy_lo",
    "balanced_accuracy_hi", "delta_auc_vs_best_single", "delta_lo", "delta_hi", "best_single",
)


def parse_sets(text: str | Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``"t1,t1ce,all,t1ce+flair"`` -> ``[(variant name, sequences)]``; ``all`` is the four sequences."""
    items = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not items:
        raise ConfigError("no ablation sets given; e.g. --sets t1,t1ce,t2,flair,all")
    out: list[tuple[str, tuple[str, ...]]] = []
    for item in items:
        try:
            seqs = SEQUENCES if item == "all" else parse_sequences(item.split("+"))
        except ValueError as exc:
            raise ConfigError(f"ablation set {item!r}: {exc}") from exc
        out.append((item, seqs))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"ablation sets repeat: {names}")
    return out


def _oof_scores(oof: pd.DataFrame, class_names: Sequence[str]) -> np.ndarray:
    """Positive-class probability (binary) or the probability matrix (multiclass), rows as in ``oof``."""
    prob = oof[[f"prob_{c}" for c in class_names]].to_numpy(dtype=float)
    return prob[:, 1] if len(class_names) == 2 else prob


def summarise(runs: dict[str, dict[str, Any]], sets: dict[str, tuple[str, ...]], *, seed: int = 0,
              n_boot: int = N_BOOT) -> list[dict[str, Any]]:
    """One row per variant (AUC and balanced accuracy with CIs) + the paired delta all-four vs best single."""
    rows = []
    for name, run in runs.items():
        pooled = run["metrics"]["pooled"]
        rows.append({
            "variant": name,
            "sequences": "+".join(sets[name]),
            "n": int(run["metrics"]["n"]),
            "auc": pooled["auc"],
            "auc_lo": pooled["auc_ci"][0],
            "auc_hi": pooled["auc_ci"][1],
            "balanced_accuracy": pooled.get("balanced_accuracy"),
            "balanced_accuracy_lo": (pooled.get("balanced_accuracy_ci") or [None, None])[0],
            "balanced_accuracy_hi": (pooled.get("balanced_accuracy_ci") or [None, None])[1],
        })
    singles = [r for r in rows if len(sets[r["variant"]]) == 1 and np.isfinite(r["auc"])]
    full = next((r for r in rows if len(sets[r["variant"]]) == len(SEQUENCES)), None)
    if full is not None and singles:
        best = max(singles, key=lambda r: r["auc"])
        a, b = runs[full["variant"]], runs[best["variant"]]
        oa = a["oof"].set_index("subject_id")
        ob = b["oof"].set_index("subject_id")
        common = oa.index.intersection(ob.index)
        oa, ob = oa.loc[common], ob.loc[common]
        if not (oa["label"] == ob["label"]).all():
            raise ConfigError("ablation variants disagree on the labels of the same subjects")
        names = a["metrics"]["class_names"]
        d, lo, hi = paired_bootstrap_delta_auc(oa["label"].to_numpy(dtype=int), _oof_scores(oa, names),
                                               _oof_scores(ob, names), n_boot=n_boot, seed=seed)
        full.update(delta_auc_vs_best_single=d, delta_lo=lo, delta_hi=hi, best_single=best["variant"])
    return rows


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Bar chart of pooled OOF AUC with 95% CI per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.5))
    x = np.arange(len(rows))
    auc = np.array([r["auc"] for r in rows], dtype=float)
    err = np.array([[a - r["auc_lo"], r["auc_hi"] - a] for r, a in zip(rows, auc, strict=True)], dtype=float).T
    ax.bar(x, auc, yerr=err, capsize=4, color=["tab:blue" if len(r["sequences"].split("+")) == 1 else "tab:orange"
                                              for r in rows])
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [r["variant"] for r in rows])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("OOF ROC AUC (95% CI)")
    ax.set_title("Sequence ablation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_ablation(
    cohort_dir: str | Path,
    profile: Profile,
    out_dir: str | Path,
    sets: str | Sequence[str] = DEFAULT_SETS,
    *,
    resume: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run one CV per sequence set (same seed and splits), then write the ablation table, JSON and plot."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = parse_sets(sets)
    runs: dict[str, dict[str, Any]] = {}
    for name, seqs in variants:
        log.info("ablation variant %s (%s)", name, ",".join(seqs))
        prof = profile.with_overrides(train={"sequences": list(seqs)})
        res = train_cv(cohort_dir, prof, out / name, resume=resume, progress=progress)
        if res.metrics is None or res.oof_path is None:
            raise ConfigError(f"ablation variant {name}: the CV run did not finish every fold")
        runs[name] = {"metrics": res.metrics, "oof": pd.read_csv(res.oof_path, dtype={"subject_id": str})}
    rows = summarise(runs, dict(variants), seed=profile.train.seed, n_boot=profile.train.n_boot)
    _write(out, rows, runs)
    return rows


def _write(out: Path, rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> None:
    """ablation.csv, ablation_oof.csv, ablation.json, ablation.png."""
    with (out / "ablation.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS))
        writer.writeheader()
        writer.writerows([{k: r.get(k, "") for k in SUMMARY_COLUMNS} for r in rows])
    frames = [run["oof"].assign(variant=name) for name, run in runs.items()]
    per_subject = pd.concat(frames, ignore_index=True)
    cols = ["variant", "subject_id", "fold", "label", *[c for c in per_subject.columns if c.startswith("prob_")]]
    per_subject[cols].to_csv(out / "ablation_oof.csv", index=False)
    clean = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in rows]
    (out / "ablation.json").write_text(json.dumps({"variants": clean}, indent=2))
    plot(rows, out / "ablation.png")
