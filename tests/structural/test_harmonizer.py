"""The ImageHarmonizer contract, checked against every subclass: shapes and dtype, the identity
case, masks, inputs left alone, files and sidecars, and the same numbers as the methods' own
maths (the functions the classes wrap, or the baselines' formulas written out here)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from mrharmony.data.masks import brain_mask
from mrharmony.engine.checkpoint import save_model
from mrharmony.errors import InputError
from mrharmony.structural import hail as hail_mod
from mrharmony.structural import intensity, registry
from mrharmony.structural.harmonizer import (
    AUTOMATIC_MASK,
    HarmonizedImage,
    ImageHarmonizer,
    TrainedImageHarmonizer,
)
from mrharmony.structural.ihf import IHFHarmonizer
from mrharmony.structural.ihf.inference import harmonize_flow, restore_flow
from mrharmony.structural.ihf.squeeze_flow import SqueezeIHF
from mrharmony.structural.loading import load_image_harmonizer

HAIL_META = {
    "model": {"method": "hail", "widths": [4, 8, 16], "skips": True},
    "training_sites": ["siteA", "siteB"],
    "mrharmony_version": "0.0.test",
    "data": {"modalities": ["T1w"]},
}
IHF_META = {
    "model": {"method": "ihf", "flow": "squeeze", "dims": 2, "levels": 2, "blocks": 3, "hidden": 32, "style_dim": 32},
    "training_sites": ["siteA", "siteB"],
    "mrharmony_version": "0.0.test",
    "data": {"modalities": ["T1w", "T2w", "FLAIR"]},
}


def _hail_net():
    torch.manual_seed(0)
    return hail_mod.HAIL((4, 8, 16), skips=True).eval()


def _ihf_net(scale=0.02):
    torch.manual_seed(1)
    net = SqueezeIHF(dims=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net.eval()


def _standardized_today(normalizer, image, mask, target, target_mask):
    from intensity_normalization.adapters.images import NumpyImageAdapter as A

    img, msk, tgt, tmsk = (A(np.asarray(a, np.float64)) for a in (image, mask, target, target_mask))
    src, ref = normalizer().fit(img, msk), normalizer().fit(tgt, tmsk)
    return (src.transform(img, msk).get_data() * ref.std + ref.mean).astype(np.float32)


_N4: dict = {}


def _n4(image, mask):
    """N4 of an image, computed once per image and mask for the reference formulas."""
    from mrharmony.structural.bias import n4_correct

    key = (np.ascontiguousarray(image, np.float32).tobytes(), np.packbits(mask).tobytes())  # N4 works in float32
    if key not in _N4:
        _N4[key] = n4_correct(image, mask)
    return _N4[key]


def _today(method):
    """The maths each class must reproduce: today's functions, and the baselines' formulas."""
    from intensity_normalization.adapters.images import NumpyImageAdapter as A
    from intensity_normalization.normalizers.individual.whitestripe import (
        WhiteStripeNormalizer,
    )
    from intensity_normalization.normalizers.individual.zscore import ZScoreNormalizer
    from intensity_normalization.normalizers.population.nyul import NyulNormalizer

    def nyul(image, mask, target, target_mask):
        lo, hi = np.percentile(np.asarray(target, np.float64)[target_mask], [1, 99])
        n = NyulNormalizer(output_min_value=float(lo), output_max_value=float(hi))
        n.fit_population([A(np.asarray(target, np.float64))], [A(np.asarray(target_mask, np.float64))])
        return (
            n.transform(A(np.asarray(image, np.float64)), A(np.asarray(mask, np.float64))).get_data().astype(np.float32)
        )

    def n4(then):
        return lambda image, mask, target, target_mask: then(
            _n4(image, mask), mask, _n4(target, target_mask), target_mask
        )

    return {
        "none": lambda image, *_: np.asarray(image, np.float32),
        "zscore": lambda *a: _standardized_today(ZScoreNormalizer, *a),
        "whitestripe": lambda *a: _standardized_today(WhiteStripeNormalizer, *a),
        "nyul": nyul,
        "n4_zscore": n4(lambda *a: _standardized_today(ZScoreNormalizer, *a)),
        "n4_whitestripe": n4(lambda *a: _standardized_today(WhiteStripeNormalizer, *a)),
        "n4_nyul": n4(nyul),
        "hail": lambda *a: hail_mod.harmonize(_hail_net(), *a),
        "ihf": lambda *a: harmonize_flow(_ihf_net(), *a)[0],
    }[method]


FACTORIES = {
    "none": intensity.NoHarmonization,
    "zscore": intensity.ZScoreHarmonizer,
    "whitestripe": intensity.WhiteStripeHarmonizer,
    "nyul": intensity.NyulHarmonizer,
    "n4_zscore": intensity.N4ZScoreHarmonizer,
    "n4_whitestripe": intensity.N4WhiteStripeHarmonizer,
    "n4_nyul": intensity.N4NyulHarmonizer,
    "hail": lambda: hail_mod.HAILHarmonizer(_hail_net(), meta=HAIL_META),
    "ihf": lambda: IHFHarmonizer(_ihf_net(), meta=IHF_META),
}
# harmonizing an image to itself gives it back (to float rounding), for the methods that promise it;
# an untrained HAIL does not (a trained one is checked in test_training.py)
IDENTITY = {"none": 0.0, "zscore": 1e-6, "whitestripe": 1e-6, "nyul": 1e-6, "ihf-initial": 1e-6}


def _concrete_subclasses(cls):
    out = set()
    for sub in cls.__subclasses__():
        if not getattr(sub, "__abstractmethods__", None):
            out.add(sub)
        out |= _concrete_subclasses(sub)
    return out


def test_every_subclass_is_checked_here():
    methods = {c.method for c in _concrete_subclasses(ImageHarmonizer) if c.__module__.startswith("mrharmony.")}
    assert methods == set(FACTORIES)
    assert set(registry.INTENSITY_METHODS) <= methods


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Input (sub-01 on siteB), its mask, target (sub-02 on siteA), its mask: float32 as read."""
    from mrharmony.data.structural import read_structural_image
    from mrharmony.simulate.structural import simulate_structural

    root = simulate_structural(
        tmp_path_factory.mktemp("contract") / "st", preset="tiny", seed=2, n_subjects=2, rescans=False, quiet=True
    )
    read = lambda *p: read_structural_image(root.joinpath(*p))[0]  # noqa: E731
    return (
        read("sub-01", "siteB", "T1w.nii.gz"),
        read("sub-01", "mask.nii.gz") > 0,
        read("sub-02", "siteA", "T1w.nii.gz"),
        read("sub-02", "mask.nii.gz") > 0,
        root,
    )


@pytest.mark.parametrize("method", list(FACTORIES))
def test_the_contract(method, images):
    x, m, t, tm, _ = images
    h = FACTORIES[method]()
    # a HAIL with the U-Net decoder is the variant hail_unet (HAIL_META), in its name and title
    assert isinstance(h, ImageHarmonizer) and h.method == method
    assert h.name == {"hail": "hail_unet", "ihf": "ihf_squeeze"}.get(method, method)
    assert method != "hail" or h.title == "HAIL (U-Net variant)"
    copies = [a.copy() for a in (x, m, t, tm)]
    res = h.transform(x, target=t, mask=m, target_mask=tm)
    assert isinstance(res, HarmonizedImage)
    assert res.image.shape == x.shape and res.image.dtype == np.float32 and np.all(np.isfinite(res.image))
    for a, b in zip((x, m, t, tm), copies):
        np.testing.assert_array_equal(a, b)  # the inputs are left as they were
    # the same numbers as the method's own maths, bit for bit
    np.testing.assert_array_equal(res.image, _today(method)(x, m, t, tm))
    # float64 images (nibabel's get_fdata) give today's numbers too
    np.testing.assert_array_equal(
        h.transform(x.astype(np.float64), target=t.astype(np.float64), mask=m, target_mask=tm).image,
        _today(method)(x.astype(np.float64), m, t.astype(np.float64), tm),
    )
    # the target may lie on another grid
    assert h.transform(x, target=t[2:-2, 1:, :-1], mask=m, target_mask=tm[2:-2, 1:, :-1]).image.shape == x.shape


@pytest.mark.parametrize("method", list(FACTORIES))
def test_masks_are_the_given_ones_or_the_automatic_ones(method, images):
    from scipy import ndimage

    x, m, t, tm, _ = images
    h = FACTORIES[method]()
    auto = h.transform(x, target=t).image
    np.testing.assert_array_equal(auto, h.transform(x, target=t, mask=brain_mask(x), target_mask=brain_mask(t)).image)
    small, tsmall = ndimage.binary_erosion(m, iterations=2), ndimage.binary_erosion(tm, iterations=2)
    given = h.transform(x, target=t, mask=small, target_mask=tsmall).image
    np.testing.assert_array_equal(given, _today(method)(x, small, t, tsmall))
    if method != "none":
        assert not np.array_equal(given, auto)  # the mask is what the statistics are taken in
    with pytest.raises(ValueError, match="brain mask of the image has shape"):
        h.transform(x, target=t, mask=m[:-1])
    with pytest.raises(ValueError, match="brain mask of the target is empty"):
        h.transform(x, target=t, target_mask=np.zeros_like(tm))
    with pytest.raises(ValueError, match="real 3D array"):
        h.transform(x[..., None], target=t)
    bad = t.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        h.transform(x, target=bad)


@pytest.mark.parametrize("method", sorted(IDENTITY))
def test_identity_case(method, images):
    x, m, *_ = images
    h = IHFHarmonizer(SqueezeIHF(dims=2)) if method == "ihf-initial" else FACTORIES[method]()
    out = h.transform(x, target=x, mask=m, target_mask=m).image
    np.testing.assert_allclose(out, x, rtol=0, atol=IDENTITY[method] * float(x.max()))
    if method == "none":  # whatever the target
        np.testing.assert_array_equal(h.transform(x, target=x * 3 + 1).image, x)


def test_restore_inverts_the_invertible_and_only_them(images):
    x, m, t, tm, _ = images
    for method, h in ((k, f()) for k, f in FACTORIES.items()):
        res = h.transform(x, target=t, mask=m, target_mask=tm)
        if h.invertible:
            assert method == "ihf" and set(res.sidecar) == {"InputScale", "TargetScale", "StyleCode"}
            back = h.restore(res)  # what the inverse needs is in the result
            np.testing.assert_array_equal(back, restore_flow(h.net, res.image, {**res.sidecar, **res.arrays}))
            assert np.linalg.norm(back - x) / np.linalg.norm(x) < 1e-5
            # a result written before the record held the style code is restored with the target image
            old = HarmonizedImage(res.image, {"InputScale": res.sidecar["InputScale"]}, res.arrays)
            np.testing.assert_allclose(
                h.restore(old, target=t, target_mask=tm), back, rtol=0, atol=1e-5 * np.abs(x).max()
            )
            with pytest.raises(ValueError, match="needs the target image"):
                h.restore(old)
            with pytest.raises(ValueError, match="InputScale"):
                h.restore(HarmonizedImage(res.image), target=t, target_mask=tm)
        else:
            assert res.sidecar == {}
            with pytest.raises(TypeError, match="not invertible"):
                h.restore(res, target=t, target_mask=tm)


def test_modalities_come_from_the_training_data():
    assert FACTORIES["hail"]().applies_to("T1w") and not FACTORIES["hail"]().applies_to("T2w")
    assert FACTORIES["ihf"]().applies_to("FLAIR")
    assert all(registry.intensity_harmonizer(m).applies_to("T2w") for m in registry.INTENSITY_METHODS)
    assert registry.intensity_harmonizer("nyul", name="hm").name == "hm"
    with pytest.raises(
        InputError,
        match="unknown intensity method of the structural wing 'gan'; choose one of none, zscore, whitestripe, nyul",
    ):
        registry.intensity_harmonizer("gan")


def test_harmonize_file_writes_float32_and_its_sidecar(images, tmp_path):
    x, m, t, tm, root = images
    h = intensity.NyulHarmonizer()
    inp, tgt = root / "sub-01" / "siteB" / "T1w.nii.gz", root / "sub-02" / "siteA" / "T1w.nii.gz"
    out = h.harmonize_file(
        input_path=inp, target_path=tgt, out=tmp_path / "o.nii.gz", mask_path=root / "sub-01" / "mask.nii.gz"
    )
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.affine, nib.load(inp).affine)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), h.transform(x, target=t, mask=m).image)
    side = json.loads((tmp_path / "o.json").read_text())
    assert side["BrainMask"].endswith("mask.nii.gz") and side["TargetBrainMask"] == AUTOMATIC_MASK
    assert side["Sources"] == [str(inp), str(tgt)] and "Nyul" in side["Description"]
    with pytest.raises(InputError, match="already exists"):
        h.harmonize_file(input_path=inp, target_path=tgt, out=tmp_path / "o.nii.gz")
    with pytest.raises(InputError, match="must be a NIfTI file name"):
        h.harmonize_file(input_path=inp, target_path=tgt, out=tmp_path / "o.png")


@pytest.mark.parametrize("method", ["hail", "ihf"])
def test_saved_models_open_as_their_class(method, tmp_path):
    h = FACTORIES[method]()
    save_model(tmp_path / "run" / "model.pt", h.net, h.meta)
    for path in (tmp_path / "run", tmp_path / "run" / "model.pt"):
        loaded = load_image_harmonizer(path)
        assert type(loaded) is type(h) and loaded.model_file == tmp_path / "run" / "model.pt"
        assert loaded.meta == h.meta and loaded.training_sites == ["siteA", "siteB"]
        for a, b in zip(loaded.net.state_dict().values(), h.net.state_dict().values()):
            assert torch.equal(a, b)
    assert type(type(h).load(tmp_path / "run")) is type(h)
    other = "ihf" if method == "hail" else "hail"
    with pytest.raises(InputError, match=f"is a {method} model, not"):
        load_image_harmonizer(tmp_path / "run", method=other)
    save_model(tmp_path / "dmri.pt", h.net, {"model": {"method": "diqt"}})
    with pytest.raises(InputError, match="dmri.pt: is a diqt model, not a HAIL or IHF-Harmony model"):
        load_image_harmonizer(tmp_path / "dmri.pt")
    with pytest.raises(InputError, match="is missing"):
        load_image_harmonizer(tmp_path / "nothing")


def test_train_delegates_to_the_training_engine(monkeypatch, tmp_path):
    """``train_harmonizer`` hands the config to train_structural with the class's method and reads the model back."""
    import mrharmony.structural.training as training

    calls = []

    def fake(config, out, **kwargs):
        calls.append((config, out, kwargs))
        if not kwargs.get("stop_after_epochs"):
            save_model(tmp_path / "run" / "model.pt", _hail_net(), HAIL_META)
        return tmp_path / "run"

    monkeypatch.setattr(training, "train_structural", fake)
    h = training.train_harmonizer(hail_mod.HAILHarmonizer, "hail.yaml", tmp_path / "run", force=True, quiet=True)
    assert isinstance(h, hail_mod.HAILHarmonizer) and h.model_file == tmp_path / "run" / "model.pt"
    assert calls[0] == ("hail.yaml", tmp_path / "run", {"method": "hail", "force": True, "quiet": True})
    (tmp_path / "run" / "model.pt").unlink()
    assert training.train_harmonizer(IHFHarmonizer, "ihf.yaml", tmp_path / "run", stop_after_epochs=1) is None
    assert calls[1][2] == {"method": "ihf", "stop_after_epochs": 1}
    assert issubclass(IHFHarmonizer, TrainedImageHarmonizer)


def test_n4_spaces_its_mesh_by_the_images_voxel_sizes(tmp_path, monkeypatch):
    """N4's B-spline mesh is set in millimetres: the N4 rows pass each image's voxel size (from the
    file's affine, or the evaluation's) to the correction, and correct an image once per voxel size."""
    import mrharmony.structural.bias as bias
    from mrharmony.io import save_nifti
    from mrharmony.structural.intensity import N4Corrected, N4ZScoreHarmonizer

    seen = []

    def recording(image, mask, *, voxel_mm=(1.0, 1.0, 1.0), **kw):
        seen.append(tuple(voxel_mm))
        return np.asarray(image, np.float32)

    monkeypatch.setattr(bias, "n4_correct", recording)
    N4Corrected._corrected.clear()
    rng = np.random.default_rng(0)
    image, target = rng.uniform(1, 2, (12, 12, 12)), rng.uniform(1, 2, (12, 12, 12))
    h = N4ZScoreHarmonizer()
    h.transform(image, target=target, voxel_mm=(2.0, 2.0, 2.0), target_voxel_mm=(1.0, 1.0, 1.2))
    assert seen == [(2.0, 2.0, 2.0), (1.0, 1.0, 1.2)]
    # from files: the affines' voxel sizes
    seen.clear()
    N4Corrected._corrected.clear()
    save_nifti(tmp_path / "in_T1w.nii.gz", image.astype(np.float32), np.diag([1.5, 1.5, 1.5, 1.0]))
    save_nifti(tmp_path / "tg_T1w.nii.gz", target.astype(np.float32), np.diag([0.9, 0.9, 0.9, 1.0]))
    h.harmonize_file(
        input_path=tmp_path / "in_T1w.nii.gz", target_path=tmp_path / "tg_T1w.nii.gz", out=tmp_path / "out_T1w.nii.gz"
    )
    np.testing.assert_allclose(seen, [(1.5, 1.5, 1.5), (0.9, 0.9, 0.9)], rtol=1e-6)
    assert h.voxel_sizes == (None, None)  # only for the call
