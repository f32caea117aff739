"""The cohort's group effect through trained harmonizers: regional values and Cohen's d."""

import numpy as np
import pytest

from mrharmony.dmri.cohort import (
    TARGET_ROW,
    WM_SAMPLE_VOXELS,
    cohort_groups,
    group_summary,
    region_mask,
    regional_values,
    white_matter_sample,
)
from mrharmony.errors import InputError
from mrharmony.simulate.truth import truth_masks


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.simulate import simulate

    out = simulate(tmp_path_factory.mktemp("cohort") / "c", preset="tiny", seed=5, cohort=4, effect=0.15, quiet=True)
    prepare(out, quiet=True)
    return out


TARGETS = ["prisma_st", "connectom_sa"]


@pytest.fixture(scope="module")
def none_rows(cohort, tiny_prepared):
    """The cohort's values without harmonization (the input scans mapped onto each target's grid)."""
    from mrharmony.data import load_dataset
    from mrharmony.dmri.harmonizer import platform_reference
    from mrharmony.dmri.statistical import IdentityHarmonizer

    ds = load_dataset(tiny_prepared, check_data=False)
    ref = platform_reference(ds, TARGETS, ds.subjects)
    none = IdentityHarmonizer(targets=TARGETS, ratios={t: ds.voxel_ratio(t) for t in TARGETS}, reference=ref)
    return regional_values([("none", none)], cohort, quiet=True)


def test_the_effect_is_seen_on_the_target_and_kept_by_no_harmonization(cohort, none_rows):
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import TargetReference
    from mrharmony.dmri.features.prepare import load_features

    rows, targets = none_rows, TARGETS
    assert {(r["subject"], r["target"]) for r in rows} == {(s, t) for s in cohort_groups(cohort) for t in targets}
    # the target scan's own regional FA and white-matter MD, as the evaluation computes them (a
    # voxel's DTI fit is its own: the same on the whole brain as on the voxels measured)
    r = next(r for r in rows if r["subject"] == "sub-02" and r["target"] == "prisma_st")
    cds = load_dataset(cohort, check_data=False)
    reference = TargetReference(cds, "sub-02")
    fa_t, md_t = reference.dti("prisma_st")
    where = reference.scan("prisma_st")[0].mask & load_features(cds, "sub-02", "ge_st").mask  # same grid
    roi = region_mask(cohort, "sub-02", 2.4, fa_t.shape) & where
    wm = truth_masks(cohort, "sub-02", 2.4, fa_t.shape, region=False)[1] & where
    assert roi.sum() > 5 and wm.sum() > 4 * roi.sum() and wm.sum() < WM_SAMPLE_VOXELS  # all of it, here
    assert r["fa_target"] == pytest.approx(float(fa_t[roi].mean()), rel=1e-5)
    assert r["md_wm_target"] == pytest.approx(float(md_t[wm].mean()), rel=1e-5) and r["wm_voxels"] == wm.sum()
    summary = group_summary(rows)
    for t in targets:
        truth = summary[t][TARGET_ROW]
        # patients have a lower intra-axonal fraction in the region: lower FA (controls minus patients > 0)
        assert truth["fa_effect_d"]["mean"] > 1.0, t
        assert "fa_bias" not in truth and "fa_bias" in summary[t]["none"]
        assert summary[t]["none"]["fa_effect_d"]["mean"] > 0.5, t
    # a harmonizer that returns the target scan itself would have bias 0 and the target's effect:
    # checked through group_summary on rows whose values equal the target's
    same = [{**r, "method": "perfect", "fa": r["fa_target"], "md": r["md_target"]} for r in rows]
    s = group_summary(same)["prisma_st"]
    assert s["perfect"]["fa_bias"]["mean"] == 0 and s["perfect"]["fa_effect_d"] == s[TARGET_ROW]["fa_effect_d"]
    assert s["perfect"]["fa_effect_ratio"] == {"mean": 1.0, "ci95": [1.0, 1.0]}
    assert "fa_effect_ratio" not in s[TARGET_ROW]
    assert summary["prisma_st"]["none"]["md_effect_ratio"]["mean"] == pytest.approx(
        summary["prisma_st"]["none"]["md_effect_d"]["mean"] / summary["prisma_st"][TARGET_ROW]["md_effect_d"]["mean"]
    )


def test_a_cohort_needs_its_groups(tmp_path, cohort):
    with pytest.raises(InputError, match="participants.tsv: is missing"):
        cohort_groups(tmp_path)
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tcontrol\n")
    with pytest.raises(InputError, match="both controls and patients"):
        cohort_groups(tmp_path)
    assert set(cohort_groups(cohort).values()) == {"control", "patient"}
    assert np.sum([g == "patient" for g in cohort_groups(cohort).values()]) == 2


def test_the_global_md_effect_is_seen_on_the_target_and_kept_by_no_harmonization(cohort, none_rows):
    import yaml

    effect = yaml.safe_load((cohort / "simulation.yaml").read_text())["cohort"]["global_md_change"]
    assert effect == pytest.approx(0.10)
    summary = group_summary(none_rows)
    for t in TARGETS:
        truth, none = summary[t][TARGET_ROW], summary[t]["none"]
        controls = np.mean([r["md_wm_target"] for r in none_rows if r["target"] == t and r["group"] == "control"])
        # the patients' tissue diffusivities are 10% higher; a single-shell fit sees a little less
        # (tests/simulate/test_cohort_design.py), the regional effect (a lower intra-axonal fraction,
        # part of the tiny field of view's white matter) adds a little, and with 2 subjects per
        # group the people's own spread of MD (a few %) moves the difference by about as much
        assert 0.03 < truth["global_md_diff"]["mean"] / controls < 0.2, t
        assert truth["global_md_d"]["mean"] > 0, t
        # the input scans carry it too, in their own protocol's MD (another b, TE and diffusion
        # time): a difference of about the same size
        assert 0.5 < none["global_md_diff_ratio"]["mean"] < 2.0, t
        # raw differences are patients minus controls: lower FA in the region
        assert truth["regional_fa_diff"]["mean"] < 0 and none["regional_fa_diff"]["mean"] < 0, t
        assert truth["regional_fa_d"]["mean"] == pytest.approx(-truth["fa_effect_d"]["mean"])
        for entry, ratio in ((truth, False), (none, True)):
            for e in ("regional_fa", "global_md"):
                names = ["diff", "sd", "d"] + (["diff_ratio"] if ratio else [])
                assert (f"{e}_diff_ratio" in entry) == ratio
                for k in names:
                    cell = entry[f"{e}_{k}"]
                    assert np.isfinite(cell["mean"]) and cell["ci95"][0] <= cell["ci95"][1], (t, e, k)
                assert entry[f"{e}_sd"]["mean"] > 0
                assert entry[f"{e}_d"]["mean"] == pytest.approx(entry[f"{e}_diff"]["mean"] / entry[f"{e}_sd"]["mean"])
                lo, hi = entry[f"{e}_diff"]["ci95"]
                assert lo <= entry[f"{e}_diff"]["mean"] <= hi
    # values that equal the target's keep the raw difference exactly
    prisma = [r for r in none_rows if r["target"] == "prisma_st"]
    same = [{**r, "method": "perfect", "md_wm": r["md_wm_target"]} for r in prisma]
    assert group_summary(same)["prisma_st"]["perfect"]["global_md_diff_ratio"] == {"mean": 1.0, "ci95": [1.0, 1.0]}
    # rows of an earlier run, without the white-matter values, still give the regional keys
    old = [{k: v for k, v in r.items() if "_wm" not in k} for r in prisma]
    s = group_summary(old)["prisma_st"]["none"]
    assert "fa_effect_ratio" in s and "regional_fa_diff_ratio" in s and "global_md_diff" not in s


def test_the_white_matter_sample_is_fixed_by_subject_and_target():
    rng = np.random.default_rng(0)
    candidates = rng.random((12, 10, 8)) < 0.4
    a = white_matter_sample(candidates, "sub-01/prisma_st", 50)
    assert a.sum() == 50 and not (a & ~candidates).any()
    assert np.array_equal(a, white_matter_sample(candidates, "sub-01/prisma_st", 50))
    assert not np.array_equal(a, white_matter_sample(candidates, "sub-02/prisma_st", 50))
    assert np.array_equal(white_matter_sample(candidates, "x", None), candidates)
    assert np.array_equal(white_matter_sample(candidates, "x", 10**6), candidates)
    # one candidate fewer: the sample loses at most that voxel and gains at most one other
    fewer = candidates.copy()
    fewer.flat[np.flatnonzero(a)[0]] = False
    assert (a & ~white_matter_sample(fewer, "sub-01/prisma_st", 50)).sum() == 1
