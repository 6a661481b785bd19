"""Classification metrics with bootstrap confidence intervals, on scikit-learn and scipy.

Conventions (used by ``evaluate``, the gate and the report):

- Binary scores are the probability of the positive class (index 1, ``HGG``); a case is called
  positive when ``score >= threshold``.
- Multiclass scores are an ``(N, K)`` probability matrix; the prediction is the arg-max.
- Confidence intervals are percentile bootstrap intervals (default 95 %, 2000 resamples). The
  default resampling is *stratified*: each class is resampled within itself, so every resample holds
  every class and no resample is degenerate. Unstratified resamples that lose a class (the metric
  raises or returns NaN) are dropped and counted; with fewer than half the resamples valid the
  interval is ``(nan, nan)``.
- A metric that is undefined on the data (AUC with one class) is ``nan``, never a silent 0.5.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import binned_statistic, mannwhitneyu
from sklearn.metrics import (
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.preprocessing import label_binarize

log = logging.getLogger(__name__)

MetricFn = Callable[[NDArray[Any], NDArray[Any]], float]
Interval = tuple[float, float]

N_BOOT = 2000
"""Default number of bootstrap resamples."""
MIN_VALID_FRACTION = 0.5
"""Below this fraction of valid (non-degenerate) resamples a CI is reported as ``(nan, nan)``."""


# ----------------------------------------------------------------------------------------------- inputs
def _labels(y_true: ArrayLike, name: str = "y_true") -> NDArray[np.int64]:
    """Validate integer class labels (1-D, non-empty)."""
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class indices, got shape {y.shape}")
    if not np.all(np.isfinite(y.astype(float))) or np.any(y.astype(float) != np.round(y.astype(float))):
        raise ValueError(f"{name} must hold integer class indices, got {y[:5]}...")
    return y.astype(np.int64)


def _scores(scores: ArrayLike, n: int, name: str = "scores") -> NDArray[np.float64]:
    """Validate a score vector or matrix aligned with ``n`` labels and free of NaN/inf."""
    s = np.asarray(scores, dtype=float)
    if s.shape[0] != n:
        raise ValueError(f"{name} has {s.shape[0]} rows but y_true has {n}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} holds {int((~np.isfinite(s)).sum())} non-finite values")
    return s


def _binary(y_true: ArrayLike) -> NDArray[np.int64]:
    y = _labels(y_true)
    bad = sorted(set(np.unique(y).tolist()) - {0, 1})
    if bad:
        raise ValueError(f"binary labels must be 0/1, found {bad}")
    return y


def _safe(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Evaluate a metric; undefined (ValueError, e.g. one class present) becomes NaN."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn(*args, **kwargs))
    except ValueError:
        return float("nan")


# ----------------------------------------------------------------------------------------------- binary
def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC (binary: positive-class score; multiclass: macro one-vs-rest); NaN when undefined."""
    y = _labels(y_true)
    s = _scores(scores, y.size)
    if np.unique(y).size < 2:
        return float("nan")
    if s.ndim == 1:
        return _safe(roc_auc_score, y, s)
    k = s.shape[1]
    if k == 2:
        return _safe(roc_auc_score, y, s[:, 1])
    if np.unique(y).size < k:
        return float("nan")
    return _safe(roc_auc_score, y, s, multi_class="ovr", average="macro", labels=list(range(k)))


def binary_metrics(
    y_true: ArrayLike, prob_pos: ArrayLike, threshold: float | ArrayLike = 0.5
) -> dict[str, Any]:
    """Threshold-free (AUC) and thresholded metrics of a binary classifier.

    ``threshold`` may be one number or one per case (pooled out-of-fold predictions where each fold
    has its own threshold). Keys: ``n, n_pos, prevalence, auc, sensitivity, specificity,
    balanced_accuracy, f1, ppv, npv, accuracy, confusion_matrix`` ([[TN, FP], [FN, TP]]).
    """
    y = _binary(y_true)
    p = _scores(prob_pos, y.size, "prob_pos")
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), p.shape)
    pred = (p >= thr).astype(np.int64)
    out = thresholded_binary(y, pred)
    out["auc"] = roc_auc(y, p)
    return out


def thresholded_binary(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, Any]:
    """Metrics of hard binary predictions (sensitivity = recall of class 1, specificity of class 0)."""
    y, pred = _binary(y_true), _binary(y_pred)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel().tolist()

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    sens, spec = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return {
        "n": int(y.size),
        "n_pos": int(tp + fn),
        "prevalence": ratio(tp + fn, y.size),
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": (sens + spec) / 2,
        "f1": float(f1_score(y, pred, labels=[0, 1], zero_division=np.nan)),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "accuracy": ratio(tp + tn, y.size),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


# ------------------------------------------------------------------------------------------- bootstrap
def stratified_indices(y: NDArray[np.int64], n_boot: int, seed: int) -> dict[int, NDArray[np.int64]]:
    """Per class ``c``: ``(n_boot, n_c)`` indices drawn with replacement among that class's cases."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in np.unique(y).tolist():
        members = np.flatnonzero(y == c)
        out[int(c)] = members[rng.integers(0, members.size, size=(n_boot, members.size))]
    return out


def _resample_indices(y: NDArray[np.int64], n_boot: int, seed: int, stratified: bool) -> NDArray[np.int64]:
    """``(n_boot, N)`` resample indices; stratified keeps each class's count (same draws as ``stratified_indices``)."""
    if not stratified:
        return np.random.default_rng(seed).integers(0, y.size, size=(n_boot, y.size))
    return np.concatenate(list(stratified_indices(y, n_boot, seed).values()), axis=1)


def _check_boot(y: NDArray[Any], s: NDArray[Any], n_boot: int) -> None:
    if s.shape[0] != y.size:
        raise ValueError(f"scores has {s.shape[0]} rows but y_true has {y.size}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def bootstrap_cis(
    metric_fns: Mapping[str, MetricFn],
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    stratified: bool = True,
    alpha: float = 0.05,
) -> dict[str, Interval]:
    """Percentile CIs of any metrics ``fn(y, scores)``, all computed on the *same* resamples.

    The generic (one call per resample) path; ``auc_with_ci``, ``binary_cis`` and
    ``paired_bootstrap_delta_auc`` are vectorised equivalents for the standard metrics.
    """
    y = _labels(y_true)
    s = np.asarray(scores)
    _check_boot(y, s, n_boot)
    idx = _resample_indices(y, n_boot, seed, stratified)
    values = {name: np.full(n_boot, np.nan) for name in metric_fns}
    for b in range(n_boot):
        yb, sb = y[idx[b]], s[idx[b]]
        for name, fn in metric_fns.items():
            values[name][b] = _safe(fn, yb, sb)
    return {name: percentile_interval(v, alpha, name) for name, v in values.items()}


def percentile_interval(values: ArrayLike, alpha: float = 0.05, name: str = "metric") -> Interval:
    """``(alpha/2, 1-alpha/2)`` percentiles of the defined resample values; NaN if too few are defined."""
    v = np.asarray(values, dtype=float)
    valid = v[np.isfinite(v)]
    if valid.size == 0 or valid.size < MIN_VALID_FRACTION * v.size:
        log.warning("bootstrap CI of %s: only %d/%d resamples defined -> CI is nan", name, valid.size, v.size)
        return (float("nan"), float("nan"))
    if valid.size < v.size:
        log.info("bootstrap CI of %s: dropped %d degenerate resamples", name, v.size - valid.size)
    lo, hi = np.percentile(valid, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def bootstrap_ci(
    metric_fn: MetricFn,
    y_true: ArrayLike,
    scores: ArrayLike,
    n_boot: int = N_BOOT,
    seed: int = 0,
    stratified: bool = True,
    alpha: float = 0.05,
) -> Interval:
    """Percentile bootstrap ``(lo, hi)`` of ``metric_fn(y, scores)``; degenerate resamples dropped."""
    return bootstrap_cis(
        {"metric": metric_fn}, y_true, scores, n_boot=n_boot, seed=seed, stratified=stratified, alpha=alpha
    )["metric"]


def _ovr_auc_resamples(
    s: NDArray[np.float64], strata: dict[int, NDArray[np.int64]], cls: int
) -> NDArray[np.float64]:
    """AUC of ``cls`` vs rest on each stratified resample: Mann-Whitney U / (n_pos n_neg) (scipy)."""
    pos = strata[cls]
    neg = np.concatenate([v for c, v in strata.items() if c != cls], axis=1)
    u = mannwhitneyu(s[pos], s[neg], axis=1, method="asymptotic").statistic
    return np.asarray(u, dtype=float) / (pos.shape[1] * neg.shape[1])


def auc_resamples(scores: NDArray[np.float64], strata: dict[int, NDArray[np.int64]]) -> NDArray[np.float64]:
    """AUC (binary, or macro one-vs-rest for ``(N, K)`` scores) on each stratified resample."""
    if scores.ndim == 1:
        return _ovr_auc_resamples(scores, strata, 1)
    k = scores.shape[1]
    if k == 2:
        return _ovr_auc_resamples(scores[:, 1], strata, 1)
    return np.mean([_ovr_auc_resamples(scores[:, c], strata, c) for c in range(k)], axis=0)


def _auc_defined(y: NDArray[np.int64], s: NDArray[np.float64]) -> bool:
    k = 2 if s.ndim == 1 else s.shape[1]
    return np.unique(y).size == k and set(np.unique(y).tolist()) == set(range(k))


def auc_with_ci(
    y_true: ArrayLike, scores: ArrayLike, *, n_boot: int = N_BOOT, seed: int = 0, alpha: float = 0.05
) -> tuple[float, Interval]:
    """ROC AUC (binary or macro OvR) and its stratified percentile bootstrap CI (vectorised)."""
    y = _labels(y_true)
    s = _scores(scores, y.size)
    _check_boot(y, s, n_boot)
    auc = roc_auc(y, s)
    if not np.isfinite(auc) or not _auc_defined(y, s):
        return auc, (float("nan"), float("nan"))
    return auc, percentile_interval(auc_resamples(s, stratified_indices(y, n_boot, seed)), alpha, "auc")


def binary_cis(
    y_true: ArrayLike,
    prob_pos: ArrayLike,
    y_pred: ArrayLike,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Interval]:
    """Stratified bootstrap CIs of AUC, sensitivity, specificity, balanced accuracy and F1 (same resamples)."""
    y, pred = _binary(y_true), _binary(y_pred)
    p = _scores(prob_pos, y.size, "prob_pos")
    _check_boot(y, p, n_boot)
    if np.unique(y).size < 2:
        return {
            k: (float("nan"), float("nan"))
            for k in ("auc", "sensitivity", "specificity", "balanced_accuracy", "f1")
        }
    strata = stratified_indices(y, n_boot, seed)
    tp = pred[strata[1]].sum(axis=1).astype(float)
    fp = pred[strata[0]].sum(axis=1).astype(float)
    n_pos, n_neg = strata[1].shape[1], strata[0].shape[1]
    sens, spec = tp / n_pos, 1 - fp / n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    values = {
        "auc": auc_resamples(p, strata),
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": (sens + spec) / 2,
        "f1": f1,
    }
    return {k: percentile_interval(v, alpha, k) for k, v in values.items()}


def balanced_accuracy_ci(
    y_true: ArrayLike, y_pred: ArrayLike, *, n_boot: int = N_BOOT, seed: int = 0, alpha: float = 0.05
) -> Interval:
    """Stratified bootstrap CI of balanced accuracy (mean per-class recall) of hard predictions."""
    y, pred = _labels(y_true), _labels(y_pred, "y_pred")
    _check_boot(y, pred, n_boot)
    strata = stratified_indices(y, n_boot, seed)
    recalls = [(pred[idx] == c).mean(axis=1) for c, idx in strata.items()]
    return percentile_interval(np.mean(recalls, axis=0), alpha, "balanced_accuracy")


def paired_bootstrap_delta_auc(
    y_true: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """``AUC(a) - AUC(b)`` on the same subjects with a paired (same resamples) percentile CI."""
    y = _labels(y_true)
    a, b = _scores(scores_a, y.size, "scores_a"), _scores(scores_b, y.size, "scores_b")
    if a.shape != b.shape:
        raise ValueError(f"scores_a {a.shape} and scores_b {b.shape} must have the same shape")
    _check_boot(y, a, n_boot)
    point = roc_auc(y, a) - roc_auc(y, b)
    if not np.isfinite(point) or not _auc_defined(y, a):
        return float(point), float("nan"), float("nan")
    strata = stratified_indices(y, n_boot, seed)
    lo, hi = percentile_interval(auc_resamples(a, strata) - auc_resamples(b, strata), alpha, "delta_auc")
    return float(point), lo, hi


# ------------------------------------------------------------------------------------------ multiclass
def multiclass_metrics(
    y_true: ArrayLike,
    probs: ArrayLike,
    *,
    class_names: list[str] | tuple[str, ...] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Macro one-vs-rest AUC (with CI), per-class and macro-mean sensitivity/specificity, confusion matrix."""
    y = _labels(y_true)
    p = _scores(probs, y.size, "probs")
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be (N, K>=2), got shape {p.shape}")
    k = p.shape[1]
    if y.max() >= k or y.min() < 0:
        raise ValueError(f"labels must lie in [0, {k}), found {sorted(np.unique(y).tolist())}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} probability columns")
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, labels=list(range(k)))
    auc, auc_ci = auc_with_ci(y, p, n_boot=n_boot, seed=seed)
    onehot = label_binarize(y, classes=list(range(k)))
    per_class = {}
    for c, name in enumerate(names):
        ovr = thresholded_binary(onehot[:, c], (pred == c).astype(int))
        per_class[name] = {
            "n": int((y == c).sum()),
            "auc": roc_auc(onehot[:, c], p[:, c]),
            "sensitivity": ovr["sensitivity"],
            "specificity": ovr["specificity"],
            "ppv": ovr["ppv"],
        }
    return {
        "n": int(y.size),
        "class_counts": {name: int((y == c).sum()) for c, name in enumerate(names)},
        "auc": auc,
        "auc_ci": list(auc_ci),
        "balanced_accuracy": _safe(balanced_accuracy_score, y, pred),
        "balanced_accuracy_ci": list(balanced_accuracy_ci(y, pred, n_boot=n_boot, seed=seed)),
        "accuracy": float((pred == y).mean()),
        "sensitivity": float(np.nanmean([v["sensitivity"] for v in per_class.values()])),
        "specificity": float(np.nanmean([v["specificity"] for v in per_class.values()])),
        "f1": float(f1_score(y, pred, labels=list(range(k)), average="macro", zero_division=np.nan)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


# ----------------------------------------------------------------------------------------- calibration
def _prob_matrix(probs: ArrayLike, n: int) -> NDArray[np.float64]:
    """A 1-D positive-class probability becomes the 2-column matrix ``[1-p, p]``."""
    p = _scores(probs, n, "probs")
    if p.ndim == 1:
        if np.any((p < 0) | (p > 1)):
            raise ValueError("binary probabilities must lie in [0, 1]")
        p = np.stack([1 - p, p], axis=1)
    return p


def reliability_curve(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> dict[str, list[float]]:
    """Top-label reliability: per equal-width confidence bin, mean confidence, accuracy and count.

    Confidence is the largest class probability (for binary input ``max(p, 1-p)``). Bins are
    ``n_bins`` equal-width intervals of [0, 1], right-closed except the first (scipy
    ``binned_statistic``); empty bins are omitted.
    """
    y = _labels(y_true)
    p = _prob_matrix(probs, y.size)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts, _, _ = binned_statistic(conf, correct, statistic="count", bins=edges)
    acc, _, _ = binned_statistic(conf, correct, statistic="mean", bins=edges)
    mean_conf, _, _ = binned_statistic(conf, conf, statistic="mean", bins=edges)
    keep = counts > 0
    return {
        "bin_lower": edges[:-1][keep].tolist(),
        "bin_upper": edges[1:][keep].tolist(),
        "confidence": mean_conf[keep].tolist(),
        "accuracy": acc[keep].tolist(),
        "count": counts[keep].astype(int).tolist(),
    }


def ece(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017): top-label, ``n_bins`` equal-width bins.

    ``ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|`` over the bins of ``reliability_curve``.
    """
    curve = reliability_curve(y_true, probs, n_bins)
    counts = np.asarray(curve["count"], dtype=float)
    gap = np.abs(np.asarray(curve["accuracy"]) - np.asarray(curve["confidence"]))
    return float((counts * gap).sum() / counts.sum())


def brier(y_true: ArrayLike, probs: ArrayLike) -> float:
    """Brier score: binary ``mean((p - y)^2)``; multiclass ``mean(sum_k (p_k - y_k)^2)`` (scikit-learn)."""
    y = _labels(y_true)
    p = _scores(probs, y.size, "probs")
    if p.ndim == 1:
        return float(brier_score_loss(y, p, labels=[0, 1]))
    if p.shape[1] == 2:
        return float(brier_score_loss(y, p[:, 1], labels=[0, 1]))
    return float(brier_score_loss(y, p, labels=list(range(p.shape[1])), scale_by_half=False))


# ------------------------------------------------------------------------------------------------ ROC
def thinned_roc(y_true: ArrayLike, scores: ArrayLike, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve (scikit-learn, intermediate points dropped), thinned to ``max_points`` for JSON/KFP.

    The first and last points are always kept; the infinite first threshold is written as 1.0 + the
    largest score so that the lists stay JSON-valid.
    """
    y = _binary(y_true)
    s = _scores(scores, y.size)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=True)
    thr = thr.astype(float)
    thr[~np.isfinite(thr)] = float(s.max()) + 1.0
    if fpr.size > max_points:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, max_points)).astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


def roc_band(
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    n_boot: int = 500,
    seed: int = 0,
    alpha: float = 0.05,
    grid: int = 101,
) -> dict[str, list[float]]:
    """Pointwise bootstrap band of the ROC: TPR percentiles at a fixed FPR grid (stratified)."""
    y = _binary(y_true)
    s = _scores(scores, y.size)
    fpr_grid = np.linspace(0, 1, grid)
    idx = _resample_indices(y, n_boot, seed, stratified=True)
    curves = np.empty((n_boot, grid))
    for b in range(n_boot):
        fpr, tpr, _ = roc_curve(y[idx[b]], s[idx[b]])
        curves[b] = np.interp(fpr_grid, fpr, tpr)
    lo, hi = np.percentile(curves, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return {"fpr": fpr_grid.tolist(), "tpr_lo": lo.tolist(), "tpr_hi": hi.tolist()}
