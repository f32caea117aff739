"""The statistical harmonizers (none, global / voxelwise mean-variance, linear RISH) and the
registration they learn their maps with."""

import numpy as np
import pytest
import yaml

from mrharmony.dmri.features.normalization import ChannelStats
from mrharmony.dmri.features.prepare import ScanFeatures, load_features
from mrharmony.dmri.features.sh import SHConfig, sh_orders
from mrharmony.dmri.loading import load_harmonizer
from mrharmony.dmri.statistical import IdentityHarmonizer
from mrharmony.dmri.training import train
from mrharmony.errors import InputError
from mrharmony.registration import register, resample, scaled_affine, upsample_masked


def _blobs(shape, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    for _ in range(12):
        c = [rng.integers(8, s - 8) for s in shape]
        img[tuple(c)] = rng.uniform(1, 3)
    img = ndimage.gaussian_filter(img, 3.0)
    return img / img.max()


def test_registration_recovers_a_known_rigid_transform():
    shape = (40, 44, 36)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-40, -44, -36]
    static = _blobs(shape)
    t = np.deg2rad(4.0)
    truth = np.eye(4)
    truth[:3, :3] = [[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]
    truth[:3, 3] = [2.5, -1.5, 1.0]
    # the moving image shows the static one moved: moving(y) = static(truth^-1 y)
    moving = resample(static, affine, shape, affine, np.linalg.inv(truth))
    found = register(static, affine, moving, affine, kind="rigid")
    np.testing.assert_allclose(found[:3, :3], truth[:3, :3], atol=0.01)
    np.testing.assert_allclose(found[:3, 3], truth[:3, 3], atol=0.3)  # mm, on 2 mm voxels
    np.testing.assert_array_equal(register(static, affine, moving, affine, kind="none"), np.eye(4))


def test_upsample_masked_keeps_linear_fields_and_the_mask():
    x, y, z = np.meshgrid(np.arange(6.0), np.arange(5.0), np.arange(4.0), indexing="ij")
    data = np.stack([2 * x - y + 0.5 * z, np.ones_like(x)], -1).astype(np.float32)
    mask = np.ones((6, 5, 4), bool)
    mask[0] = False
    data[~mask] = 1e6  # never leaks in
    up = upsample_masked(data, mask, 2)
    assert up.shape == (12, 10, 8, 2)
    assert np.all(up[:2] == 0)
    inner = up[4:10, 2:8, 2:6]  # away from the mask's edge and the volume's border
    fx, fy, fz = np.meshgrid(
        (np.arange(4, 10) + 0.5) / 2 - 0.5,
        (np.arange(2, 8) + 0.5) / 2 - 0.5,
        (np.arange(2, 6) + 0.5) / 2 - 0.5,
        indexing="ij",
    )
    np.testing.assert_allclose(inner[..., 0], 2 * fx - fy + 0.5 * fz, atol=1e-4)
    np.testing.assert_allclose(up[2:][..., 1], 1.0, atol=1e-6)  # constant stays constant up to the edge
    np.testing.assert_array_equal(upsample_masked(data, mask, 1)[1:], data[1:])
    fine = scaled_affine(np.diag([2.4, 2.4, 2.4, 1.0]), 0.5)
    np.testing.assert_allclose(fine @ [-0.5, -0.5, -0.5, 1], [-1.2, -1.2, -1.2, 1])


def _scan(data, mask, stats):
    return ScanFeatures(data=stats.apply(data, mask), mask=mask, affine=np.eye(4), stats=stats, sh=SHConfig())


def test_none_takes_the_input_coefficients_as_the_target_s():
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((3, 4, 2, 5)).astype(np.float32) * 2 + 1
    mask = np.ones((3, 4, 2), bool)
    mask[0] = False
    raw[~mask] = 0
    stats = ChannelStats.fit(raw, mask)
    ts = {"mean": [0.5] * 5, "std": [2.0] * 5}
    h = IdentityHarmonizer(
        targets=["a", "b"], ratios={"a": 1, "b": 2}, reference={"sh": {}, "target_stats": {"a": ts, "b": ts}}
    )
    out = h.predict(_scan(raw, mask, stats))
    np.testing.assert_allclose(out["a"][1:], (raw[1:] - 0.5) / 2.0, atol=1e-5)
    assert np.all(out["a"][0] == 0) and out["b"].shape == (6, 8, 4, 5) and np.all(out["b"][:2] == 0)
    np.testing.assert_allclose(h.target_coefficients(out["a"], "a", mask), raw, atol=1e-5)


@pytest.fixture(scope="module")
def stat_runs(tmp_path_factory, tiny_prepared):
    base = tmp_path_factory.mktemp("stat")
    out = {}
    for method in ("none", "meanvar_global", "meanvar_voxel", "rish"):
        cfg = {
            "data": {"dataset": str(tiny_prepared), "split": "subject", "test_subjects": ["sub-03"]},
            "model": {"method": method},
        }
        (base / f"{method}.yaml").write_text(yaml.safe_dump(cfg))
        out[method] = train(base / f"{method}.yaml", base / method, quiet=True)
    return out


def _held_out(tiny_prepared, platform):
    from mrharmony.data import load_dataset

    ds = load_dataset(tiny_prepared, check_data=False)
    return load_features(ds, "sub-03", platform)


def test_statistical_runs_are_fitted_on_training_subjects_only(stat_runs):
    import json

    for run in stat_runs.values():
        split = json.loads((run / "split.json").read_text())
        assert split["test_subjects"] == ["sub-03"]
    h = load_harmonizer(stat_runs["rish"])
    assert h.meta["fit_subjects"] == ["sub-01", "sub-02"]
    with pytest.raises(InputError, match="already exists"):
        train(stat_runs["rish"] / "config.yaml", stat_runs["rish"], quiet=True)


def test_global_mean_variance_is_the_normalized_input(stat_runs, tiny_prepared):
    fin = _held_out(tiny_prepared, "ge_st")
    h = load_harmonizer(stat_runs["meanvar_global"])
    assert h.ratios["prisma_st"] == 1
    np.testing.assert_allclose(h.predict(fin)["prisma_st"], fin.data, atol=1e-4)


def _energy_per_order(coeffs, mask, orders):
    return np.array([(coeffs[mask][:, orders == l] ** 2).sum(1).mean() for l in np.unique(orders)])


@pytest.mark.parametrize("target", ["prisma_st", "connectom_sa"])
def test_rish_matches_the_target_s_energy_per_order_on_a_held_out_subject(stat_runs, tiny_prepared, target):
    fin, ft = _held_out(tiny_prepared, "ge_st"), _held_out(tiny_prepared, target)
    orders = sh_orders(fin.sh.sh_order_max)
    truth = _energy_per_order(ft.stats.invert(ft.data, ft.mask), ft.mask, orders)
    errors = {}
    for method in ("none", "rish"):
        h = load_harmonizer(stat_runs[method])
        y = h.target_coefficients(h.predict(fin)[target], target, ft.mask)
        errors[method] = np.abs(_energy_per_order(y, ft.mask, orders) / truth - 1)
    # RISH brings every order's energy closer to the target's than the unharmonized input
    assert np.all(errors["rish"] < errors["none"]), errors
    assert errors["rish"][:3].max() < 0.2, errors  # l = 0, 2, 4 (order 6 is mostly noise here)


def test_voxelwise_methods_beat_no_harmonization_and_round_trip(stat_runs, tiny_prepared, tmp_path):
    fin, ft = _held_out(tiny_prepared, "ge_st"), _held_out(tiny_prepared, "prisma_st")
    mse = {}
    for method in ("none", "meanvar_voxel", "rish"):
        h = load_harmonizer(stat_runs[method])
        y = h.predict(fin)["prisma_st"]
        mse[method] = float(((y - ft.data)[ft.mask] ** 2).mean())
        if method != "none":
            # saved and loaded again: the same predictions
            again = load_harmonizer(h.save(tmp_path / method))
            np.testing.assert_array_equal(again.predict(fin)["prisma_st"], y)
    assert mse["meanvar_voxel"] < mse["none"] and mse["rish"] < mse["none"], mse


def test_evaluate_takes_a_saved_none_run_as_the_reference_row(stat_runs):
    from mrharmony.dmri.evaluate import evaluate

    ev = evaluate([stat_runs["rish"], stat_runs["none"]], max_patches=100, volume_metrics=False, quiet=True)
    assert ev.methods == ["rish", "none"]
    assert ev.parameters["rish"] is None


def test_statistical_config_keys_apply_only_to_voxelwise_methods(tmp_path, tiny_prepared):
    from mrharmony.dmri.run_config import load_run_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump({"data": {"dataset": str(tiny_prepared)}, "model": {"method": "diqt", "smoothing_fwhm_mm": 4}})
    )
    with pytest.raises(InputError, match="smoothing_fwhm_mm"):
        load_run_config(cfg)


@pytest.mark.parametrize("r", [2, 3])
def test_separable_upsampling_is_scipy_linear_interpolation(r):
    from scipy import ndimage

    from mrharmony.registration import upsample_linear

    d = np.random.default_rng(r).normal(size=(7, 9, 5, 3)).astype(np.float32)
    grid = np.meshgrid(*[(np.arange(n * r, dtype=np.float32) + 0.5) / r - 0.5 for n in d.shape[:3]], indexing="ij")
    ref = np.stack([ndimage.map_coordinates(d[..., c], grid, order=1, mode="nearest") for c in range(3)], -1)
    np.testing.assert_allclose(upsample_linear(d, r), ref, atol=1e-5)


def test_dti_of_a_region_is_the_whole_volume_fit_there():
    from mrharmony.dmri.features.dti import dti_from_sh
    from mrharmony.dmri.features.sh import SHConfig

    rng = np.random.default_rng(0)
    cfg = SHConfig()
    coeffs = np.zeros((6, 5, 4, 28), np.float32)
    coeffs[..., 0] = 1.0
    coeffs[..., 1:6] = rng.normal(scale=0.15, size=(6, 5, 4, 5))
    bvecs = rng.normal(size=(31, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvals = np.r_[0.0, np.full(30, 1000.0)]
    whole = np.ones((6, 5, 4), bool)
    region = rng.random((6, 5, 4)) > 0.6
    a = dti_from_sh(coeffs, bvals, bvecs, cfg, whole)
    b = dti_from_sh(coeffs, bvals, bvecs, cfg, region)
    for x, y in zip(a, b):
        np.testing.assert_allclose(y[region], x[region], rtol=1e-5, atol=1e-7)
        assert not y[~region].any()


def test_resampling_keeps_the_edge_slices_of_a_slab_shifted_by_a_fraction_of_a_voxel():
    slab = np.ones((6, 6, 4), np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for shift_vox, last in ((0.3, 1.0), (-0.45, 1.0), (0.7, 0.0)):
        m = np.eye(4)
        m[2, 3] = 2.0 * shift_vox  # output voxel z takes the slab's value at z + shift
        out = resample(slab, affine, slab.shape, affine, m)
        inner_z = slice(1, -1)
        np.testing.assert_allclose(out[:, :, inner_z], 1.0)  # away from the edge: the slab's value
        edge = out[:, :, -1] if shift_vox > 0 else out[:, :, 0]
        # within half a voxel of the outer voxel centre the edge holds; further out nothing
        np.testing.assert_allclose(edge, last)


@pytest.fixture(scope="module")
def rish_syn_run(tmp_path_factory, tiny_prepared):
    """RISH with its common space a SyN template of the training subjects, trained through the
    command line."""
    from mrharmony.cli import main

    base = tmp_path_factory.mktemp("syn")
    cfg = {
        "data": {"dataset": str(tiny_prepared), "split": "subject", "test_subjects": ["sub-03"]},
        "model": {"method": "rish", "registration": "syn", "syn_level_iters": [10, 5], "template_rounds": 2},
    }
    (base / "rish_syn.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["dmri", "train", str(base / "rish_syn.yaml"), "--out", str(base / "run"), "--quiet"]) == 0
    return base / "run"


def test_rish_syn_learns_in_a_template_and_applies_to_a_held_out_scan(rish_syn_run, stat_runs, tiny_prepared):
    from mrharmony.data import load_dataset

    h = load_harmonizer(rish_syn_run)
    assert h.settings["registration"] == "syn" and h.space.registration == "syn"
    assert h.space.level_iters == (10, 5) and h.settings["template_rounds"] == 2
    # the common space is the template of both training subjects, not the first one's own map
    ds = load_dataset(tiny_prepared, check_data=False)
    first = load_features(ds, "sub-01", "ge_st", normalized=False)
    assert h.space.image.shape == first.mask.shape
    assert not np.allclose(h.space.image, first.data[..., 0] * first.mask, atol=1e-3)
    fin = _held_out(tiny_prepared, "ge_st")
    orders = sh_orders(fin.sh.sh_order_max)
    out = h.predict(fin)
    none = load_harmonizer(stat_runs["none"]).predict(fin)
    for target in ("prisma_st", "connectom_sa"):
        ft = _held_out(tiny_prepared, target)
        assert out[target].shape == ft.data.shape and np.isfinite(out[target]).all()
        truth = _energy_per_order(ft.stats.invert(ft.data, ft.mask), ft.mask, orders)
        errors = {}
        for name, pred in (("none", none), ("syn", out)):
            y = h.target_coefficients(pred[target], target, ft.mask)
            errors[name] = np.abs(_energy_per_order(y, ft.mask, orders) / truth - 1)
        assert np.all(errors["syn"] < errors["none"]), errors
    ft = _held_out(tiny_prepared, "prisma_st")
    mse = {k: float(((v["prisma_st"] - ft.data)[ft.mask] ** 2).mean()) for k, v in (("none", none), ("syn", out))}
    assert mse["syn"] < mse["none"], mse


def test_a_saved_rish_syn_model_applies_alone_with_the_same_predictions(
    rish_syn_run, tiny_prepared, tmp_path, monkeypatch
):
    import shutil

    import mrharmony.registration as registration
    from mrharmony.dmri import statistical

    fin = _held_out(tiny_prepared, "ge_st")
    h = load_harmonizer(rish_syn_run)
    first = h.predict(fin)
    # the saved model alone (moved away from its run and its data), with no registration kept
    # from before: it registers the scan to its stored template again, to the same result
    moved = tmp_path / "model"
    shutil.copytree(rish_syn_run, moved)
    monkeypatch.setattr(statistical, "_REGISTRATIONS", {})
    calls = []
    syn = registration.register_syn
    monkeypatch.setattr(registration, "register_syn", lambda *a, **k: calls.append(1) or syn(*a, **k))
    again = load_harmonizer(moved)
    np.testing.assert_array_equal(again.space.image, h.space.image)
    np.testing.assert_array_equal(again.space.mask, h.space.mask)
    np.testing.assert_array_equal(again.space.affine, h.space.affine)
    for t, y in again.predict(fin).items():
        np.testing.assert_array_equal(y, first[t])
    # a scan is registered once: the second prediction reuses the registration
    again.predict(fin)
    assert len(calls) == 1


def test_syn_settings_are_checked(tmp_path, tiny_prepared):
    from mrharmony.dmri.run_config import load_run_config

    cfg = tmp_path / "c.yaml"
    for model, key in (
        ({"method": "rish", "registration": "syn", "syn_level_iters": [10, 0]}, "syn_level_iters"),
        ({"method": "rish", "registration": "syn", "template_rounds": 0}, "template_rounds"),
        ({"method": "meanvar_global", "template_rounds": 2}, "template_rounds"),
    ):
        cfg.write_text(yaml.safe_dump({"data": {"dataset": str(tiny_prepared)}, "model": model}))
        with pytest.raises(InputError, match=key):
            load_run_config(cfg)
    cfg.write_text(
        yaml.safe_dump(
            {"data": {"dataset": str(tiny_prepared)}, "model": {"method": "meanvar_voxel", "registration": "syn"}}
        )
    )
    assert load_run_config(cfg).model.settings()["syn_level_iters"] == [10, 5]
