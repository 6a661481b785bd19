"""Temperature scaling recovers a known temperature; threshold rules pick documented points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from gliomagrade.calibration import (
    CalibrationWarning,
    apply_temperature,
    choose_threshold,
    fit_temperature,
    nll,
)


@pytest.mark.parametrize("t0", [0.5, 2.5])
def test_fit_temperature_recovers_known_temperature(t0: float):
    rng = np.random.default_rng(int(t0 * 10))
    z = rng.normal(0, 3, (6000, 3))
    labels = np.array([rng.choice(3, p=row) for row in softmax(z / t0, axis=1)])  # truth: softmax(z / T0)
    t = fit_temperature(z, labels)
    assert t == pytest.approx(t0, rel=0.1)
    assert nll(z, labels, t) <= min(nll(z, labels, t * 0.9), nll(z, labels, t * 1.1), nll(z, labels, 1.0))


def test_fit_temperature_single_class_warns_and_returns_identity():
    z = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.warns(CalibrationWarning, match="2 classes"):
        assert fit_temperature(z, np.ones(20, int)) == 1.0


def test_fit_temperature_validates_inputs():
    with pytest.raises(ValueError, match="shape"):
        fit_temperature(np.zeros((5, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="non-finite"):
        fit_temperature(np.array([[0.0, np.inf], [0, 1]]), np.array([0, 1]))


def test_apply_temperature_keeps_ranking_and_sums_to_one():
    z = np.random.default_rng(1).normal(0, 2, (50, 3))
    p = apply_temperature(z, 3.0)
    assert np.allclose(p.sum(1), 1) and np.array_equal(p.argmax(1), z.argmax(1))
    assert p.max(1).mean() < apply_temperature(z, 1.0).max(1).mean()  # T > 1 softens
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(z, 0.0)


def test_youden_tie_goes_to_the_larger_threshold():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    # J(0.8) = 2/3 - 0 and J(0.4) = 1 - 1/3: tie -> 0.8 (fewer false positives)
    assert choose_threshold(y, p, "youden") == 0.8


def test_youden_separable_data_gives_the_separating_score():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.05, 0.3, 0.35, 0.7, 0.9])
    thr = choose_threshold(y, p)
    assert thr == 0.7 and np.array_equal(p >= thr, y == 1)


def test_sensitivity_rule_is_the_most_specific_point_meeting_the_target():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    assert choose_threshold(y, p, "sensitivity", target_sensitivity=0.9) == 0.4
    assert choose_threshold(y, p, "sensitivity", target_sensitivity=0.6) == 0.8
    rng = np.random.default_rng(3)
    yy = rng.integers(0, 2, 400)
    pp = np.clip(0.3 * yy + rng.normal(0.35, 0.2, 400), 0, 1)
    thr = choose_threshold(yy, pp, "sensitivity", target_sensitivity=0.9)
    sens = np.mean(pp[yy == 1] >= thr)
    assert sens >= 0.9 and np.mean(pp[yy == 1] > thr) < 0.9  # any larger threshold misses the target


def test_choose_threshold_errors():
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.ones(4, int), np.linspace(0, 1, 4))
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), rule="f1")  # type: ignore[arg-type]
