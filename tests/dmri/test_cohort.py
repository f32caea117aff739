"""The cohort's group effect through trained harmonizers: regional values and Cohen's d."""

import numpy as np
import pytest

from mrharmony.dmri.cohort import TARGET_ROW, cohort_groups, group_summary, region_mask, regional_values
from mrharmony.errors import InputError


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.simulate import simulate

    out = simulate(tmp_path_factory.mktemp("cohort") / "c", preset="tiny", seed=5, cohort=4, effect=0.15, quiet=True)
    prepare(out, quiet=True)
    return out


def test_the_effect_is_seen_on_the_target_and_kept_by_no_harmonization(cohort, tiny_prepared):
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import TargetReference
    from mrharmony.dmri.harmonizer import platform_reference
    from mrharmony.dmri.statistical import IdentityHarmonizer

    ds = load_dataset(tiny_prepared, check_data=False)
    targets = ["prisma_st", "connectom_sa"]
    ref = platform_reference(ds, targets, ds.subjects)
    none = IdentityHarmonizer(targets=targets, ratios={t: ds.voxel_ratio(t) for t in targets}, reference=ref)
    rows = regional_values([("none", none)], cohort, quiet=True)
    assert {(r["subject"], r["target"]) for r in rows} == {(s, t) for s in cohort_groups(cohort) for t in targets}
    # the target scan's own regional FA, as the evaluation computes it
    r = next(r for r in rows if r["subject"] == "sub-02" and r["target"] == "prisma_st")
    cds = load_dataset(cohort, check_data=False)
    fa_t, _ = TargetReference(cds, "sub-02").dti(none, "prisma_st")
    roi = region_mask(cohort, "sub-02", 2.4, fa_t.shape)
    assert roi.sum() > 5
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
        summary["prisma_st"]["none"]["md_effect_d"]["mean"] / summary["prisma_st"][TARGET_ROW]["md_effect_d"]["mean"])


def test_a_cohort_needs_its_groups(tmp_path, cohort):
    with pytest.raises(InputError, match="participants.tsv: is missing"):
        cohort_groups(tmp_path)
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tcontrol\n")
    with pytest.raises(InputError, match="both controls and patients"):
        cohort_groups(tmp_path)
    assert set(cohort_groups(cohort).values()) == {"control", "patient"}
    assert np.sum(list(g == "patient" for g in cohort_groups(cohort).values())) == 2
