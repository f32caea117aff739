import numpy as np
import pytest

from mrharmony.stats import cohens_d, effect_ci, effect_ratio_ci, mean_ci


def test_mean_ci_covers_the_mean_and_narrows_with_more_subjects():
    rng = np.random.default_rng(0)
    few, many = rng.normal(1.0, 0.5, 5), rng.normal(1.0, 0.5, 200)
    a, b = mean_ci(few), mean_ci(many)
    assert a["mean"] == pytest.approx(few.mean()) and a["ci95"][0] < a["mean"] < a["ci95"][1]
    assert b["ci95"][1] - b["ci95"][0] < a["ci95"][1] - a["ci95"][0]
    assert b["ci95"][0] < 1.0 < b["ci95"][1]
    assert mean_ci(few) == mean_ci(few)  # seeded
    assert mean_ci([3.0]) == {"mean": 3.0, "ci95": [3.0, 3.0]}
    with pytest.raises(ValueError):
        mean_ci([])


def test_cohens_d_against_its_definition():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 1.0, 2.0])
    pooled = np.sqrt((3 * a.var(ddof=1) + 3 * b.var(ddof=1)) / 6)
    assert cohens_d(a, b) == pytest.approx((a.mean() - b.mean()) / pooled)
    assert cohens_d(b, a) == pytest.approx(-cohens_d(a, b))
    rng = np.random.default_rng(1)
    e = effect_ci(rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 300))
    assert e["ci95"][0] < 1.0 < e["ci95"][1] and e["ci95"][0] > 0.7
    with pytest.raises(ValueError):
        cohens_d([1.0], [2.0, 3.0])


def test_effect_ratio_is_one_for_the_same_measurements_and_halves_with_half_the_group_difference():
    rng = np.random.default_rng(2)
    controls, patients = rng.normal(0.50, 0.03, 10), rng.normal(0.45, 0.03, 10)
    same = effect_ratio_ci(controls, patients, controls, patients)
    assert same["mean"] == pytest.approx(1.0) and same["ci95"] == pytest.approx([1.0, 1.0])
    # the patients moved half way towards the controls, their spread kept: half the effect
    half = patients + (controls.mean() - patients.mean()) / 2
    r = effect_ratio_ci(controls, half, controls, patients)
    assert r["mean"] == pytest.approx(0.5) and r["ci95"][0] < 0.5 < r["ci95"][1] < 1.0
    # a harmonizer adding noise of its own (not shared with the reference) widens the interval
    noisy = effect_ratio_ci(controls + rng.normal(0, 0.03, 10), patients + rng.normal(0, 0.03, 10),
                            controls, patients)
    assert noisy["ci95"][1] - noisy["ci95"][0] > r["ci95"][1] - r["ci95"][0]
    with pytest.raises(ValueError):
        effect_ratio_ci(controls, patients, controls[:5], patients)
