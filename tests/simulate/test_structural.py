"""The synthetic multi-site structural MRI generator (``simulate --kind structural``)."""

import nibabel as nib
import numpy as np
import pytest
import yaml

from mrharmony.cli import main
from mrharmony.simulate.structural import (
    default_sites_path,
    load_sites,
    simulate_structural,
)


@pytest.fixture(scope="module")
def structural(tmp_path_factory):
    return simulate_structural(tmp_path_factory.mktemp("st") / "tiny", preset="tiny", seed=3, n_subjects=2, quiet=True)


def test_layout_every_subject_on_every_site_on_one_grid(structural):
    info = yaml.safe_load((structural / "structural.yaml").read_text())
    sites = [s["name"] for s in info["sites"]]
    assert {s["role"] for s in info["sites"]} == {"train", "unseen"}
    assert info["subjects"] == ["sub-01", "sub-02"]
    assert info["modalities"] == ["T1w", "T2w", "FLAIR"]
    for subject in info["subjects"]:
        mask = nib.load(structural / subject / "mask.nii.gz")
        tissue = nib.load(structural / "truth" / subject / "tissue.nii.gz")
        assert tissue.shape == (*mask.shape, 3)
        for site in sites:
            for modality in info["modalities"]:
                img = nib.load(structural / subject / site / f"{modality}.nii.gz")
                assert img.shape == mask.shape and img.get_data_dtype() == np.float32
                np.testing.assert_allclose(img.affine, mask.affine)


@pytest.mark.parametrize("site", ["siteA", "siteC"])
def test_site_contrast_is_the_declared_one(structural, site):
    spec = next(s for s in load_sites() if s.name == site)
    img = nib.load(structural / "sub-01" / site / "T1w.nii.gz").get_fdata()
    tissue = nib.load(structural / "truth" / "sub-01" / "tissue.nii.gz").get_fdata()
    gm, wm = np.median(img[tissue[..., 1] > 0.9]), np.median(img[tissue[..., 2] > 0.9])
    c = spec.intensities("T1w")
    assert gm / wm == pytest.approx(c[1] / c[2], abs=0.08)
    assert wm == pytest.approx(spec.scale, rel=0.3)  # WM reads about the site's scale


@pytest.mark.parametrize("modality", ["T2w", "FLAIR"])
def test_every_modality_has_its_own_tissue_order(structural, modality):
    spec = next(s for s in load_sites() if s.name == "siteB")
    img = nib.load(structural / "sub-01" / "siteB" / f"{modality}.nii.gz").get_fdata()
    tissue = nib.load(structural / "truth" / "sub-01" / "tissue.nii.gz").get_fdata()
    med = [np.median(img[tissue[..., k] > 0.9]) for k in range(3)]  # CSF, GM, WM
    expected = np.asarray(spec.intensities(modality))
    assert np.argsort(med).tolist() == np.argsort(expected).tolist()
    assert med[1] / med[2] == pytest.approx(expected[1] / expected[2], abs=0.1)


def test_t1w_does_not_depend_on_the_other_modalities(structural, tmp_path):
    sites = yaml.safe_load(default_sites_path().read_text())
    for s in sites["sites"]:
        s.pop("t2w"), s.pop("flair")
    only = tmp_path / "t1only.yaml"
    only.write_text(yaml.safe_dump(sites))
    t1 = simulate_structural(tmp_path / "t1", preset="tiny", seed=3, n_subjects=1, sites_file=only, quiet=True)
    assert yaml.safe_load((t1 / "structural.yaml").read_text())["modalities"] == ["T1w"]
    assert not (t1 / "sub-01" / "siteA" / "T2w.nii.gz").exists()
    np.testing.assert_array_equal(
        nib.load(t1 / "sub-01" / "siteC" / "T1w.nii.gz").get_fdata(),
        nib.load(structural / "sub-01" / "siteC" / "T1w.nii.gz").get_fdata(),
    )


def test_sites_differ_and_the_same_seed_gives_the_same_files(structural, tmp_path):
    a = nib.load(structural / "sub-02" / "siteA" / "T1w.nii.gz").get_fdata()
    b = nib.load(structural / "sub-02" / "siteB" / "T1w.nii.gz").get_fdata()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.6  # one anatomy
    assert abs(np.median(a) / np.median(b) - 1) > 0.3  # two appearances
    again = simulate_structural(tmp_path / "again", preset="tiny", seed=3, n_subjects=1, quiet=True)
    np.testing.assert_array_equal(
        nib.load(again / "sub-01" / "siteB" / "T1w.nii.gz").get_fdata(),
        nib.load(structural / "sub-01" / "siteB" / "T1w.nii.gz").get_fdata(),
    )


def test_structural_bad_input(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "x"), "--kind", "structural", "--preset", "mushac"]) == 2
    assert "unknown structural preset 'mushac'" in capsys.readouterr().err
    bad = tmp_path / "sites.yaml"
    bad.write_text(yaml.safe_dump({"sites": [{"name": "a", "role": "train"}, {"name": "b", "role": "seen"}]}))
    assert main(["simulate", str(tmp_path / "y"), "--kind", "structural", "--sites", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_rescan_is_the_same_head_moved_a_little_with_new_noise(structural):
    info = yaml.safe_load((structural / "structural.yaml").read_text())
    assert info["rescans"] is True
    first = nib.load(structural / "sub-01" / "siteB" / "T1w.nii.gz").get_fdata()
    again = nib.load(structural / "sub-01" / "siteB" / "rescan" / "T1w.nii.gz").get_fdata()
    other = nib.load(structural / "sub-02" / "siteB" / "T1w.nii.gz").get_fdata()
    r_same, r_other = np.corrcoef(first.ravel(), again.ravel())[0, 1], np.corrcoef(first.ravel(), other.ravel())[0, 1]
    assert 0.8 < r_same < 0.999 and r_same > r_other + 0.1, (r_same, r_other)  # the same person, another session
    assert abs(np.median(again) / np.median(first) - 1) < 0.15  # on the same site
    m1 = nib.load(structural / "sub-01" / "mask.nii.gz").get_fdata() > 0
    m2 = nib.load(structural / "sub-01" / "rescan_mask.nii.gz").get_fdata() > 0
    assert 0.85 < 2 * (m1 & m2).sum() / (m1.sum() + m2.sum()) <= 1  # the second session's own brain mask


def test_one_effect_at_a_time():
    from mrharmony.cli.data import STRUCTURAL_EFFECTS
    from mrharmony.simulate.structural import EFFECTS, isolate_effect

    assert tuple(EFFECTS) == STRUCTURAL_EFFECTS  # the command line's choices are the simulator's
    sites = load_sites()
    blur = isolate_effect(sites, "blur")
    assert [s.name for s in blur] == [s.name for s in sites]
    for s, orig in zip(blur, sites):
        assert s.blur_fwhm_mm == orig.blur_fwhm_mm
        assert (s.t1w, s.snr, s.bias, s.ringing, s.ghosting, s.scale) == (
            sites[0].t1w,
            sites[0].snr,
            sites[0].bias,
            sites[0].ringing,
            sites[0].ghosting,
            sites[0].scale,
        )
    with pytest.raises(Exception, match="no site effect 'colour'"):
        isolate_effect(sites, "colour")


def test_atrophy_thins_the_cortex_and_grows_the_ventricles(structural):
    from mrharmony.simulate.structural import atrophy

    tissue = nib.load(structural / "truth" / "sub-01" / "tissue.nii.gz").get_fdata().astype(np.float32)
    brain = nib.load(structural / "sub-01" / "mask.nii.gz").get_fdata() > 0
    after = atrophy(tissue, brain, gm_loss=0.1)
    np.testing.assert_allclose(after.sum(-1), tissue.sum(-1), atol=1e-5)  # the brain kept
    assert after[..., 1].sum() == pytest.approx(0.9 * tissue[..., 1].sum(), rel=0.01)
    assert after[..., 0].sum() > tissue[..., 0].sum() + 0.1 * tissue[..., 1].sum() * 0.99
    # thinning where GM meets CSF: GM far from CSF keeps its fraction
    from scipy import ndimage

    far = (ndimage.gaussian_filter(tissue[..., 0], 1.0) < 1e-3) & (tissue[..., 1] > 0.5)
    np.testing.assert_allclose(after[..., 1][far], tissue[..., 1][far], atol=1e-3)


def test_sites_from_signal_equations_are_not_one_function_of_each_other(structural):
    """Noiseless, unblurred T1w of one subject on two sites: voxels of one intensity on the first
    site spread on the second (the tissues' T1 and proton density vary within each tissue and
    sequences weigh them differently; three tissues mix), so no intensity map, histogram matching included, undoes a site."""
    from mrharmony.simulate.structural import render_site, tissue_variation

    tissue = nib.load(structural / "truth" / "sub-01" / "tissue.nii.gz").get_fdata().astype(np.float32)
    brain = nib.load(structural / "sub-01" / "mask.nii.gz").get_fdata().astype(np.float32)
    sites = {s.name: s for s in load_sites()}
    clean = {"snr": 1e9, "bias": 0.0, "blur_fwhm_mm": (0.01, 0.01, 0.01), "ringing": 1.0, "ghosting": 0.0, "scale": 1.0}
    var = tissue_variation(np.random.default_rng(0), brain.shape, 2.0)
    m = brain > 0

    def unexplained(variation, modality):
        """The share of site C's variance that no function of site A's intensity explains."""
        a, c = (
            render_site(
                np.random.default_rng(1), sites[n].model_copy(update=clean), tissue, brain, 2.0, modality, variation
            )
            for n in ("siteA", "siteC")
        )
        bins = np.digitize(a[m], np.quantile(a[m], np.linspace(0, 1, 41)[1:-1]))
        within = sum(((c[m][bins == b] - c[m][bins == b].mean()) ** 2).sum() for b in np.unique(bins))
        return within / ((c[m] - c[m].mean()) ** 2).sum()

    # T1w: the variation within tissues does it; FLAIR: partial volumes around CSF's null alone
    assert unexplained(var, "T1w") > max(0.003, 1.5 * unexplained(None, "T1w"))
    assert unexplained(None, "FLAIR") > 0.003
