"""Drift statistics: PSI and KS of a window against a reference histogram."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gliomagrade.drift import DriftMonitor, ReferenceHistogram, ks_statistic, psi


@pytest.fixture
def reference() -> ReferenceHistogram:
    rng = np.random.default_rng(0)
    return ReferenceHistogram.from_values(rng.beta(2, 5, 5000), bins=10, value_range=(0.0, 1.0))


def test_psi_is_small_for_the_same_distribution_and_grows_with_shift(reference: ReferenceHistogram) -> None:
    rng = np.random.default_rng(1)
    same = psi(rng.beta(2, 5, 2000), reference)
    moderate = psi(rng.beta(3, 4, 2000), reference)
    major = psi(rng.beta(5, 2, 2000), reference)
    assert same < 0.02
    assert same < moderate < major
    assert major > 0.25


def test_psi_matches_the_formula_on_hand_made_shares() -> None:
    ref = ReferenceHistogram((0.0, 0.5, 1.0), (50.0, 50.0))
    values = [0.1] * 80 + [0.9] * 20
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(values, ref) == pytest.approx(expected)


def test_values_outside_the_reference_range_count_in_the_end_bins() -> None:
    ref = ReferenceHistogram((0.0, 0.5, 1.0), (50.0, 50.0))
    assert psi([-5.0] * 50 + [7.0] * 50, ref) == pytest.approx(0.0)


def test_ks_agrees_with_scipy_on_a_fine_histogram() -> None:
    rng = np.random.default_rng(2)
    ref_values = rng.normal(0, 1, 20000)
    ref = ReferenceHistogram.from_values(ref_values, bins=200)
    window = rng.normal(0.5, 1, 500)
    expected = stats.ks_2samp(window, ref_values).statistic
    assert ks_statistic(window, ref) == pytest.approx(expected, abs=0.02)


def test_reference_histogram_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match="len\\(edges\\)"):
        ReferenceHistogram((0.0, 1.0), (1.0, 2.0))
    with pytest.raises(ValueError, match="increasing"):
        ReferenceHistogram((0.0, 0.0, 1.0), (1.0, 2.0))
    with pytest.raises(ValueError, match="positive total"):
        ReferenceHistogram((0.0, 1.0), (0.0,))


def test_monitor_waits_for_min_count_slides_and_ignores_unknown(reference: ReferenceHistogram) -> None:
    monitor = DriftMonitor({"prob_high": reference}, window=50, min_count=10)
    monitor.update({"prob_high": 0.9, "unknown": 3.0})
    assert monitor.statistics() == {}
    monitor.extend("prob_high", [0.9] * 20)
    high = monitor.statistics()["prob_high"]
    assert high["n"] == 21 and high["psi"] > 1.0 and high["ks"] > 0.8
    rng = np.random.default_rng(3)
    monitor.extend("prob_high", rng.beta(2, 5, 50))
    settled = monitor.statistics()["prob_high"]
    assert settled["n"] == 50
    assert settled["psi"] < high["psi"] and settled["ks"] < 0.3
    monitor.update({"prob_high": float("nan")})
    assert monitor.count("prob_high") == 50
