import numpy as np
import pytest

from mrharmony.dmri.features.sh import (
    SHConfig,
    fit_sh,
    n_coefficients,
    sh_matrices,
    sh_orders,
    sh_to_signal,
)
from mrharmony.errors import InputError


def _dipy_small_64d():
    import nibabel as nib
    from dipy.data import get_fnames
    from dipy.io.gradients import read_bvals_bvecs

    fdata, fbval, fbvec = get_fnames(name="small_64D")
    bvals, bvecs = read_bvals_bvecs(str(fbval), str(fbvec))
    return nib.load(fdata).get_fdata(dtype=np.float32), bvals, bvecs


def test_number_of_coefficients():
    assert n_coefficients(6) == 28 and n_coefficients(4) == 15 and n_coefficients(0) == 1
    assert list(np.bincount(sh_orders(6))[::2]) == [1, 5, 9, 13]


@pytest.mark.parametrize("basis,legacy", [("descoteaux07", False), ("tournier07", False), ("descoteaux07", True)])
def test_fit_equals_dipy_reference_on_real_data(basis, legacy):
    """Our whole-volume fit equals dipy's normalize_data + sf_to_sh on dMRI data dipy ships."""
    from dipy.core.sphere import Sphere
    from dipy.reconst.shm import normalize_data, sf_to_sh

    data, bvals, bvecs = _dipy_small_64d()
    b0 = bvals <= 50
    dw = ~b0
    bvecs = np.where(dw[:, None], bvecs / np.maximum(np.linalg.norm(bvecs, axis=1, keepdims=True), 1e-12), 0)
    mask = data[..., b0].mean(-1) > 0
    cfg = SHConfig(basis=basis, legacy=legacy)
    ours = fit_sh(data, bvals, bvecs, mask, cfg)
    norm = normalize_data(data.astype(np.float64), b0, min_signal=1e-12)
    ref = sf_to_sh(norm[..., dw], Sphere(xyz=bvecs[dw]), sh_order_max=6, basis_type=basis, legacy=legacy, smooth=0.006)
    assert ours.shape == data.shape[:3] + (28,)
    np.testing.assert_allclose(ours[mask], ref[mask], rtol=1e-4, atol=1e-5)
    assert np.all(ours[~mask] == 0)


def test_regularization_is_laplace_beltrami():
    """The fit solves min |B c - s|^2 + lambda |L c|^2 with L = diag(l (l + 1)), written out here."""
    from dipy.reconst.shm import real_sh_descoteaux

    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((45, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    cfg = SHConfig(smooth=0.02)
    _, inv_b = sh_matrices(dirs, cfg)
    theta = np.arccos(dirs[:, 2])
    phi = np.arctan2(dirs[:, 1], dirs[:, 0])
    b, _, l_values = real_sh_descoteaux(6, theta, phi, legacy=False)
    lb = np.diag((l_values * (l_values + 1)).astype(float))
    expected = np.linalg.solve(b.T @ b + 0.02 * lb @ lb, b.T)  # (n_coef, n_dirs)
    np.testing.assert_allclose(inv_b, expected.T, atol=1e-8)


def test_round_trip_on_noiseless_band_limited_signal():
    """SH -> signal -> SH recovers the coefficients exactly without regularization."""
    rng = np.random.default_rng(1)
    dirs = rng.standard_normal((60, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    cfg = SHConfig(smooth=0.0)
    coeffs = rng.standard_normal((4, 3, 2, 28)).astype(np.float32)
    signal = sh_to_signal(coeffs, dirs, cfg)
    s0 = np.full(signal.shape[:3] + (2,), 2.0, np.float32)
    dwi = np.concatenate([s0, signal * 2.0], axis=-1)
    bvals = np.r_[0, 0, np.full(60, 1200.0)]
    bvecs = np.r_[np.zeros((2, 3)), dirs]
    back = fit_sh(dwi, bvals, bvecs, np.ones(dwi.shape[:3], bool), cfg)
    np.testing.assert_allclose(back, coeffs, atol=1e-4)


def test_tensor_signal_round_trip_is_close():
    """A noiseless, strongly anisotropic tensor signal is represented by order-6 SH to 0.5% of S0."""
    rng = np.random.default_rng(2)
    dirs = rng.standard_normal((60, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    d = np.diag([1.7e-3, 0.3e-3, 0.3e-3])
    sig = np.exp(-1200 * np.einsum("ni,ij,nj->n", dirs, d, dirs))
    dwi = np.r_[1.0, sig][None, None, None, :].astype(np.float32)
    bvals = np.r_[0.0, np.full(60, 1200.0)]
    bvecs = np.r_[np.zeros((1, 3)), dirs]
    cfg = SHConfig(smooth=0.0)
    c = fit_sh(dwi, bvals, bvecs, np.ones((1, 1, 1), bool), cfg)
    other = rng.standard_normal((30, 3))
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    pred = sh_to_signal(c, other, cfg)[0, 0, 0]
    truth = np.exp(-1200 * np.einsum("ni,ij,nj->n", other, d, other))
    assert np.max(np.abs(pred - truth)) < 0.005


def test_too_few_directions_for_the_order(tmp_path):
    dirs = np.random.default_rng(0).standard_normal((20, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    bvals = np.r_[0.0, np.full(20, 1200.0)]
    dwi = np.ones((2, 2, 2, 21), np.float32)
    with pytest.raises(InputError, match="dwi.bval: has 20 directions on the b=1200 shell, too few for SH order 6"):
        fit_sh(
            dwi,
            bvals,
            np.r_[np.zeros((1, 3)), dirs],
            np.ones((2, 2, 2), bool),
            SHConfig(),
            source=tmp_path / "dwi.bval",
        )
    fit_sh(dwi, bvals, np.r_[np.zeros((1, 3)), dirs], np.ones((2, 2, 2), bool), SHConfig(sh_order_max=4))


def test_every_shell_is_fitted_in_turn_unless_named():
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((60, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    # the shells interleaved, with b-values of one shell a little apart, as scanners write them
    bvals = np.r_[0.0, np.tile([1195.0, 2990.0, 1205.0, 3010.0], 15)]
    bvecs = np.r_[np.zeros((1, 3)), dirs]
    dwi = rng.uniform(50, 100, (2, 2, 2, 61)).astype(np.float32)
    dwi[..., 0] = 200
    mask = np.ones((2, 2, 2), bool)
    both = fit_sh(dwi, bvals, bvecs, mask, SHConfig())
    assert both.shape[-1] == 56
    low = bvals < 2000
    alone = fit_sh(dwi[..., low | (bvals == 0)], bvals[low | (bvals == 0)], bvecs[low | (bvals == 0)], mask, SHConfig())
    np.testing.assert_allclose(both[..., :28], alone, rtol=1e-5, atol=1e-6)  # the lowest shell first
    assert fit_sh(dwi, bvals, bvecs, mask, SHConfig(shells=[3000])).shape[-1] == 28
    np.testing.assert_allclose(fit_sh(dwi, bvals, bvecs, mask, SHConfig(shells=[3000])), both[..., 28:], rtol=1e-5)
    assert SHConfig(shell=1200).shells == [1200.0]  # settings written before multi-shell features
    assert SHConfig(shell=None).shells is None
    with pytest.raises(InputError, match=r"has no volume on the b=2000 s/mm\^2 shell \(its shells: 1200, 3000\)"):
        fit_sh(dwi, bvals, bvecs, mask, SHConfig(shells=[2000]))


def test_channel_layout_of_several_shells():
    from mrharmony.dmri.features.sh import channel_groups, channel_orders, order_and_shells

    assert list(channel_orders(56, 6)[:6]) == [0, 2, 2, 2, 2, 2]
    assert list(channel_orders(56, 6)[28:34]) == [0, 2, 2, 2, 2, 2]
    groups = channel_groups(56, 6)
    assert groups[0] == 0 and groups[28] == 4 and groups[-1] == 7  # (shell, order) pairs, shell-major
    assert order_and_shells(56) == (6, 2) and order_and_shells(28) == (6, 1) and order_and_shells(30) == (4, 2)
    with pytest.raises(ValueError, match="not whole shells"):
        channel_orders(30, 6)


def test_odd_order_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SHConfig(sh_order_max=5)
