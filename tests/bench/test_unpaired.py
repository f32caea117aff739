"""The unpaired benchmark's statistics: the site classifier, the age slope and its ratio, pooled effects."""

from types import SimpleNamespace

import numpy as np
import pytest

from mrharmony.bench.unpaired import age_slope, pooled_effects, site_accuracy, slope_ratio_ci


def test_the_site_classifier_tells_separated_sites_and_not_mixed_ones():
    rng = np.random.default_rng(0)
    sites = ["a"] * 20 + ["b"] * 20
    apart = rng.normal(size=(40, 3)) + np.repeat([[0.0], [5.0]], 20, axis=0)
    mixed = rng.normal(size=(40, 3))
    assert site_accuracy(apart, sites) > 0.95
    assert site_accuracy(mixed, sites) < 0.75


def test_the_age_slope_is_per_decade_with_diagnosis_as_a_covariate_and_its_ratio_is_one_when_kept():
    rng = np.random.default_rng(1)
    ages = rng.uniform(20, 80, 60)
    groups = rng.integers(0, 2, 60)
    truth = 1e-3 + 2e-5 * ages / 10 + 1e-4 * groups + rng.normal(0, 1e-6, 60)
    assert abs(age_slope(ages, truth, groups) - 2e-5) < 1e-6
    kept = slope_ratio_ci(ages, truth + 3e-4, truth, groups)  # a site offset keeps the slope
    halved = slope_ratio_ci(ages, 1e-3 + 0.5 * (truth - 1e-3), truth, groups)
    assert abs(kept["mean"] - 1) < 1e-6 and abs(halved["mean"] - 0.5) < 1e-3


def test_pooled_effects_compare_each_row_with_the_truth():
    rng = np.random.default_rng(2)
    people = [
        SimpleNamespace(
            subject=f"s{i}", site="ab"[i % 2], age=float(20 + i), group="patient" if i % 3 == 0 else "control"
        )
        for i in range(30)
    ]
    truth = {
        p.subject: {
            "fa_region": 0.5 - 0.05 * (p.group == "patient") + rng.normal(0, 0.01),
            "md_global": 1e-3 + 1e-4 * (p.group == "patient") + 1e-5 * p.age / 10 + rng.normal(0, 1e-6),
            "regions": {"r": [0.5, 1e-3]},
        }
        for p in people
    }
    erased = {s: {**v, "fa_region": 0.5} for s, v in truth.items()}
    out = pooled_effects(people, {"truth": truth, "erased": erased}, {"truth": truth, "erased": truth}, ["r"])
    assert abs(out["truth"]["regional_fa"]["mean"] - 1) < 1e-9 and abs(out["truth"]["age_md"]["mean"] - 1) < 1e-9
    assert abs(out["erased"]["regional_fa"]["mean"]) < 1e-9


def test_code_separation_tells_sites_apart_by_their_codes_and_measures_their_spread(monkeypatch):
    from types import SimpleNamespace

    import mrharmony.dmri.features.prepare as prepare
    from mrharmony.bench.unpaired import code_separation

    rng = np.random.default_rng(0)
    axes = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.6, 0.8, 0.0]}  # c lies between a and b
    people = {s: [SimpleNamespace(subject=f"{s}{k}") for k in range(5)] for s in axes}
    study = SimpleNamespace(sites=list(axes), at=lambda s: people[s])
    monkeypatch.setattr(prepare, "load_features", lambda st, subject, site, normalized: (site, subject))

    def code_of(scans):
        site, _ = scans[0]
        v = np.asarray(axes[site]) + rng.normal(0, 0.01, 3)
        return v / np.linalg.norm(v)

    out = code_separation(SimpleNamespace(code_of=code_of), study, people_per_site=4)
    assert out["loo_accuracy"] == 1.0 and out["chance"] == pytest.approx(1 / 3)
    assert all(v["people"] == 4 and v["within"] < 1e-3 for v in out["sites"].values())
    # c's nearest other site is at cosine distance 1 - 0.8 (b), a's is at 1 - 0.6 (c)
    assert out["sites"]["c"]["to_nearest_site"] == pytest.approx(0.2, abs=0.02)
    assert out["sites"]["a"]["to_nearest_site"] == pytest.approx(0.4, abs=0.02)
