"""A simulated study cohort: other people than the traveling heads, scanned with their own noise;
patients with a regional and a global effect."""

import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml

from mrharmony.errors import InputError
from mrharmony.simulate import load_platforms, render_scan, simulate

SEED = 3


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One traveling head and a cohort of 4 of the same seed (the default global effect), made
    in this process (jobs=1) while every list-seeded generator's key is recorded."""
    root = tmp_path_factory.mktemp("cohort")
    real, keys = np.random.default_rng, {}

    def spy(seen):
        def default_rng(seed=None):
            if isinstance(seed, list):
                seen.append(list(seed))
            return real(seed)

        return default_rng

    with pytest.MonkeyPatch.context() as mp:
        for name, kw in (("heads", {"n_subjects": 1}), ("cohort", {"cohort": 4, "effect": 0.1})):
            mp.setattr(np.random, "default_rng", spy(keys.setdefault(name, [])))
            simulate(root / name, preset="tiny", seed=SEED, jobs=1, quiet=True, **kw)
    return root / "heads", root / "cohort", keys


def test_traveling_heads_keep_their_draws_and_a_cohort_draws_as_other_people(made):
    _, _, keys = made
    n_plats = len(load_platforms())
    # the keys the traveling heads have always used: (seed, subject, 0) for the anatomy and tissue,
    # (seed, subject, 1 + platform) for each scan; a change here changes every stored dataset
    assert keys["heads"] == [[SEED, 0, 0]] + [[SEED, 0, 1 + j] for j in range(n_plats)]
    assert keys["cohort"] == [
        k for i in range(4) for k in [[SEED, 1000 + i, 0]] + [[SEED, 1000 + i, 1 + j] for j in range(n_plats)]
    ]


def _noise(root, subject, platform):
    stored = np.asanyarray(nib.load(root / subject / platform / "dwi.nii.gz").dataobj).astype(np.float32)
    clean = render_scan(root, subject, platform, noise=False)
    return (stored - clean.dwi)[clean.mask > 0]


def test_a_cohort_subjects_noise_is_not_the_traveling_heads(made):
    heads, cohort, _ = made
    a, b = _noise(heads, "sub-01", "ge_st"), _noise(cohort, "sub-01", "ge_st")
    assert a.shape == b.shape and a.std() > 1 and b.std() > 1
    # the same standard normal draws would give nearly the same noise in every voxel of signal
    # (correlation near 1); independent draws: near 0 (about 1 / sqrt(n) = 0.005 here)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05


def test_cohort_has_patients_with_a_lower_intra_axonal_fraction_in_the_region(made, tmp_path):
    heads, out, _ = made
    groups = dict(line.split("\t") for line in (out / "participants.tsv").read_text().splitlines()[1:])
    assert groups == {"sub-01": "control", "sub-02": "patient", "sub-03": "control", "sub-04": "patient"}
    a = nib.load(heads / "truth" / "sub-01" / "tissue.nii.gz").get_fdata()[..., 0]
    b = nib.load(out / "truth" / "sub-01" / "tissue.nii.gz").get_fdata()[..., 0]
    assert np.abs(a - b).mean() > 0.02  # other people than the traveling heads of the seed
    for s, change in (("sub-01", 0.0), ("sub-02", -0.1)):
        info = yaml.safe_load((out / "truth" / s / "subject.yaml").read_text())
        assert info["f_intra_change_in_region"] == change and info["group"] == groups[s]
        tissue = nib.load(out / "truth" / s / "tissue.nii.gz").get_fdata()
        region = np.asanyarray(nib.load(out / "truth" / s / "region.nii.gz").dataobj) > 0
        wm = tissue[..., 0] > 0.5
        assert (region & wm).sum() > 100
        inside = tissue[..., 3][region & wm].mean()
        assert (inside < info["tissue"]["f_intra"] - 0.07) == (change < 0)
    stored = np.asanyarray(nib.load(out / "sub-02" / "ge_st" / "dwi.nii.gz").dataobj)
    np.testing.assert_array_equal(render_scan(out, "sub-02", "ge_st").dwi, stored)
    with pytest.raises(InputError, match="at least 4 subjects"):
        simulate(tmp_path / "x", preset="tiny", cohort=3, quiet=True)
    with pytest.raises(InputError, match="--subjects does not apply"):
        simulate(tmp_path / "x", preset="tiny", cohort=4, n_subjects=4, quiet=True)
    with pytest.raises(InputError, match=r"--global-md-effect\) must be in \[0, 0.5\), not -0.1"):
        simulate(tmp_path / "x", preset="tiny", cohort=4, global_md_effect=-0.1, quiet=True)
    assert not (tmp_path / "x").exists()


def _without_global_effect(cohort, tmp_path):
    """The cohort's description with the patients' global effect set to 0: render_scan renders
    the same people, scanned with the same draws, without it."""
    off = tmp_path / "off"
    off.mkdir()
    shutil.copy(cohort / "dataset.yaml", off)
    sim = yaml.safe_load((cohort / "simulation.yaml").read_text())
    sim["cohort"]["global_md_change"] = 0.0
    (off / "simulation.yaml").write_text(yaml.safe_dump(sim))
    return off


def _wm_dti(scan, wm):
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    fit = TensorModel(gradient_table(scan.bvals, bvecs=scan.bvecs)).fit(scan.dwi[wm])
    return fit.fa, fit.md


def test_patients_have_a_higher_md_everywhere_and_the_same_fa(made, tmp_path):
    from mrharmony.registration import block_mean

    _, cohort, _ = made
    sim = yaml.safe_load((cohort / "simulation.yaml").read_text())
    effect = sim["cohort"]["global_md_change"]
    assert effect == 0.1 and sim["cohort"]["cohort_version"] == 2  # the default, recorded
    scale = {
        s: yaml.safe_load((cohort / "truth" / s / "subject.yaml").read_text())["diffusivity_scale"]
        for s in ("sub-01", "sub-02")
    }
    assert scale == {"sub-01": 1.0, "sub-02": 1.1}
    off = _without_global_effect(cohort, tmp_path)
    # a control is rendered the same with or without the patients' effect
    np.testing.assert_array_equal(
        render_scan(cohort, "sub-01", "prisma_st", noise=False).dwi,
        render_scan(off, "sub-01", "prisma_st", noise=False).dwi,
    )
    with_effect = render_scan(cohort, "sub-02", "prisma_st", noise=False)
    without = render_scan(off, "sub-02", "prisma_st", noise=False)
    wm_fraction = block_mean(
        nib.load(cohort / "truth" / "sub-02" / "tissue.nii.gz").get_fdata()[..., 0].astype(np.float32), 2
    )
    wm = (wm_fraction >= 0.5) & (with_effect.mask > 0)
    assert wm.sum() > 300
    (fa1, md1), (fa0, md0) = _wm_dti(with_effect, wm), _wm_dti(without, wm)
    rise = md1.mean() / md0.mean() - 1
    # every tissue diffusivity times 1 + e is the signal at b (1 + e): a single-shell fit of
    # non-Gaussian (positive-kurtosis) diffusion sees MD rise by less than e, (1 + e)(1 - (1 + e) x)
    # / (1 - x) - 1 with x = b D K / 6 of about 0.1-0.2 in white matter, and the voxels' bit of
    # CSF does not change: between 0.6 e and e
    assert 0.6 * effect < rise <= effect + 1e-6
    assert np.median(md1 / md0) - 1 > 0.6 * effect  # everywhere, not in a few voxels
    # FA: each compartment's is unchanged; the mixture's moves by little
    assert abs(fa1.mean() - fa0.mean()) < 0.01 and np.abs(fa1 - fa0).max() < 0.03


def test_render_scan_refuses_a_cohort_of_an_earlier_design(made, tmp_path):
    _, cohort, _ = made
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(cohort / "dataset.yaml", old)
    sim = yaml.safe_load((cohort / "simulation.yaml").read_text())
    del sim["cohort"]["cohort_version"], sim["cohort"]["global_md_change"]  # as version 1 wrote it
    (old / "simulation.yaml").write_text(yaml.safe_dump(sim))
    with pytest.raises(InputError, match=r"simulation.yaml: describes a cohort of version 1, .* simulate the cohort"):
        render_scan(old, "sub-01", "ge_st")


def test_the_command_passes_the_global_effect_and_refuses_it_without_a_cohort(tmp_path, monkeypatch, capsys):
    import mrharmony.simulate
    from mrharmony.cli import main

    seen = {}
    monkeypatch.setattr(mrharmony.simulate, "simulate", lambda out, **kw: seen.update(kw) or out)
    assert (
        main(
            ["simulate", str(tmp_path / "c"), "--preset", "tiny", "--cohort", "4", "--global-md-effect", "0", "--quiet"]
        )
        == 0
    )
    assert seen["global_md_effect"] == 0.0 and seen["cohort"] == 4
    seen.clear()
    assert main(["simulate", str(tmp_path / "c"), "--preset", "tiny", "--cohort", "4", "--quiet"]) == 0
    assert "global_md_effect" not in seen  # the simulator's default
    assert main(["simulate", str(tmp_path / "h"), "--preset", "tiny", "--global-md-effect", "0.1", "--quiet"]) == 2
    assert "needs --cohort" in capsys.readouterr().err


def test_named_white_matter_regions_follow_each_subjects_anatomy(tmp_path):
    """The named regions of the evaluation: spheres in template space carried by each subject's warp
    (two subjects' regions differ), kept where the subject has white matter, the same on every call."""
    from mrharmony.simulate import simulate
    from mrharmony.simulate.generator import white_matter_regions as fine_regions
    from mrharmony.simulate.truth import truth_masks, white_matter_regions

    root = simulate(tmp_path / "t", preset="tiny", seed=7, quiet=True)
    labels, _, names = fine_regions(root, "sub-01")
    assert "right corona radiata" in names and labels.max() <= len(names)
    again, _, _ = fine_regions(root, "sub-01")
    other, _, _ = fine_regions(root, "sub-02")
    np.testing.assert_array_equal(labels, again)
    assert (labels != other).any()
    shape = (13, 13, 8)  # the tiny preset's 2.4 mm grid
    regions = white_matter_regions(root, "sub-01", 2.4, shape)
    _, wm = truth_masks(root, "sub-01", 2.4, shape, region=False)
    assert regions["right corona radiata"].sum() > 50  # the tiny block lies in it
    assert "left corona radiata" not in regions  # outside the tiny block: no voxel, no region
    assert all(not (m & ~wm).any() for m in regions.values())
