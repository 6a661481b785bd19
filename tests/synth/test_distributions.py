"""Grade mix and grade-dependent tumour parameters: prevalences as asked, distributions that overlap."""

from __future__ import annotations

import numpy as np
import pytest

from gliomagrade.errors import ConfigError
from gliomagrade.synth import SynthParams
from gliomagrade.synth.anatomy import load_anatomy
from gliomagrade.synth.cohort import case_seeds, draw_grade
from gliomagrade.synth.tumour import GRADE_TABLE, grade_mean, sample_tumour

COARSE = 4.0  # mm, as in conftest.py


def test_grade_mix_follows_hgg_fraction_and_grade3_share() -> None:
    rng = np.random.default_rng(0)
    grades = np.array([draw_grade(SynthParams(), rng) for _ in range(4000)])
    assert abs((grades == 4).mean() - 0.75) < 0.03
    assert abs((grades == 3).sum() / (grades < 4).sum() - 0.5) < 0.05
    only_lgg = [draw_grade(SynthParams(hgg_fraction=0.0, grade3_share=1.0), rng) for _ in range(200)]
    assert set(only_lgg) == {3}


def test_grade_features_overlap_between_classes() -> None:
    anatomy = load_anatomy(COARSE)
    rng = np.random.default_rng(1)
    draws = {g: [sample_tumour(anatomy, g, 0.3, rng) for _ in range(150)] for g in (2, 3, 4)}
    lgg = draws[2] + draws[3]
    assert any(t.enhancing for t in draws[3]) and any(t.enhancing for t in draws[2])
    assert any(not t.enhancing for t in draws[4]) and any(not t.necrosis for t in draws[4])
    assert np.mean([t.enhancing for t in draws[4]]) > np.mean([t.enhancing for t in lgg])
    assert np.mean([t.necrosis for t in draws[4]]) > np.mean([t.necrosis for t in lgg])
    size_lgg = [t.radius_mm for t in lgg]
    size_hgg = [t.radius_mm for t in draws[4]]
    assert np.percentile(size_hgg, 25) < np.percentile(size_lgg, 75)  # sizes overlap


def test_difficulty_one_pools_every_grade() -> None:
    for name in GRADE_TABLE:
        assert grade_mean(name, 2, 1.0) == pytest.approx(grade_mean(name, 4, 1.0))
    assert grade_mean("p_enhancing", 4, 0.0) > grade_mean("p_enhancing", 4, 0.5) > grade_mean("p_enhancing", 2, 0.5)


def test_case_seeds_do_not_depend_on_cohort_size() -> None:
    a, b = case_seeds(7, 3), case_seeds(7, 10)
    assert [s.generate_state(2).tolist() for s in a] == [s.generate_state(2).tolist() for s in b[:3]]


@pytest.mark.parametrize(
    ("field", "value"),
    [("hgg_fraction", 1.5), ("grade3_share", -0.1), ("difficulty", 2.0), ("skull_prob", "x"), ("resolution", 0.5)],
)
def test_bad_parameters_are_named(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        SynthParams(**{field: value})


def test_difficulty_closes_the_gap_between_grades_in_drawn_features() -> None:
    from gliomagrade.synth.oracle import FEATURES, draw_features

    def gap(difficulty: float) -> float:
        x, hgg = draw_features(SynthParams(difficulty=difficulty), n=3000, seed=0)
        col = FEATURES.index("enhancing")
        return float(x[hgg, col].mean() - x[~hgg, col].mean())

    assert gap(0.0) > 0.5
    assert abs(gap(1.0)) < 0.06


def test_cohort_grades_are_stratified_exactly() -> None:
    from gliomagrade.synth.cohort import cohort_grades

    params = SynthParams(hgg_fraction=0.75, grade3_share=0.5)
    for seed in range(20):  # seed 1 drew 12 HGG out of 12 with independent draws
        grades = cohort_grades(12, seed, params)
        assert grades.count(4) == 9
        assert grades.count(3) + grades.count(2) == 3 and grades.count(3) in (1, 2)
    assert cohort_grades(12, 0, params) == cohort_grades(12, 0, params)
    assert cohort_grades(12, 0, params) != cohort_grades(12, 1, params)
