import numpy as np
import pytest

from mrharmony.stats import cohens_d, effect_ci, effect_ratio_ci, group_difference, mean_ci, t_interval


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
    noisy = effect_ratio_ci(controls + rng.normal(0, 0.03, 10), patients + rng.normal(0, 0.03, 10), controls, patients)
    assert noisy["ci95"][1] - noisy["ci95"][0] > r["ci95"][1] - r["ci95"][0]
    with pytest.raises(ValueError):
        effect_ratio_ci(controls, patients, controls[:5], patients)


def test_group_difference_is_patients_minus_controls():
    controls, patients = [1.0, 2.0, 3.0, 2.5], [3.0, 4.0, 5.0]
    g = group_difference(controls, patients)
    assert g["diff"]["mean"] == pytest.approx(4.0 - 2.125)
    assert g["d"]["mean"] == pytest.approx(-cohens_d(controls, patients))
    assert g["d"]["mean"] == pytest.approx(g["diff"]["mean"] / g["sd"]["mean"])
    assert group_difference(patients, controls)["diff"]["mean"] == pytest.approx(-g["diff"]["mean"])
    assert g["diff"]["ci95"][0] < g["diff"]["mean"] < g["diff"]["ci95"][1] and "diff_ratio" not in g
    # the same subjects measured on a scale twice as large: half the raw difference, the same d,
    # in every resample
    r = group_difference(controls, patients, [2 * v for v in controls], [2 * v for v in patients])
    assert r["diff_ratio"] == {"mean": 0.5, "ci95": [0.5, 0.5]}
    assert r["d"] == g["d"]
    with pytest.raises(ValueError, match="two subjects per group"):
        group_difference([1.0], patients)
    with pytest.raises(ValueError, match="same subjects"):
        group_difference(controls, patients, controls, patients[:2])


def test_t_interval_is_students_over_the_units():
    from scipy.stats import t as student

    r = t_interval([0.75, 1.0, 1.0])
    half = student.ppf(0.975, 2) * np.std([0.75, 1.0, 1.0], ddof=1) / np.sqrt(3)
    assert r["n"] == 3 and r["mean"] == pytest.approx(2.75 / 3)
    assert r["ci95"] == pytest.approx([2.75 / 3 - half, 2.75 / 3 + half])
    assert t_interval([0.4]) == {"mean": 0.4, "ci95": [0.4, 0.4], "n": 1}
