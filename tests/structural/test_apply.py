"""Applying a saved structural model to NIfTI files: the method comes from the model file."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from mrharmony.engine.checkpoint import save_model
from mrharmony.errors import InputError
from mrharmony.structural.apply import AUTOMATIC_MASK, apply_image_model
from mrharmony.structural.hail import HAIL, harmonize
from mrharmony.structural.ihf import IHF, harmonize_flow, restore_flow

META = {"training_sites": ["a", "b"], "mrharmony_version": "0.0.test"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("apply")
    torch.manual_seed(0)
    save_model(d / "hail" / "model.pt", HAIL((4, 8, 16), skips=True),
               {**META, "model": {"method": "hail", "widths": [4, 8, 16], "skips": True}})
    net = IHF(dims=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    save_model(d / "ihf.pt", net, {**META, "model": {"method": "ihf", "dims": 2, "levels": 2, "blocks": 3,
                                                     "hidden": 32, "style_dim": 32}})
    rng = np.random.default_rng(0)
    brain = np.zeros((16, 16, 12), np.float32)
    brain[3:13, 3:13, 2:10] = 1
    for name, scale in (("input", 100.0), ("target", 900.0)):
        img = brain * scale * (1 + 0.3 * rng.random(brain.shape, np.float32))
        nib.save(nib.Nifti1Image(img, np.diag([2.0, 2.0, 2.0, 1.0])), d / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), np.eye(4)), d / "mask.nii.gz")
    return d


def _read(path):
    return np.asarray(nib.load(path).dataobj)


def test_the_method_is_read_from_the_model_file(files, tmp_path):
    x, t, m = _read(files / "input.nii.gz"), _read(files / "target.nii.gz"), _read(files / "mask.nii.gz") > 0
    out = apply_image_model(files / "hail", input_path=files / "input.nii.gz", target_path=files / "target.nii.gz",
                            out=tmp_path / "hail.nii.gz", mask_path=files / "mask.nii.gz")
    net = HAIL((4, 8, 16), skips=True)
    net.load_state_dict(torch.load(files / "hail" / "model.pt", weights_only=False)["state_dict"])
    np.testing.assert_array_equal(_read(out), harmonize(net, x, m, t, m))  # target mask: automatic, here the same
    side = json.loads((tmp_path / "hail.json").read_text())
    assert "HAIL" in side["Description"] and side["Model"] == str((files / "hail" / "model.pt").resolve())
    assert side["ModelTrainingSites"] == ["a", "b"] and side["GeneratedBy"][0]["Version"] == "0.0.test"
    assert side["TargetBrainMask"] == AUTOMATIC_MASK and "InputScale" not in side

    out = apply_image_model(files / "ihf.pt", input_path=files / "input.nii.gz", target_path=files / "target.nii.gz",
                            out=tmp_path / "ihf.nii.gz")
    side = json.loads((tmp_path / "ihf.json").read_text())
    assert "IHF-Harmony" in side["Description"] and side["BrainMask"] == AUTOMATIC_MASK
    net = IHF(dims=2)
    net.load_state_dict(torch.load(files / "ihf.pt", weights_only=False)["state_dict"])
    pred, scale = harmonize_flow(net, x, m, t, m)
    np.testing.assert_array_equal(_read(out), pred)
    assert side["InputScale"] == scale
    back = restore_flow(net, _read(out), t, m, side["InputScale"])  # the file and its sidecar restore the input
    np.testing.assert_array_equal(back, restore_flow(net, pred, t, m, scale))
    assert np.linalg.norm(back - x) / np.linalg.norm(x) < 1e-2  # (float32 rounding on a tiny random flow)


def test_a_given_method_must_be_the_model_s(files, tmp_path):
    kw = dict(input_path=files / "input.nii.gz", target_path=files / "target.nii.gz")
    with pytest.raises(InputError, match=r"ihf\.pt: is a ihf model, not a HAIL model") as err:
        apply_image_model(files / "ihf.pt", method="hail", out=tmp_path / "o.nii.gz", **kw)
    assert str(err.value).count(".") >= 1 and "\n" not in str(err.value)
    with pytest.raises(InputError, match="is a hail model, not an IHF-Harmony model"):
        apply_image_model(files / "hail", method="ihf", out=tmp_path / "o.nii.gz", **kw)
    assert apply_image_model(files / "hail", method="hail", out=tmp_path / "o.nii.gz", **kw).is_file()
    # an existing output is refused before the model is read
    with pytest.raises(InputError, match="already exists"):
        apply_image_model(tmp_path / "no-model", out=tmp_path / "o.nii.gz", **kw)
    with pytest.raises(InputError, match="model.pt: is missing"):
        apply_image_model(tmp_path, out=tmp_path / "p.nii.gz", **kw)
    assert not (tmp_path / "p.nii.gz").exists()
