import nibabel as nib
import numpy as np
import pytest
import yaml

from mrharmony.data import load_dataset
from mrharmony.errors import InputError
from mrharmony.simulate import load_platforms, simulate
from mrharmony.simulate.params import default_platforms_path


def _block_mean(a, k):
    x, y, z = (s // k for s in a.shape[:3])
    return a.reshape(x, k, y, k, z, k, *a.shape[3:]).mean(axis=(1, 3, 5))


def test_layout_shapes_and_affines(tiny_dataset):
    ds = load_dataset(tiny_dataset)  # the loader's full validation passes
    assert ds.input_platform.name == "ge_st"
    assert [p.name for p in ds.target_platforms] == ["prisma_st", "connectom_st", "connectom_sa"]
    assert len(ds.subjects) == 3
    for s in ds.subjects:
        ref = nib.load(ds.scan(s, "ge_st").dwi)
        for p in ds.platforms.values():
            img = nib.load(ds.scan(s, p.name).dwi)
            assert img.get_data_dtype() == np.int16
            assert (
                img.shape[3]
                == p.n_directions + {"ge_st": 4, "prisma_st": 4, "connectom_st": 4, "connectom_sa": 6}[p.name]
            )
            np.testing.assert_allclose(img.header.get_zooms()[:3], p.voxel_size)
            r = int(round(2.4 / p.voxel_size[0]))
            assert img.shape[:3] == tuple(r * n for n in ref.shape[:3])
            # grids share their corner: voxel -0.5 maps to the same point
            np.testing.assert_allclose(img.affine @ [-0.5, -0.5, -0.5, 1], ref.affine @ [-0.5, -0.5, -0.5, 1])


def test_subject_names_are_those_simulate_gives(tiny_dataset):
    from mrharmony.simulate import PRESETS, subject_names

    assert load_dataset(tiny_dataset).subjects == subject_names(PRESETS["tiny"].n_subjects)


def test_gradient_tables(tiny_dataset):
    ds = load_dataset(tiny_dataset, check_data=False)
    tables = {}
    for p in ds.platforms.values():
        bvals, bvecs = ds.scan("sub-01", p.name).gradients()
        dw = bvals > 50
        assert dw.sum() == p.n_directions
        np.testing.assert_allclose(np.linalg.norm(bvecs[dw], axis=1), 1.0, atol=1e-5)
        assert set(np.unique(bvals)) == {0.0, 1200.0}
        # well spread: no two directions (or their antipodes) closer than 10 degrees
        cos = np.abs(bvecs[dw] @ bvecs[dw].T) - 2 * np.eye(dw.sum())
        assert cos.max() < np.cos(np.deg2rad(10))
        tables[p.name] = bvecs[dw]
        # the protocol is fixed: every subject has the same table
        np.testing.assert_array_equal(
            ds.scan("sub-02", p.name).gradients()[1], ds.scan("sub-01", p.name).gradients()[1]
        )
    assert not np.allclose(tables["prisma_st"], tables["connectom_st"])  # each platform its own gradient set


def _truth_on_grid(root, subject, k):
    t = nib.load(root / "truth" / subject / "tissue.nii.gz").get_fdata()
    return _block_mean(t, k)


@pytest.mark.parametrize("platform", ["ge_st", "prisma_st", "connectom_st", "connectom_sa"])
def test_measured_snr_matches_the_set_snr(tiny_dataset, platform):
    """SNR by the difference of two b0 volumes (NEMA), over white matter, within 10% of the set value."""
    ds = load_dataset(tiny_dataset, check_data=False)
    target = next(p for p in load_platforms() if p.name == platform).snr
    measured = []
    for s in ds.subjects:
        scan = ds.scan(s, platform)
        dwi, _ = scan.load_dwi()
        bvals, _ = scan.gradients()
        b0 = dwi[..., bvals <= 50]
        k = int(round(ds.platforms[platform].voxel_size[0] / 1.2))
        wm = _truth_on_grid(tiny_dataset, s, k)[..., 0] > 0.7
        assert wm.sum() > 30
        diffs = [b0[..., i] - b0[..., i + 1] for i in range(b0.shape[-1] - 1)]
        sigma = np.mean([d[wm].std() for d in diffs]) / np.sqrt(2)
        measured.append(b0[wm].mean() / sigma)
    assert abs(np.mean(measured) - target) / target < 0.10, (measured, target)


def test_tissue_contrasts(tiny_dataset):
    """b0: CSF > GM > WM (T2 weighting); DTI: FA of WM > GM > CSF, MD of CSF highest."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    ds = load_dataset(tiny_dataset, check_data=False)
    scan = ds.scan("sub-01", "prisma_st")
    dwi, _ = scan.load_dwi()
    mask = scan.load_mask()
    bvals, bvecs = scan.gradients()
    fit = TensorModel(gradient_table(bvals, bvecs=bvecs)).fit(dwi, mask=mask)
    t = _truth_on_grid(tiny_dataset, "sub-01", 2)
    wm, gm, csf = (t[..., i] > th for i, th in ((0, 0.8), (1, 0.6), (2, 0.6)))
    wm, gm, csf = wm & mask, gm & mask, csf & mask
    assert wm.sum() > 20 and gm.sum() > 3 and csf.sum() > 3
    b0 = dwi[..., bvals <= 50].mean(-1)
    assert b0[csf].mean() > b0[gm].mean() > b0[wm].mean()
    assert fit.fa[wm].mean() > 0.4 > 0.25 > fit.fa[gm].mean()
    assert fit.fa[gm].mean() > fit.fa[csf].mean() - 0.05
    assert fit.md[csf].mean() > 1.5e-3 > 1.1e-3 > fit.md[wm].mean() > 0.5e-3


def test_platform_signatures_differ(tiny_dataset):
    """Same subject, two platforms: mean diffusion-weighted signal ratio in WM differs (gradient strength, b scale)."""
    ds = load_dataset(tiny_dataset, check_data=False)
    t = _truth_on_grid(tiny_dataset, "sub-01", 2)
    wm = t[..., 0] > 0.8
    ratios = {}
    for p in ("ge_st", "connectom_st"):
        dwi, _ = ds.scan("sub-01", p).load_dwi()
        bvals, _ = ds.scan("sub-01", p).gradients()
        ratios[p] = dwi[..., bvals > 50].mean(-1)[wm].mean() / dwi[..., bvals <= 50].mean(-1)[wm].mean()
    assert abs(ratios["ge_st"] - ratios["connectom_st"]) > 0.01


def test_ground_truth_saved(tiny_dataset):
    tissue = nib.load(tiny_dataset / "truth" / "sub-01" / "tissue.nii.gz")
    fibres = nib.load(tiny_dataset / "truth" / "sub-01" / "fibres.nii.gz")
    assert tissue.shape[-1] == 5 and fibres.shape[-1] == 6
    np.testing.assert_allclose(tissue.header.get_zooms()[:3], 1.2)
    t = tissue.get_fdata()
    assert t[..., :3].sum(-1).max() <= 1.0 + 1e-4
    f = fibres.get_fdata()[..., :3]
    wm = t[..., 0] > 0.5
    np.testing.assert_allclose(np.linalg.norm(f[wm], axis=-1), 1.0, atol=1e-4)
    info = yaml.safe_load((tiny_dataset / "truth" / "sub-01" / "subject.yaml").read_text())
    rad = info["restricted_diffusivities"]
    assert rad["connectom_st"]["radial"] > rad["ge_st"]["radial"]  # shorter pulses see less restriction
    assert (t[..., 4] > 0.2).any()  # a crossing region in the tiny block


def test_subjects_are_distinct_brains(tiny_dataset):
    a = nib.load(tiny_dataset / "truth" / "sub-01" / "tissue.nii.gz").get_fdata()[..., 0]
    b = nib.load(tiny_dataset / "truth" / "sub-02" / "tissue.nii.gz").get_fdata()[..., 0]
    assert np.abs(a - b).mean() > 0.02
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.5  # but the same anatomy


def test_same_seed_same_data_and_parallel_equals_serial(tmp_path, tiny_dataset):
    out = simulate(tmp_path / "again", preset="tiny", seed=7, quiet=True, jobs=1, n_subjects=2)
    for s in ("sub-01", "sub-02"):
        for p in ("ge_st", "connectom_sa"):
            a = np.asanyarray(nib.load(out / s / p / "dwi.nii.gz").dataobj)
            b = np.asanyarray(nib.load(tiny_dataset / s / p / "dwi.nii.gz").dataobj)
            np.testing.assert_array_equal(a, b)
    other = simulate(tmp_path / "other", preset="tiny", seed=8, quiet=True, n_subjects=1)
    a = np.asanyarray(nib.load(other / "sub-01" / "ge_st" / "dwi.nii.gz").dataobj)
    b = np.asanyarray(nib.load(tiny_dataset / "sub-01" / "ge_st" / "dwi.nii.gz").dataobj)
    assert not np.array_equal(a, b)


def test_user_platform_file(tmp_path):
    spec = yaml.safe_load(default_platforms_path().read_text())
    spec["platforms"] = spec["platforms"][:2]
    spec["platforms"][1]["name"] = "my_scanner"
    spec["platforms"][1]["n_averages"] = 4  # twice the reference's SNR
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = simulate(tmp_path / "ds", preset="tiny", seed=1, platforms_file=path, n_subjects=1, quiet=True)
    ds = load_dataset(out)
    assert list(ds.platforms) == ["ge_st", "my_scanner"]
    sim = yaml.safe_load((out / "simulation.yaml").read_text())
    assert sim["platforms"][1]["snr"] == 52 and sim["simulator_version"] == 2


def test_snr_is_derived_from_one_reference():
    """Voxel volume, TE with white matter's T2, coil, averages, g-factor; the 1.2 mm protocol near 5."""
    snr = {p.name: p.snr for p in load_platforms()}
    assert snr["prisma_st"] == 26  # the reference itself
    assert snr["connectom_sa"] == pytest.approx(26 * 1.15 / 8 * np.exp(21 / 75), abs=1e-3)
    assert 4.5 < snr["connectom_sa"] < 5.5 and snr["ge_st"] < snr["prisma_st"] < snr["connectom_st"]


def test_a_platform_may_not_set_its_own_snr(tmp_path):
    spec = yaml.safe_load(default_platforms_path().read_text())
    spec["platforms"][1]["snr"] = 50
    bad = tmp_path / "snr.yaml"
    bad.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match=r"snr.yaml: .*platform 1 sets 'snr', which is derived from snr_reference"):
        load_platforms(bad)


def test_platform_file_errors(tmp_path):
    spec = yaml.safe_load(default_platforms_path().read_text())
    spec["platforms"][0]["snrr"] = 3
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match=r"typo.yaml: unknown key 'platforms.0.snrr'"):
        simulate(tmp_path / "x", preset="tiny", platforms_file=bad, quiet=True)
    spec = yaml.safe_load(default_platforms_path().read_text())
    spec["platforms"][3]["voxel_size"] = 1.0
    bad.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match="whole multiple"):
        simulate(tmp_path / "x", preset="tiny", platforms_file=bad, quiet=True)
    with pytest.raises(InputError, match=r"number of processes \(--jobs\) must be at least 1, not 0"):
        simulate(tmp_path / "x", preset="tiny", jobs=0, quiet=True)
    assert not (tmp_path / "x").exists()


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="--force"):
        simulate(out, preset="tiny", quiet=True, n_subjects=1)
    assert (out / "keep.txt").read_text() == "mine"
    simulate(out, preset="tiny", quiet=True, n_subjects=1, force=True)
    assert not (out / "keep.txt").exists() and (out / "dataset.yaml").exists()


def test_render_scan_reproduces_the_stored_scan_and_its_noiseless_truth(tiny_dataset):
    from mrharmony.simulate import render_scan

    stored = nib.load(tiny_dataset / "sub-02" / "prisma_st" / "dwi.nii.gz")
    noisy = render_scan(tiny_dataset, "sub-02", "prisma_st")
    np.testing.assert_array_equal(noisy.dwi, np.asanyarray(stored.dataobj))
    np.testing.assert_allclose(noisy.affine, stored.affine, atol=1e-4)
    clean = render_scan(tiny_dataset, "sub-02", "prisma_st", noise=False)
    assert clean.dwi.dtype == np.float32 and clean.dwi.shape == noisy.dwi.shape
    np.testing.assert_array_equal(clean.mask, noisy.mask)
    # the noise is what differs: zero-mean, with the std that two noisy b0 volumes show (NEMA)
    i, j = np.flatnonzero(clean.bvals <= 50)[:2]
    b0 = clean.dwi[..., i]
    bright = (clean.mask > 0) & (b0 > 0.5 * b0[clean.mask > 0].max())  # Rician bias negligible
    resid = noisy.dwi[..., i][bright].astype(np.float64) - b0[bright]
    sigma_nema = (noisy.dwi[..., i][bright].astype(np.float64) - noisy.dwi[..., j][bright]).std() / np.sqrt(2)
    assert abs(resid.mean()) < 0.1 * resid.std()
    assert 0.8 < resid.std() / sigma_nema < 1.25
    np.testing.assert_allclose(clean.dwi[..., i], clean.dwi[..., j], rtol=1e-5)  # b0s equal without noise
    with pytest.raises(InputError, match="no subject"):
        render_scan(tiny_dataset, "sub-99", "prisma_st")


def test_a_rescan_is_the_same_head_with_new_noise_and_a_small_new_misregistration(tiny_dataset):
    from mrharmony.simulate import render_scan

    scan = render_scan(tiny_dataset, "sub-02", "prisma_st")
    again = render_scan(tiny_dataset, "sub-02", "prisma_st", session=2)
    np.testing.assert_array_equal(render_scan(tiny_dataset, "sub-02", "prisma_st", session=2).dwi, again.dwi)
    assert again.dwi.shape == scan.dwi.shape and not np.array_equal(again.dwi, scan.dwi)
    np.testing.assert_array_equal(again.bvals, scan.bvals)
    b0 = scan.bvals <= 50
    a, b = scan.dwi[..., b0].mean(-1), again.dwi[..., b0].mean(-1)
    brain = (scan.mask > 0) & (again.mask > 0)
    assert np.corrcoef(a[brain], b[brain])[0, 1] > 0.8  # the same anatomy, nearly in place
    dice = 2 * brain.sum() / ((scan.mask > 0).sum() + (again.mask > 0).sum())
    assert dice > 0.95
    # without noise the sessions still differ: the head moved a little (sub-voxel) and the bias field is new
    clean1 = render_scan(tiny_dataset, "sub-02", "prisma_st", noise=False).dwi[..., b0].mean(-1)
    clean2 = render_scan(tiny_dataset, "sub-02", "prisma_st", noise=False, session=2).dwi[..., b0].mean(-1)
    assert not np.allclose(clean1, clean2) and np.corrcoef(clean1[brain], clean2[brain])[0, 1] > 0.95
    with pytest.raises(InputError, match="has no session 0"):
        render_scan(tiny_dataset, "sub-02", "prisma_st", session=0)


def test_render_scan_refuses_a_dataset_of_another_simulator_version(tmp_path, tiny_dataset):
    import shutil

    from mrharmony.simulate import render_scan

    old = tmp_path / "old"
    shutil.copytree(tiny_dataset, old)
    sim = yaml.safe_load((old / "simulation.yaml").read_text())
    del sim["simulator_version"]  # as version 1 wrote it
    (old / "simulation.yaml").write_text(yaml.safe_dump(sim))
    with pytest.raises(
        InputError, match=r"simulation.yaml: was made by simulator version 1; .* simulate the dataset again"
    ):
        render_scan(old, "sub-01", "prisma_st")


def test_noise_of_several_coils_is_non_central_chi():
    """Zero signal: the magnitude's mean is sigma sqrt(2) Gamma(L + 1/2) / Gamma(L) for L coils
    (Rician for L = 1: sigma sqrt(pi / 2)); a strong signal keeps its level and its noise sigma."""
    from scipy.special import gammaln

    from mrharmony.simulate.signal import magnitude_noise

    rng = np.random.default_rng(0)
    for coils in (1, 2, 8):
        m = magnitude_noise(rng, np.zeros(200000, np.float32), 2.0, coils)
        expected = 2.0 * np.sqrt(2) * np.exp(gammaln(coils + 0.5) - gammaln(coils))
        assert m.mean() == pytest.approx(expected, rel=0.01)
    strong = magnitude_noise(rng, np.full(200000, 100.0, np.float32), 2.0, 2)
    assert strong.std() == pytest.approx(2.0, rel=0.02) and strong.mean() == pytest.approx(100.0, rel=0.002)


def test_gradient_nonlinearity_varies_b_over_the_head():
    from mrharmony.simulate.signal import effective_gradients

    plat = next(p for p in load_platforms() if p.name == "connectom_st")
    b = np.array([0.0, 1200.0, 1200.0], np.float32)
    g = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    pos = np.array([[0, 0, 0], [0, 0, 80.0], [80.0, 0, 0]], np.float32)
    be, ge = effective_gradients(plat, b, g, pos)
    assert be.shape == (3, 3) and ge.shape == (3, 3, 3)
    np.testing.assert_allclose(be[0], b, rtol=1e-6)  # at the isocentre: nominal
    cx, _, cz = plat.gradient_nonlinearity
    assert be[1, 2] == pytest.approx(1200 * (1 + cz * 0.64) ** 2, rel=1e-5)  # z gradient, 80 mm along z
    assert be[2, 1] == pytest.approx(1200 * (1 + cx * 0.64) ** 2, rel=1e-5)
    assert (be[:, 0] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(ge[:, 1:], axis=-1), 1.0, rtol=1e-5)
    flat, _ = effective_gradients(
        next(p for p in load_platforms() if p.name == "ge_st").model_copy(
            update={"gradient_nonlinearity": (0.0, 0.0, 0.0)}
        ),
        b,
        g,
        pos,
    )
    assert flat.shape == (1, 3)
