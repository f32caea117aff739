"""The structural benchmark's declared goals, judged on rows whose answers are known."""

import pytest

from mrharmony.bench.structural_goals import DECLARED, structural_goals


def _rows():
    rows = []
    for k, subject in enumerate(["s1", "s2", "s3"]):
        for pair in (("A", "B"), ("B", "A")):
            base = {
                "subject": subject,
                "modality": "T1w",
                "group": "seen",
                "input_site": pair[0],
                "target_site": pair[1],
            }
            values = {
                "hail": {"ssim": 0.80 + 0.01 * k, "target_vd_gm": 0.02, "target_vd_wm": 0.03, "texture_p2": 0.9},
                "ihf_residual": {"ssim": 0.70, "target_vd_gm": 0.06, "target_vd_wm": 0.06, "texture_p2": 1.5},
                "nyul": {"ssim": 0.75, "target_vd_gm": 0.08, "target_vd_wm": 0.04},
                "n4_nyul": {"ssim": 0.74, "target_vd_gm": 0.04, "target_vd_wm": 0.10},
                "rescan": {"ssim": 0.85, "target_vd_gm": 0.04, "target_vd_wm": 0.02},
                "truth": {"ssim": float("nan"), "target_vd_gm": 0.0, "target_vd_wm": 0.0},
            }
            for method, v in values.items():
                extra = {"roundtrip": 1e-7 * (k + 1)} if method == "ihf_residual" else {}
                rows.append({**base, "method": method, **v, **extra})
    return rows


def test_goals_are_judged_on_the_declared_rows_against_the_better_practice_row():
    assert DECLARED == {"hail": "hail", "ihf": "ihf_residual"}
    goals = {(g["a"], g["name"], g["metric"]): g for g in structural_goals(_rows())}
    ssim = goals[("hail", "learned_vs_nyul_ssim", "ssim")]
    assert ssim["b"] == "nyul" and ssim["mean"] == pytest.approx(0.06) and ssim["met"]  # 0.80-0.82 over 0.75
    assert ssim["unit"] == "subject" and ssim["n"] == 3 and ssim["goal"] == ">= 0"
    assert not goals[("ihf_residual", "learned_vs_nyul_ssim", "ssim")]["met"]
    # volumes: against the Nyul row with the smaller difference, per tissue
    gm = goals[("hail", "volume_agreement", "target_vd_gm")]
    assert gm["b"] == "n4_nyul" and gm["mean"] == pytest.approx(0.5) and gm["met"]
    wm = goals[("hail", "volume_agreement", "target_vd_wm")]
    assert wm["b"] == "nyul" and wm["mean"] == pytest.approx(0.75) and not wm["met"]
    assert goals[("hail", "volume_vs_rescan", "target_vd_wm")]["mean"] == pytest.approx(1.5)
    assert goals[("hail", "volume_vs_rescan", "target_vd_wm")]["met"]
    # the invertible row's own goals; HAIL has none of them
    assert goals[("ihf_residual", "ihf_texture", "texture_p2")]["mean"] == pytest.approx(1.5)
    trip = goals[("ihf_residual", "ihf_roundtrip", "roundtrip")]
    assert trip["mean"] == pytest.approx(3e-7) and trip["unit"] == "pair" and trip["n"] == 6 and trip["met"]
    assert not any(a == "hail" and name.startswith("ihf_") for a, name, _ in goals)


def test_further_training_runs_of_a_declared_row_are_averaged_per_subject_with_an_interval_over_runs():
    from mrharmony.bench.structural_goals import runs_of

    rows = _rows()
    # a second run of hail, 0.04 better on SSIM for every subject; a row of another name is no run of it
    rows += [{**r, "method": "hail_seed1", "ssim": r["ssim"] + 0.04} for r in _rows() if r["method"] == "hail"]
    rows += [{**r, "method": "hail_unet", "ssim": 0.0} for r in _rows() if r["method"] == "hail"]
    assert runs_of(rows, "hail") == ("hail", "hail_seed1") and runs_of(rows, "ihf_residual") == ("ihf_residual",)
    goals = {(g["a"], g["name"], g["metric"]): g for g in structural_goals(rows)}
    ssim = goals[("hail", "learned_vs_nyul_ssim", "ssim")]
    assert ssim["mean"] == pytest.approx(0.08) and ssim["n"] == 3  # subjects, each the mean of the two runs
    assert ssim["runs"]["n"] == 2 and ssim["runs"]["mean"] == pytest.approx(0.08)
    lo, hi = ssim["runs"]["ci95"]
    assert lo < 0.06 and hi > 0.10  # the two runs' values 0.06 and 0.10, a t interval of one degree of freedom
    assert "runs" not in goals[("ihf_residual", "learned_vs_nyul_ssim", "ssim")]
