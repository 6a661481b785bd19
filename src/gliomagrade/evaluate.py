"""Evaluation of a cross-validation run from its saved out-of-fold predictions.

Reads ``RUN/oof.csv`` and ``RUN/folds/<k>/meta.json`` (plus ``cam/cam_stats.csv`` and
``ablation.csv`` when present) and writes ``RUN/metrics.json`` and ``RUN/metrics_table.md``.

Stable keys (read by the gate, the KFP ClassificationMetrics artifact and the registry manifest);
``docs/evaluation.md`` documents each one:

- ``schema_version``, ``task`` ("binary" | "who"), ``class_names``, ``positive_class`` (binary),
  ``n``, ``n_folds``, ``class_counts``, ``bootstrap`` (n_boot, seed, alpha, method)
- ``pooled``: ``auc``, ``auc_ci``, ``balanced_accuracy`` (+``_ci``), ``sensitivity`` (+``_ci``),
  ``specificity`` (+``_ci``), ``f1`` (+``_ci``), ``ppv``, ``npv``, ``accuracy``, ``ece``,
  ``ece_uncalibrated``, ``brier``, ``confusion_matrix``, ``roc`` (fpr/tpr/thresholds, thinned),
  multiclass also ``per_class`` and ``roc_per_class``
- ``folds``: list ordered by fold, each ``fold, n, auc, auc_ci, balanced_accuracy, sensitivity,
  specificity, f1, ece, brier, threshold, temperature, best_epoch, confusion_matrix``
- ``calibration``: ``n_bins``, ``reliability`` (pooled, calibrated), ``reliability_uncalibrated``
- ``cam`` (or null), ``ablation`` (or null)

Binary pooled thresholded metrics apply each case's *own fold's* threshold (chosen on that fold's
validation split), never a threshold tuned on the out-of-fold predictions themselves.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import softmax
from scipy.stats import binomtest
from scipy.stats import bootstrap as scipy_bootstrap
from sklearn.preprocessing import label_binarize

from gliomagrade import metrics as M
from gliomagrade.errors import InputError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
N_BINS = 15
OOF_REQUIRED = ("subject_id", "fold", "label")
REFERENCE_VARIANTS = ("full", "all", "baseline", "reference")


# ------------------------------------------------------------------------------------------- reading
def read_fold_metas(run_dir: Path) -> dict[int, dict[str, Any]]:
    """``{fold: meta}`` from ``RUN/folds/<k>/meta.json``."""
    metas: dict[int, dict[str, Any]] = {}
    for path in sorted((run_dir / "folds").glob("*/meta.json")):
        try:
            fold = int(path.parent.name)
            metas[fold] = json.loads(path.read_text())
        except (ValueError, json.JSONDecodeError) as exc:
            raise InputError(f"unreadable fold meta ({exc})", source=str(path)) from exc
    return metas


def read_oof(run_dir: Path) -> pd.DataFrame:
    """``RUN/oof.csv`` with its required columns checked."""
    path = run_dir / "oof.csv"
    if not path.is_file():
        raise InputError("out-of-fold predictions not found", source=str(path))
    df = pd.read_csv(path, dtype={"subject_id": str})
    missing = [c for c in OOF_REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"missing columns {missing}; found {list(df.columns)}", source=str(path))
    if df.empty:
        raise InputError("no rows", source=str(path))
    dup = df["subject_id"][df["subject_id"].duplicated()].tolist()
    if dup:
        raise InputError(f"{len(dup)} subjects appear more than once (patient leakage?)", source=str(path))
    return df


def resolve_class_names(df: pd.DataFrame, metas: dict[int, dict[str, Any]], source: str) -> list[str]:
    """Class names from the fold metas (all must agree), else from the ``prob_<class>`` columns."""
    names = {tuple(m["class_names"]) for m in metas.values() if "class_names" in m}
    if len(names) > 1:
        raise InputError(f"fold metas disagree on class_names: {sorted(names)}", source=source)
    if names:
        return list(names.pop())
    cols = [c[len("prob_") :] for c in df.columns if c.startswith("prob_")]
    if len(cols) < 2:
        raise InputError("no class_names in fold metas and fewer than 2 prob_<class> columns", source=source)
    return cols


def score_matrix(
    df: pd.DataFrame, class_names: Sequence[str], prefix: str, source: str
) -> NDArray[np.float64]:
    """The ``(N, K)`` matrix of ``<prefix><class>`` columns, checked for presence and finiteness."""
    cols = [f"{prefix}{c}" for c in class_names]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"missing columns {missing} for classes {list(class_names)}", source=source)
    values = df[cols].to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise InputError(f"non-finite {prefix}* values for {int(bad.sum())} rows", source=source)
    return values


# ------------------------------------------------------------------------------------------- binary
def pooled_binary(
    y: NDArray[np.int64], prob: NDArray[np.float64], thresholds: NDArray[np.float64], n_boot: int, seed: int
) -> dict[str, Any]:
    """Pooled OOF binary metrics with bootstrap CIs (shared resamples) and a thinned ROC."""
    p = prob[:, 1]
    out = M.binary_metrics(y, p, thresholds)
    pred = (p >= thresholds).astype(int)
    for name, ci in M.binary_cis(y, p, pred, n_boot=n_boot, seed=seed).items():
        out[f"{name}_ci"] = list(ci)
    out["roc"] = M.thinned_roc(y, p) if np.unique(y).size == 2 else {"fpr": [], "tpr": [], "thresholds": []}
    return out


# ----------------------------------------------------------------------------------------- multiclass
def pooled_multiclass(
    y: NDArray[np.int64], prob: NDArray[np.float64], class_names: Sequence[str], n_boot: int, seed: int
) -> dict[str, Any]:
    """Pooled OOF multiclass metrics (macro means) plus per-class and micro-average ROC curves."""
    out = M.multiclass_metrics(y, prob, class_names=class_names, n_boot=n_boot, seed=seed)
    k = len(class_names)
    onehot = label_binarize(y, classes=list(range(k)))
    out["roc_per_class"] = {
        name: M.thinned_roc(onehot[:, c], prob[:, c])
        for c, name in enumerate(class_names)
        if 0 < onehot[:, c].sum() < y.size
    }
    out["roc"] = M.thinned_roc(onehot.ravel(), prob.ravel())  # micro-average one-vs-rest
    return out


# --------------------------------------------------------------------------------------------- folds
def fold_metrics(
    binary: bool,
    fold: int,
    y: NDArray[np.int64],
    prob: NDArray[np.float64],
    meta: dict[str, Any],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """One fold's metrics (binary: at its own threshold), with its calibration and training facts."""
    if binary:
        thr = _fold_threshold(meta, fold)
        m = M.binary_metrics(y, prob[:, 1], thr)
        m["threshold"] = thr
        m["auc"], ci = M.auc_with_ci(y, prob[:, 1], n_boot=n_boot, seed=seed + fold)
        m["auc_ci"] = list(ci)
    else:
        m = M.multiclass_metrics(y, prob, n_boot=n_boot, seed=seed + fold)
        del m["per_class"], m["class_counts"]
    m.update(
        fold=fold,
        ece=M.ece(y, prob, N_BINS),
        brier=M.brier(y, prob),
        temperature=meta.get("temperature"),
        best_epoch=meta.get("best_epoch"),
        val=meta.get("val_metrics", meta.get("val")),
    )
    return m


def _fold_threshold(meta: dict[str, Any], fold: int) -> float:
    thr = meta.get("threshold")
    if thr is None or not np.isfinite(float(thr)):
        raise InputError(
            f"fold {fold} meta.json has no finite 'threshold' (found {thr!r})",
            source=f"folds/{fold}/meta.json",
        )
    return float(thr)


# ----------------------------------------------------------------------------------------------- CAM
def cam_summary(path: Path, seed: int = 0) -> dict[str, Any] | None:
    """Mean CAM mass inside the tumour (bootstrap CI) and pointing-game hit rate (Wilson CI), over all
    scored cases and (``high_grade_predicted``) over those the model calls high grade: the cases where
    the served map is the evidence for the call; and the mean Dice of the model's own segmentation
    (``segmentation_dice``, lesion-gated models and unet)."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"subject_id": str})
    missing = [c for c in ("subject_id", "cam_mass_inside", "pointing_hit") if c not in df.columns]
    if missing:
        raise InputError(f"missing columns {missing}; found {list(df.columns)}", source=str(path))
    out = _cam_stats(df, seed)
    if {"predicted", "cam_class"} <= set(df.columns):
        out["high_grade_predicted"] = _cam_stats(df[df["predicted"] == df["cam_class"]], seed)
    dice = [c for c in df.columns if c.startswith("dice_")]
    if dice:
        out["segmentation_dice"] = {c.removeprefix("dice_"): _mean_or_nan(df[c]) for c in dice}
    evidence = [c for c in df.columns if c.startswith("evidence_")]
    if evidence and "label" in df.columns:
        means = df.groupby("label")[evidence].mean()
        out["sequence_evidence"] = {c.removeprefix("evidence_"): {str(k): float(v) for k, v in means[c].items()}
                                    for c in evidence}
    return out


def _mean_or_nan(values: pd.Series) -> float:
    """Mean of the finite values (NaN: a class absent from both prediction and labels), NaN if none."""
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else math.nan


def _cam_stats(df: pd.DataFrame, seed: int) -> dict[str, Any]:
    """CAM localisation statistics of the rows of one ``cam_stats.csv`` (NaN where nothing is scored)."""
    mass = df["cam_mass_inside"].to_numpy(dtype=float)
    hits = df["pointing_hit"].map(_as_bool).to_numpy(dtype=float)
    mass, hits = mass[np.isfinite(mass)], hits[np.isfinite(hits)]
    out: dict[str, Any] = {
        "n": int(len(df)),
        "n_scored": int(mass.size),
        "mass_inside_mean": math.nan,
        "mass_inside_ci": [math.nan, math.nan],
        "pointing_rate": math.nan,
        "pointing_ci": [math.nan, math.nan],
        "n_pointing": int(hits.size),
    }
    if mass.size >= 2:
        res = scipy_bootstrap((mass,), np.mean, n_resamples=2000, method="percentile", random_state=seed)
        out["mass_inside_mean"] = float(mass.mean())
        out["mass_inside_ci"] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    elif mass.size == 1:
        out["mass_inside_mean"] = float(mass[0])
    if hits.size:
        k = int(hits.sum())
        ci = binomtest(k, int(hits.size)).proportion_ci(confidence_level=0.95, method="wilson")
        out["pointing_rate"] = k / hits.size
        out["pointing_ci"] = [float(ci.low), float(ci.high)]
    return out


def _as_bool(v: Any) -> float:
    if isinstance(v, str):
        s = v.strip().lower()
        return 1.0 if s in ("1", "true", "yes") else 0.0 if s in ("0", "false", "no") else math.nan
    return math.nan if v is None or (isinstance(v, float) and math.isnan(v)) else float(bool(v))


# ------------------------------------------------------------------------------------------ ablation
def ablation_summary(
    path: Path, oof: pd.DataFrame, class_names: Sequence[str], n_boot: int, seed: int
) -> list[dict[str, Any]] | None:
    """Ablation rows: per-subject predictions give AUC with CI and a paired delta vs the reference.

    Per-subject format: ``variant, subject_id, prob_<class>...`` (or ``score`` = positive-class
    probability for binary), labels from ``label`` or else from ``oof.csv``. The reference variant is
    the first of ``full/all/baseline/reference`` present, else the first listed;
    ``delta_auc = AUC(variant) - AUC(reference)`` on their common subjects with a paired bootstrap CI.
    Any other format is a summary table and its rows are passed through unchanged.
    """
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"subject_id": str, "variant": str})
    if "variant" not in df.columns:
        raise InputError(
            f"ablation table needs a 'variant' column; found {list(df.columns)}", source=str(path)
        )
    per_subject = "subject_id" in df.columns and (
        "score" in df.columns or all(f"prob_{c}" in df.columns for c in class_names)
    )
    if not per_subject:
        return [{k: _jsonable(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
    if "label" not in df.columns:
        df = df.merge(oof[["subject_id", "label"]], on="subject_id", how="inner")
    dup = df[df.duplicated(["variant", "subject_id"])]
    if len(dup):
        raise InputError(f"{len(dup)} (variant, subject) pairs appear more than once", source=str(path))
    variants = list(dict.fromkeys(df["variant"]))
    ref = next((v for v in REFERENCE_VARIANTS if v in variants), variants[0])
    by_variant = {v: df[df["variant"] == v].set_index("subject_id") for v in variants}
    return [
        _ablation_row(v, by_variant[v], by_variant[ref], ref, class_names, str(path), n_boot, seed)
        for v in variants
    ]


def _ablation_scores(sub: pd.DataFrame, class_names: Sequence[str], source: str) -> NDArray[np.float64]:
    """Positive-class score (binary) or the probability matrix (multiclass) of one variant."""
    if "score" in sub.columns and len(class_names) == 2:
        return sub["score"].to_numpy(dtype=float)
    s = score_matrix(sub, class_names, "prob_", source)
    return s[:, 1] if len(class_names) == 2 else s


def _ablation_row(
    variant: str,
    sub: pd.DataFrame,
    ref_df: pd.DataFrame,
    ref: str,
    class_names: Sequence[str],
    source: str,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """AUC (CI) of one variant and, unless it is the reference, the paired delta on common subjects."""
    auc, ci = M.auc_with_ci(
        sub["label"].to_numpy(dtype=int), _ablation_scores(sub, class_names, source), n_boot=n_boot, seed=seed
    )
    row: dict[str, Any] = {
        "variant": variant,
        "n": int(len(sub)),
        "auc": auc,
        "auc_ci": list(ci),
        "reference": ref,
    }
    common = sub.index.intersection(ref_df.index)
    if variant != ref and len(common):
        d, lo, hi = M.paired_bootstrap_delta_auc(
            sub.loc[common, "label"].to_numpy(dtype=int),
            _ablation_scores(sub.loc[common], class_names, source),
            _ablation_scores(ref_df.loc[common], class_names, source),
            n_boot=n_boot,
            seed=seed,
        )
        row.update(delta_auc=d, delta_auc_ci=[lo, hi], n_paired=int(len(common)))
    return row


# --------------------------------------------------------------------------------------------- main
def evaluate_run(run_dir: str | Path, *, n_boot: int = M.N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Evaluate a CV run directory; writes ``metrics.json`` and ``metrics_table.md`` and returns the dict."""
    run = Path(run_dir)
    oof_path = str(run / "oof.csv")
    oof = read_oof(run)
    metas = read_fold_metas(run)
    class_names = resolve_class_names(oof, metas, oof_path)
    k = len(class_names)
    task = str(next((m["task"] for m in metas.values() if "task" in m), "binary" if k == 2 else "who"))
    y = oof["label"].to_numpy(dtype=int)
    if y.min() < 0 or y.max() >= k:
        raise InputError(
            f"labels must lie in [0, {k}) for classes {class_names}, found {sorted(set(y))}", source=oof_path
        )
    prob = score_matrix(oof, class_names, "prob_", oof_path)
    folds = sorted(int(f) for f in oof["fold"].unique())
    missing_meta = [f for f in folds if f not in metas]
    if missing_meta and k == 2:
        raise InputError(
            f"no meta.json for folds {missing_meta} (their thresholds are needed)", source=str(run / "folds")
        )

    fold_idx = oof["fold"].to_numpy(dtype=int)
    if k == 2:
        thresholds = np.array([_fold_threshold(metas[f], f) for f in fold_idx])
        pooled = pooled_binary(y, prob, thresholds, n_boot, seed)
    else:
        pooled = pooled_multiclass(y, prob, class_names, n_boot, seed)
    pooled["ece"] = M.ece(y, prob, N_BINS)
    pooled["brier"] = M.brier(y, prob)
    calibration: dict[str, Any] = {
        "n_bins": N_BINS,
        "binning": "top-label, equal-width",
        "reliability": M.reliability_curve(y, prob, N_BINS),
    }
    if all(f"logit_{c}" in oof.columns for c in class_names):
        raw = softmax(score_matrix(oof, class_names, "logit_", oof_path), axis=1)
        pooled["ece_uncalibrated"] = M.ece(y, raw, N_BINS)
        pooled["brier_uncalibrated"] = M.brier(y, raw)
        calibration["reliability_uncalibrated"] = M.reliability_curve(y, raw, N_BINS)
    calibration["temperature_by_fold"] = {str(f): metas.get(f, {}).get("temperature") for f in folds}

    fold_rows = [
        fold_metrics(k == 2, f, y[fold_idx == f], prob[fold_idx == f], metas.get(f, {}), n_boot, seed)
        for f in folds
    ]
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "class_names": class_names,
        "positive_class": class_names[1] if k == 2 else None,
        "n": int(y.size),
        "n_folds": len(folds),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(class_names)},
        "bootstrap": {
            "n_boot": n_boot,
            "seed": seed,
            "alpha": 0.05,
            "method": "percentile, stratified by class",
        },
        "pooled": pooled,
        "folds": fold_rows,
        "calibration": calibration,
        "cam": cam_summary(run / "cam" / "cam_stats.csv", seed),
        "ablation": ablation_summary(run / "ablation.csv", oof, class_names, n_boot, seed),
    }
    write_json(result, run / "metrics.json")
    (run / "metrics_table.md").write_text(metrics_table(result))
    log.info(
        "evaluated %s: n=%d AUC %.3f [%.3f, %.3f]", run.name, result["n"], pooled["auc"], *pooled["auc_ci"]
    )
    return result


# ------------------------------------------------------------------------------------------- writing
def _jsonable(v: Any) -> Any:
    """NaN/inf -> None, numpy scalars/arrays -> Python, recursively (strict JSON for KFP and the registry)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write strict JSON (no NaN tokens) atomically."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False))
    tmp.replace(path)


def fmt(v: Any, ci: Sequence[Any] | None = None) -> str:
    """``0.912 [0.871, 0.948]``; missing values as ``n/a``."""

    def one(x: Any) -> str:
        return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{float(x):.3f}"

    return f"{one(v)} [{one(ci[0])}, {one(ci[1])}]" if ci is not None else one(v)


POOLED_ROWS = (
    ("ROC AUC", "auc"),
    ("Balanced accuracy", "balanced_accuracy"),
    ("Sensitivity", "sensitivity"),
    ("Specificity", "specificity"),
    ("F1", "f1"),
    ("PPV", "ppv"),
    ("NPV", "npv"),
    ("ECE (calibrated)", "ece"),
    ("ECE (uncalibrated)", "ece_uncalibrated"),
    ("Brier", "brier"),
)


def pooled_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, formatted value) rows of the pooled metrics table; absent metrics are left out."""
    p = result["pooled"]
    return [(label, fmt(p[key], p.get(f"{key}_ci"))) for label, key in POOLED_ROWS if key in p]


FOLD_COLS = (
    "fold",
    "n",
    "auc",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "ece",
    "threshold",
    "temperature",
    "best_epoch",
)


def fold_rows(result: dict[str, Any]) -> list[list[str]]:
    """Formatted per-fold table rows (columns ``FOLD_COLS``; AUC with its CI)."""
    rows = []
    for f in result["folds"]:
        cells = []
        for c in FOLD_COLS:
            v = f.get(c)
            if c == "auc":
                cells.append(fmt(v, f.get("auc_ci")))
            elif isinstance(v, float):
                cells.append(fmt(v))
            else:
                cells.append("n/a" if v is None else str(v))
        rows.append(cells)
    return rows


def metrics_table(result: dict[str, Any]) -> str:
    """Markdown tables: pooled OOF metrics with 95 % CIs, then one row per fold."""
    lines = [
        f"# Out-of-fold metrics ({result['task']}: {', '.join(result['class_names'])})",
        "",
        f"n = {result['n']} subjects in {result['n_folds']} folds; class counts "
        + ", ".join(f"{k} {v}" for k, v in result["class_counts"].items())
        + f". 95 % CIs: {result['bootstrap']['method']} bootstrap, {result['bootstrap']['n_boot']} resamples.",
        "",
        "| metric | value [95 % CI] |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in pooled_rows(result)],
        "",
        "| " + " | ".join(FOLD_COLS) + " |",
        "|" + "---|" * len(FOLD_COLS),
        *["| " + " | ".join(r) + " |" for r in fold_rows(result)],
        "",
    ]
    return "\n".join(lines)
