"""Metrics agree with scikit-learn; bootstrap CIs behave; calibration error separates good from bad."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import (
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from gliomagrade import metrics as M


@pytest.fixture
def binary_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = (rng.random(120) < 0.4).astype(int)
    p = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, y.size), 0, 1)
    return y, p


@pytest.fixture
def multi_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3)) + 1.5 * np.eye(3)[y]
    return y, softmax(logits, axis=1)


def test_binary_metrics_match_sklearn(binary_data):
    y, p = binary_data
    m = M.binary_metrics(y, p, 0.5)
    pred = (p >= 0.5).astype(int)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred))
    assert m["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["ppv"] == pytest.approx(precision_score(y, pred))
    assert m["npv"] == pytest.approx(precision_score(y, pred, pos_label=0))
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert m["n"] == 120 and m["prevalence"] == pytest.approx(y.mean())


def test_binary_metrics_per_case_thresholds(binary_data):
    y, p = binary_data
    thr = np.where(np.arange(y.size) % 2 == 0, 0.3, 0.7)
    m = M.binary_metrics(y, p, thr)
    assert m["sensitivity"] == pytest.approx(recall_score(y, (p >= thr).astype(int)))
    assert M.binary_metrics(y, p, np.full(y.size, 0.4)) == M.binary_metrics(y, p, 0.4)


def test_auc_undefined_with_one_class_is_nan():
    m = M.binary_metrics(np.ones(10, int), np.linspace(0, 1, 10), 0.5)
    assert math.isnan(m["auc"]) and math.isnan(m["specificity"]) and m["sensitivity"] == pytest.approx(0.5)
    auc, ci = M.auc_with_ci(np.ones(10, int), np.linspace(0, 1, 10))
    assert math.isnan(auc) and all(math.isnan(c) for c in ci)


def test_binary_rejects_bad_inputs(binary_data):
    y, p = binary_data
    with pytest.raises(ValueError, match="rows"):
        M.binary_metrics(y, p[:-1])
    with pytest.raises(ValueError, match="0/1"):
        M.binary_metrics(y + 1, p)
    with pytest.raises(ValueError, match="non-finite"):
        M.binary_metrics(y, np.where(y == 1, np.nan, p))


def test_multiclass_metrics_match_sklearn(multi_data):
    y, p = multi_data
    m = M.multiclass_metrics(y, p, class_names=["a", "b", "c"], n_boot=200)
    pred = p.argmax(1)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    recalls = recall_score(y, pred, average=None)
    for c, name in enumerate("abc"):
        assert m["per_class"][name]["sensitivity"] == pytest.approx(recalls[c])
        assert m["per_class"][name]["auc"] == pytest.approx(roc_auc_score(y == c, p[:, c]))
        assert m["per_class"][name]["specificity"] == pytest.approx(recall_score(y != c, pred != c))
    assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
    assert m["balanced_accuracy_ci"][0] <= m["balanced_accuracy"] <= m["balanced_accuracy_ci"][1]


def test_vectorised_bootstrap_equals_generic_sklearn_path(binary_data, multi_data):
    """The fast Mann-Whitney/count resamples reproduce scikit-learn on the very same resamples."""
    y, p = binary_data
    nb = 40  # same seed -> same resamples -> identical percentiles for any n_boot
    assert M.auc_with_ci(y, p, n_boot=nb, seed=3)[1] == pytest.approx(
        M.bootstrap_ci(M.roc_auc, y, p, nb, seed=3)
    )
    ym, pm = multi_data
    assert M.auc_with_ci(ym, pm, n_boot=nb, seed=5)[1] == pytest.approx(
        M.bootstrap_ci(M.roc_auc, ym, pm, nb, seed=5)
    )
    pred = (p >= 0.5).astype(int)
    fast = M.binary_cis(y, p, pred, n_boot=nb, seed=1)
    generic = M.bootstrap_cis(
        {
            k: (lambda yy, ss, k=k: M.thresholded_binary(yy, ss)[k])
            for k in ("sensitivity", "specificity", "f1")
        },
        y,
        pred,
        n_boot=nb,
        seed=1,
    )
    for name, ci in generic.items():
        assert fast[name] == pytest.approx(ci), name
    generic_bacc = M.bootstrap_ci(balanced_accuracy_score, ym, pm.argmax(1), nb, seed=2)
    assert M.balanced_accuracy_ci(ym, pm.argmax(1), n_boot=nb, seed=2) == pytest.approx(generic_bacc)


def _signal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    return y, y * 1.0 + rng.normal(0, 1, n)


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    widths = []
    for n in (60, 600):
        y, s = _signal(n, 0)
        auc, (lo, hi) = M.auc_with_ci(y, s, n_boot=500)
        assert lo < auc < hi
        widths.append(hi - lo)
    # CI width scales ~ 1/sqrt(n): 10x the cases, ~3x narrower
    assert widths[1] < widths[0] / 2


def test_bootstrap_unstratified_drops_degenerate_resamples():
    y = np.zeros(30, int)
    y[:2] = 1  # many unstratified resamples hold no positive case
    s = np.linspace(1, 0, 30)
    lo, hi = M.bootstrap_ci(M.roc_auc, y, s, n_boot=100, stratified=False)
    assert 0.9 <= lo <= hi <= 1.0
    assert all(math.isnan(v) for v in M.percentile_interval(np.r_[np.full(6, np.nan), np.ones(4)]))


def test_paired_delta_auc():
    y, a = _signal(200, 1)
    rng = np.random.default_rng(2)
    b = a + rng.normal(0, 2, a.size)  # a degraded copy of a
    d, lo, hi = M.paired_bootstrap_delta_auc(y, a, b, n_boot=500)
    assert d == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert 0 < lo <= d <= hi
    assert M.paired_bootstrap_delta_auc(y, a, a, n_boot=100) == (0.0, 0.0, 0.0)
    d2, lo2, hi2 = M.paired_bootstrap_delta_auc(y, b, a, n_boot=500)
    assert (d2, lo2, hi2) == pytest.approx((-d, -hi, -lo))


def test_ece_calibrated_small_overconfident_large():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.random(p.size) < p).astype(int)  # labels drawn from the stated probabilities
    assert M.ece(y, p) < 0.02
    logit = np.log(p / (1 - p))
    overconfident = 1 / (1 + np.exp(-4 * logit))
    assert M.ece(y, overconfident) > 0.1
    z = rng.normal(0, 2, (5000, 3))
    probs = softmax(z, axis=1)
    ym = np.array([rng.choice(3, p=row) for row in probs])
    assert M.ece(ym, probs) < 0.03
    assert M.ece(ym, softmax(3 * z, axis=1)) > 0.1


def test_reliability_curve_and_brier(binary_data, multi_data):
    y, p = binary_data
    curve = M.reliability_curve(y, p, n_bins=10)
    assert sum(curve["count"]) == y.size
    assert all(lo >= 0.5 - 1e-9 for lo in np.asarray(curve["bin_upper"]))  # binary top-label conf >= 0.5
    assert M.brier(y, p) == pytest.approx(brier_score_loss(y, p))
    ym, pm = multi_data
    assert M.brier(ym, pm) == pytest.approx(np.mean(np.sum((pm - np.eye(3)[ym]) ** 2, axis=1)))


def test_thinned_roc(binary_data):
    y, p = binary_data
    roc = M.thinned_roc(y, p, max_points=20)
    assert len(roc["fpr"]) <= 20 and len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.isfinite(roc["thresholds"])) and np.all(np.diff(roc["fpr"]) >= 0)
