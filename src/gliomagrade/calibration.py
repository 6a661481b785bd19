"""Post-hoc calibration (temperature scaling) and operating-point choice, fitted on validation data only.

Temperature scaling (Guo et al. 2017) divides every logit by one scalar ``T`` fitted by minimising
the negative log-likelihood of the validation labels; it changes confidence, never the ranking (AUC)
nor the arg-max. The decision threshold of a binary model is chosen on the same validation split and
then frozen: choosing it on test/OOF data would leak labels into the reported metrics.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.metrics import roc_curve

log = logging.getLogger(__name__)

T_BOUNDS: tuple[float, float] = (0.05, 20.0)
"""Allowed temperature range; the optimum is searched over ``log T`` inside it."""


TIE_TOL = 1e-9
"""Criterion values closer than this are ties (rates are ratios of small integers)."""


class CalibrationWarning(UserWarning):
    """Temperature scaling could not be fitted; the identity (T = 1) is used."""


def _check_logits(logits: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    z = np.asarray(logits, dtype=float)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be (N, K>=2), got shape {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must be ({z.shape[0]},) to match logits, got shape {y.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"logits hold {int((~np.isfinite(z)).sum())} non-finite values")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in [0, {z.shape[1]}), found {sorted(np.unique(y).tolist())}")
    return z, y


def nll(logits: ArrayLike, labels: ArrayLike, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z, y = _check_logits(logits, labels)
    return float(-log_softmax(z / temperature, axis=1)[np.arange(y.size), y].mean())


def fit_temperature(logits: ArrayLike, labels: ArrayLike) -> float:
    """Temperature ``T`` minimising validation NLL (L-BFGS-B over ``log T``, ``T`` in ``T_BOUNDS``).

    The fit is impossible, and ``1.0`` is returned with a ``CalibrationWarning``, when the labels hold
    fewer than two classes (the NLL then falls monotonically towards T -> 0 for a correct model and is
    no estimate of anything) or there are no cases. Reaching a bound is logged: it means the
    validation logits are nearly constant or nearly perfectly separated.
    """
    z, y = _check_logits(logits, labels)
    present = np.unique(y)
    if present.size < 2:
        msg = f"temperature scaling needs >= 2 classes in the validation labels, found {present.tolist()}; using T=1"
        warnings.warn(msg, CalibrationWarning, stacklevel=2)
        log.warning(msg)
        return 1.0
    rows = np.arange(y.size)

    def objective(log_t: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        t = float(np.exp(log_t[0]))
        logp = log_softmax(z / t, axis=1)
        # d NLL / d log T = mean( (z_y - E_p[z]) / T )
        expected = (np.exp(logp) * z).sum(axis=1)
        grad = float(((z[rows, y] - expected) / t).mean())
        return float(-logp[rows, y].mean()), np.array([grad])

    bounds = [(np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1]))]
    res = minimize(objective, x0=np.zeros(1), jac=True, method="L-BFGS-B", bounds=bounds)
    t = float(np.exp(res.x[0]))
    if not res.success:
        log.warning("temperature fit did not converge (%s); T=%.3f", res.message, t)
    if np.isclose(t, T_BOUNDS[0], rtol=1e-3) or np.isclose(t, T_BOUNDS[1], rtol=1e-3):
        log.warning("temperature %.3f reached its bound %s: validation logits are degenerate", t, T_BOUNDS)
    return t


def apply_temperature(logits: ArrayLike, temperature: float) -> NDArray[np.float64]:
    """Calibrated class probabilities ``softmax(logits / T)`` (rows sum to 1)."""
    z = np.asarray(logits, dtype=float)
    if not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if z.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {z.shape}")
    return softmax(z / temperature, axis=1)


def choose_threshold(
    y_true: ArrayLike,
    prob_pos: ArrayLike,
    rule: Literal["youden", "sensitivity"] = "youden",
    target_sensitivity: float = 0.9,
) -> float:
    """Decision threshold on *validation* scores; a case is positive when ``prob_pos >= threshold``.

    - ``youden``: maximise ``sensitivity + specificity - 1`` over the ROC's thresholds.
    - ``sensitivity``: the largest threshold whose sensitivity is ``>= target_sensitivity`` (the most
      specific operating point that still meets the target).

    Ties: among thresholds with the same criterion value the *largest* threshold wins (fewer false
    positives). Candidates are the observed scores (scikit-learn ``roc_curve`` with every point kept),
    so the returned value is always one of ``prob_pos``.
    """
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(prob_pos, dtype=float)
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"y_true {y.shape} and prob_pos {p.shape} must be equal-length 1-D arrays")
    present = sorted(np.unique(y).tolist())
    if present != [0, 1]:
        raise ValueError(
            f"choosing a threshold needs both classes 0 and 1 in the validation labels, found {present}"
        )
    if not 0 < target_sensitivity <= 1:
        raise ValueError(f"target_sensitivity must lie in (0, 1], got {target_sensitivity}")
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    # drop sklearn's artificial first point (threshold = inf: nobody positive)
    fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]
    if rule == "youden":
        j = tpr - fpr
        # thresholds decrease along the curve: the first index within rounding of the maximum is the
        # largest tied threshold (2/3 - 0 and 1 - 1/3 differ in the last bit, and are a tie)
        return float(thr[int(np.flatnonzero(j >= j.max() - TIE_TOL)[0])])
    if rule == "sensitivity":
        return float(thr[int(np.flatnonzero(tpr >= target_sensitivity - TIE_TOL)[0])])
    raise ValueError(f"unknown threshold rule {rule!r}; expected 'youden' or 'sensitivity'")
