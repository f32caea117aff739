"""Structural harmonization metrics against hand-computed values."""

import nibabel as nib
import numpy as np
import pytest

from mrharmony.structural.metrics import (
    brain_mask,
    dice,
    markdown_table,
    nwd,
    paired_tests,
    ravd,
    segment_tissues,
    ssim_psnr,
    summarize,
    wasserstein,
)


def test_wasserstein_and_nwd_by_hand():
    i = np.array([0.0, 1.0, 2.0])
    t = np.array([10.0, 11.0, 12.0])
    assert wasserstein(i, t) == pytest.approx(10.0)  # a shift by 10
    mi, mt = np.ones(3, bool), np.ones(3, bool)
    assert nwd(i, t, t, input_mask=mi, target_mask=mt) == pytest.approx((1.0, 0.0))  # took the target's look
    assert nwd(i, i, t, input_mask=mi, target_mask=mt) == pytest.approx((0.0, 1.0))  # left as it was
    assert nwd(i, i + 2.5, t, input_mask=mi, target_mask=mt) == pytest.approx((0.25, 0.75))
    # only the mask's voxels count
    big = np.array([0.0, 1.0, 2.0, 1000.0])
    assert nwd(
        big, big + 10, np.r_[t, 0], input_mask=np.array([1, 1, 1, 0], bool), target_mask=np.array([1, 1, 1, 0], bool)
    ) == pytest.approx((1.0, 0.0))
    with pytest.raises(ValueError, match="undefined"):
        nwd(i, t, i, input_mask=mi, target_mask=mt)


def test_ravd_by_hand():
    a = np.zeros((4, 4), np.uint8)
    a[:2] = 2  # 8 GM voxels
    a[2:] = 3  # 8 WM voxels
    b = a.copy()
    b[1, :2] = 3  # 2 GM voxels became WM
    r = ravd(a, b)
    assert r["gm"] == pytest.approx(2 / 8) and r["wm"] == pytest.approx(2 / 8)
    assert ravd(a, a) == {"gm": 0.0, "wm": 0.0}


def test_ssim_psnr_by_hand():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (12, 12, 12))
    truth[0, 0, 0], truth[0, 0, 1] = 0.0, 1.0  # data range exactly 1
    mask = np.ones(truth.shape, bool)
    s, p = ssim_psnr(truth, truth, mask)
    assert s == pytest.approx(1.0) and p == float("inf")
    pred = truth + 0.1  # MSE 0.01 on a range of 1: 20 dB
    s2, p2 = ssim_psnr(pred, truth, mask)
    assert p2 == pytest.approx(20.0) and s2 < 1.0


@pytest.mark.parametrize("modality", ["T1w", "T2w", "FLAIR"])
def test_segmentation_names_the_tissues_by_the_modality_contrast(modality):
    """Three slabs of CSF, GM and WM with a site's contrast in each modality, and noise."""
    from mrharmony.simulate.structural import load_sites

    contrast = load_sites()[0].intensities(modality)
    truth = np.repeat(np.array([1, 2, 3], np.uint8), 10)[:, None, None] * np.ones((1, 20, 20), np.uint8)
    img = np.asarray(contrast)[truth - 1] + 0.04 * np.random.default_rng(0).standard_normal(truth.shape)
    labels = segment_tissues(img, np.ones(truth.shape, bool), modality=modality)
    assert (labels == truth).mean() > 0.95


def test_segmentation_finds_the_tissues_of_a_synthetic_t1(tmp_path):
    from mrharmony.simulate.structural import simulate_structural

    root = simulate_structural(tmp_path / "st", preset="tiny", seed=1, n_subjects=1, rescans=False, quiet=True)
    img = nib.load(root / "sub-01" / "siteA" / "T1w.nii.gz").get_fdata()
    mask = nib.load(root / "sub-01" / "mask.nii.gz").get_fdata() > 0
    tissue = nib.load(root / "truth" / "sub-01" / "tissue.nii.gz").get_fdata()
    labels = segment_tissues(img, mask)
    # the tiny block holds little pure CSF, so the three classes split the darker GM: check the
    # voxels the truth calls pure WM and pure GM
    wm, gm = tissue[..., 2] > 0.9, tissue[..., 1] > 0.9
    assert (labels[wm] == 3).mean() > 0.8  # WM's own T1 varies by several percent (tissue_variation)
    assert (labels[gm] < 3).mean() > 0.9
    assert set(np.unique(labels[mask])) == {1, 2, 3} and not labels[~mask].any()


def test_dice_by_hand():
    a = np.zeros((4, 4, 1), np.uint8)
    b = a.copy()
    a[:2] = 2  # GM: 8 voxels
    b[:1] = 2  # GM: 4 voxels, all inside a's
    a[2:] = 3
    b[1:] = 3  # WM: a has 8, b 12, overlap 8
    d = dice(a, b)
    assert d["gm"] == pytest.approx(2 * 4 / 12) and d["wm"] == pytest.approx(2 * 8 / 20)
    assert dice(a, a) == {"gm": 1.0, "wm": 1.0}


def test_brain_mask_keeps_the_largest_component_with_its_holes_filled():
    from mrharmony.data import masks

    img = np.zeros((16, 16, 16), np.float32)
    img[3:13, 3:13, 3:13] = 100.0
    img[7, 7, 7] = 0.0  # a hole
    img[0, 0, 0] = 100.0  # a speck
    m = brain_mask(img)
    assert m.dtype == bool and m.sum() == 1000 and m[7, 7, 7] and not m[0, 0, 0]
    assert brain_mask is masks.brain_mask  # one implementation for both wings
    np.testing.assert_array_equal(masks.largest_component_filled(img > 50), m)


def _rows(rng, methods=("truth", "hail", "none", "nyul")):
    rows = []
    for group in ("seen", "unseen"):
        for subject in range(8):
            for method in methods:
                rows.append(
                    {
                        "subject": f"s{subject}",
                        "modality": "T1w",
                        "input_site": "A",
                        "target_site": "B",
                        "group": group,
                        "method": method,
                        "ssim": 0.5 if method == "none" else float(rng.random()),
                        "nwd_tp": float(rng.random()),
                    }
                )
    return rows


def test_structural_paired_tests_pair_rows_and_share_the_tests_of_both_wings():
    from scipy.stats import wilcoxon

    from mrharmony.stats import paired_test

    rows = _rows(np.random.default_rng(0))
    tests = paired_tests(rows, reference="hail")
    assert [(t["group"], t["method"], t["metric"]) for t in tests][:4] == [
        ("seen", "none", "ssim"),
        ("seen", "none", "nwd_tp"),
        ("seen", "nyul", "ssim"),
        ("seen", "nyul", "nwd_tp"),
    ]
    assert len(tests) == 2 * 2 * 2  # groups x other methods (not the truth) x metrics
    t = tests[2]
    a = np.array([r["ssim"] for r in rows if r["group"] == "seen" and r["method"] == "hail"])
    b = np.array([r["ssim"] for r in rows if r["group"] == "seen" and r["method"] == "nyul"])
    assert t["n"] == 8 and t["p"] == wilcoxon(a, b).pvalue and t["median_difference"] == np.median(a - b)
    assert t["p_bonferroni"] == min(1.0, t["p"] * 8)
    assert {k: t[k] for k in ("n", "median_difference", "p")} == paired_test(a, b)
    assert list(t) == ["modality", "group", "method", "metric", "n", "median_difference", "p", "p_bonferroni"]
    same = paired_tests([dict(r, method="copy") for r in rows if r["method"] == "hail"] + rows, reference="hail")
    assert all(t["p"] == 1.0 and t["median_difference"] == 0.0 for t in same if t["method"] == "copy")


def test_structural_metrics_command(tmp_path, capsys):
    import json

    from mrharmony.cli import main
    from mrharmony.simulate.structural import simulate_structural
    from mrharmony.structural.metrics import metrics_from_files
    from mrharmony.structural.registry import intensity_harmonizer

    root = simulate_structural(tmp_path / "st", preset="tiny", seed=4, n_subjects=2, rescans=False, quiet=True)
    inp, tgt = root / "sub-01" / "siteB" / "T1w.nii.gz", root / "sub-02" / "siteA" / "T1w.nii.gz"
    mask, tmask = root / "sub-01" / "mask.nii.gz", root / "sub-02" / "mask.nii.gz"
    img = nib.load(inp)
    pred = (
        intensity_harmonizer("nyul")
        .transform(
            img.get_fdata(),
            mask=nib.load(mask).get_fdata() > 0,
            target=nib.load(tgt).get_fdata(),
            target_mask=nib.load(tmask).get_fdata() > 0,
        )
        .image
    )
    nib.save(nib.Nifti1Image(pred, img.affine), tmp_path / "pred.nii.gz")
    args = [
        "structural",
        "metrics",
        "--input",
        str(inp),
        "--prediction",
        str(tmp_path / "pred.nii.gz"),
        "--target",
        str(tgt),
        "--mask",
        str(mask),
        "--target-mask",
        str(tmask),
        "--truth",
        str(root / "sub-01" / "siteA" / "T1w.nii.gz"),
        "--json",
        str(tmp_path / "m.json"),
    ]
    assert main(args) == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert set(res) == {"nwd_ip", "nwd_tp", "ravd_gm", "ravd_wm", "dice_gm", "dice_wm", "ssim", "psnr_db"}
    assert res["nwd_ip"] > 0.7 and res["nwd_tp"] < 0.3 and 0 < res["ssim"] <= 1
    assert res == pytest.approx(
        metrics_from_files(
            input_path=inp,
            prediction_path=tmp_path / "pred.nii.gz",
            target_path=tgt,
            input_mask_path=mask,
            target_mask_path=tmask,
            truth_path=root / "sub-01" / "siteA" / "T1w.nii.gz",
        )
    )
    capsys.readouterr()
    assert main(args) == 2  # the JSON exists
    assert "already exists" in capsys.readouterr().err
    bad = args[:]
    bad[bad.index("--prediction") + 1] = str(mask.parent / "siteA" / "T1w.nii.gz")  # fine: same grid
    bad[bad.index("--truth") + 1] = str(tmp_path / "nothing.nii.gz")
    bad[bad.index("--json") + 1] = str(tmp_path / "m2.json")
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "nothing.nii.gz" in err and err.count("\n") == 1 and not (tmp_path / "m2.json").exists()


def test_segmentation_of_a_degenerate_image_gives_tissue_labels():
    """A flat image, or one of two values (as a poorly trained network may give), leaves classes
    empty: the segmentation still labels every brain voxel 1-3 and nothing outside."""
    m = np.zeros((20, 20, 20), bool)
    m[4:16, 4:16, 4:16] = True
    two = np.where(np.arange(8000).reshape(20, 20, 20) % 2 == 0, 1.0, 2.0).astype(np.float32)
    for img in (np.ones((20, 20, 20), np.float32), two):
        labels = segment_tissues(img, m)
        assert set(np.unique(labels[m])) <= {1, 2, 3} and not labels[~m].any()
    assert len(np.unique(segment_tissues(two, m)[m])) == 2  # the two values are told apart


def test_a_two_voxel_texture_shows_in_the_period2_power_and_a_smooth_change_does_not():
    from mrharmony.structural.metrics import period2_power, texture_ratio

    rng = np.random.default_rng(0)
    x = rng.random((24, 20, 6))
    mask = np.zeros(x.shape, bool)
    mask[2:22, 3:18, 1:5] = True
    truth = x * 1.3 + 0.05 * rng.standard_normal(x.shape)  # another site: a contrast change and new noise
    i, j, _ = np.indices(x.shape)
    checker = 0.05 * ((i + j) % 2 * 2 - 1)  # a pattern of period 2, as a squeeze can leave
    smooth = x * 1.3
    assert texture_ratio(truth, x, truth, mask) == pytest.approx(1.0)
    assert texture_ratio(smooth + checker, x, truth, mask) > 3 * texture_ratio(smooth, x, truth, mask)
    assert period2_power(np.zeros(x.shape), mask) == 0.0
    with pytest.raises(ValueError, match="empty mask"):
        period2_power(x, np.zeros(x.shape, bool))


def test_structural_summary_and_tests_are_over_subjects_not_site_pairs():
    """Two site pairs per subject: a subject's value is its mean over them; the interval and the
    paired tests are over the subjects."""
    from scipy.stats import wilcoxon

    from mrharmony.stats import mean_ci

    rng = np.random.default_rng(3)
    rows = []
    for subject in range(5):
        for pair in (("A", "B"), ("B", "A")):
            for method in ("hail", "nyul"):
                rows.append(
                    {
                        "subject": f"s{subject}",
                        "modality": "T1w",
                        "input_site": pair[0],
                        "target_site": pair[1],
                        "group": "seen",
                        "method": method,
                        "ssim": float(rng.random()),
                        "nwd_tp": float(rng.random()),
                    }
                )
    by_subject = {
        m: [np.mean([r["ssim"] for r in rows if r["method"] == m and r["subject"] == f"s{s}"]) for s in range(5)]
        for m in ("hail", "nyul")
    }
    hail = next(r for r in summarize(rows) if r["method"] == "hail")
    assert hail["n_subjects"] == 5 and hail["n_pairs"] == 10
    assert hail["ssim"] == pytest.approx(np.mean(by_subject["hail"]))
    assert hail["ssim_ci95"] == pytest.approx(mean_ci(by_subject["hail"])["ci95"])
    assert hail["ssim_sd"] == pytest.approx(np.std([r["ssim"] for r in rows if r["method"] == "hail"]))
    lo, hi = hail["ssim_ci95"]
    assert f"{hail['ssim']:.3f} [{lo:.3f}, {hi:.3f}]" in markdown_table(summarize(rows))
    t = next(t for t in paired_tests(rows, reference="hail") if t["metric"] == "ssim")
    assert t["n"] == 5 and t["p"] == pytest.approx(wilcoxon(by_subject["hail"], by_subject["nyul"]).pvalue)
    # one test subject: no interval over subjects, the spread over its site pairs instead
    one = summarize([r for r in rows if r["subject"] == "s0"])
    assert one[0]["n_subjects"] == 1 and " ± " in markdown_table(one)


def test_agreement_with_the_target_sites_segmentation():
    from mrharmony.structural.metrics import AGREEMENT, agreement, measured_volumes, partial_volumes, tissue_volumes

    target = np.zeros((10, 10, 10), np.uint8)
    target[:, :, :4], target[:, :, 4:7], target[:, :, 7:] = 1, 2, 3  # CSF 400, GM 300, WM 300 voxels
    vt = tissue_volumes(target, 0.008)
    same = agreement(target, target, volumes=vt, target_volumes=vt, truth_volumes={"csf": 3.2, "gm": 3.0, "wm": 2.0})
    assert set(same) == set(AGREEMENT)
    assert same["target_vd_gm"] == 0 and same["target_dice_gm"] == 1 and same["target_dice_wm"] == 1
    assert same["gm_ml"] == pytest.approx(2.4) and same["csf_ml"] == pytest.approx(3.2)
    assert same["truth_vd_gm"] == pytest.approx(0.2) and same["truth_vd_wm"] == pytest.approx(0.2)
    thinner = target.copy()
    thinner[:, :, 4] = 1  # one GM slab of three becomes CSF
    a = agreement(thinner, target, volumes=tissue_volumes(thinner, 0.008), target_volumes=vt)
    assert a["target_vd_gm"] == pytest.approx(1 / 3) and a["target_vd_wm"] == 0
    assert a["target_dice_gm"] == pytest.approx(2 * 200 / 500)
    assert np.isnan(a["truth_vd_gm"])  # no truth given
    # partial volumes: a voxel halfway between the GM and WM means is half of each
    img = np.asarray([0.2, 0.6, 1.0, 0.8, 0.4, 1.2, 0.0], np.float32)[:, None, None]
    labels = np.asarray([1, 2, 3, 3, 2, 3, 1], np.uint8)[:, None, None]
    mask = np.ones(img.shape, bool)
    frac = partial_volumes(img, labels, mask)[:, 0, 0]  # means: CSF 0.1, GM 0.5, WM 1.0
    np.testing.assert_allclose(frac[3], [0, 0.4, 0.6], atol=1e-6)
    np.testing.assert_allclose(frac[5], [0, 0, 1])  # above the brightest mean: WM alone
    np.testing.assert_allclose(frac.sum(-1), 1, atol=1e-6)
    on_means = partial_volumes(np.asarray([0.1, 0.5, 1.0], np.float32)[:, None, None], labels[[0, 1, 2]], mask[:3])
    np.testing.assert_allclose(on_means[:, 0, 0], np.eye(3), atol=1e-6)  # a voxel at a class mean is that class
    assert measured_volumes(img, labels, mask)["wm"] == pytest.approx(float(frac[:, 2].sum()))
