import numpy as np
import pytest

from mrharmony.stats import cohens_d, effect_ci, mean_ci


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
