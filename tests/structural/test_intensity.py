"""One-shot intensity baselines of structural harmonization (ImageHarmonizers; the contract
itself is checked for every class in test_harmonizer.py)."""

import nibabel as nib
import numpy as np
import pytest

from mrharmony.errors import InputError
from mrharmony.structural.metrics import nwd
from mrharmony.structural.registry import INTENSITY_METHODS, intensity_harmonizer


def _run(method, img, m, tgt, tm):
    return intensity_harmonizer(method).transform(img, target=tgt, mask=m, target_mask=tm).image


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from mrharmony.simulate.structural import simulate_structural

    root = simulate_structural(
        tmp_path_factory.mktemp("int") / "st", preset="tiny", seed=2, n_subjects=2, rescans=False, quiet=True
    )
    load = lambda *p: nib.load(root.joinpath(*p)).get_fdata()  # noqa: E731
    mask = load("sub-01", "mask.nii.gz") > 0
    return (
        load("sub-01", "siteB", "T1w.nii.gz"),
        mask,
        load("sub-02", "siteA", "T1w.nii.gz"),
        load("sub-02", "mask.nii.gz") > 0,
        load("sub-01", "siteA", "T1w.nii.gz"),
    )


def test_zscore_takes_the_target_mean_and_std(pair):
    img, m, tgt, tm, _ = pair
    out = _run("zscore", img, m, tgt, tm)
    assert out[m].mean() == pytest.approx(tgt[tm].mean(), rel=1e-4)
    assert out[m].std() == pytest.approx(tgt[tm].std(), rel=1e-4)


def test_nyul_puts_the_input_landmarks_on_the_target_s(pair):
    img, m, tgt, tm, _ = pair
    out = _run("nyul", img, m, tgt, tm)
    percs = [1, 10, 30, 50, 70, 90, 99]
    np.testing.assert_allclose(np.percentile(out[m], percs), np.percentile(tgt[tm], percs), rtol=0.02)


def test_every_baseline_moves_the_input_towards_the_target_site(pair):
    img, m, tgt, tm, _ = pair
    scores = {
        meth: nwd(img, _run(meth, img, m, tgt, tm), tgt, input_mask=m, target_mask=tm) for meth in INTENSITY_METHODS
    }
    assert scores["none"] == pytest.approx((0.0, 1.0))
    for meth in ("zscore", "whitestripe", "nyul"):
        assert scores[meth][1] < 0.3, (meth, scores[meth])  # close to the target's distribution
    np.testing.assert_array_equal(_run("none", img, m, tgt, tm), img.astype(np.float32))
    with pytest.raises(InputError, match="unknown intensity method"):
        _run("gan", img, m, tgt, tm)
