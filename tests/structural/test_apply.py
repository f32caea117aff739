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
from mrharmony.structural.ihf.inference import harmonize_flow, restore_flow
from mrharmony.structural.ihf.squeeze_flow import SqueezeIHF

META = {"training_sites": ["a", "b"], "mrharmony_version": "0.0.test"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("apply")
    torch.manual_seed(0)
    save_model(
        d / "hail" / "model.pt",
        HAIL((4, 8, 16), skips=True),
        {**META, "model": {"method": "hail", "widths": [4, 8, 16], "skips": True}},
    )
    net = SqueezeIHF(dims=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    save_model(
        d / "ihf.pt",
        net,
        {
            **META,
            "model": {
                "method": "ihf",
                "flow": "squeeze",
                "dims": 2,
                "levels": 2,
                "blocks": 3,
                "hidden": 32,
                "style_dim": 32,
            },
        },
    )
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


def _sidecar(image) -> dict:
    return json.loads(image.with_name(image.name.removesuffix(".nii.gz") + ".json").read_text())


def test_the_method_is_read_from_the_model_file(files, tmp_path):
    x, t, m = _read(files / "input.nii.gz"), _read(files / "target.nii.gz"), _read(files / "mask.nii.gz") > 0
    out = apply_image_model(
        files / "hail",
        input_path=files / "input.nii.gz",
        target_path=files / "target.nii.gz",
        out=tmp_path / "hail",
        mask_path=files / "mask.nii.gz",
    )
    net = HAIL((4, 8, 16), skips=True)
    net.load_state_dict(torch.load(files / "hail" / "model.pt", weights_only=True)["state_dict"])
    np.testing.assert_array_equal(_read(out), harmonize(net, x, m, t, m))  # target mask: automatic, here the same
    assert out == tmp_path / "hail" / "input_desc-harmonized.nii.gz"
    assert json.loads((tmp_path / "hail" / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    side = _sidecar(out)
    assert "HAIL" in side["Description"] and side["Model"] == str((files / "hail" / "model.pt").resolve())
    assert side["ModelTrainingSites"] == ["a", "b"] and side["GeneratedBy"][0]["Version"] == "0.0.test"
    assert side["TargetBrainMask"] == AUTOMATIC_MASK and "InputScale" not in side

    out = apply_image_model(
        files / "ihf.pt", input_path=files / "input.nii.gz", target_path=files / "target.nii.gz", out=tmp_path / "ihf"
    )
    side = _sidecar(out)
    assert "IHF-Harmony" in side["Description"] and side["BrainMask"] == AUTOMATIC_MASK
    net = SqueezeIHF(dims=2)
    net.load_state_dict(torch.load(files / "ihf.pt", weights_only=True)["state_dict"])
    pred, record = harmonize_flow(net, x, m, t, m)
    np.testing.assert_array_equal(_read(out), pred)
    assert side["InputScale"] == record["InputScale"] and side["StyleCode"] == record["StyleCode"]
    back = restore_flow(net, _read(out), side)  # the file and its sidecar restore the input, no target needed
    np.testing.assert_array_equal(back, restore_flow(net, pred, record))
    assert np.linalg.norm(back - x) / np.linalg.norm(x) < 1e-2  # (float32 rounding on a tiny random flow)


def test_a_given_method_must_be_the_model_s(files, tmp_path):
    kw = {"input_path": files / "input.nii.gz", "target_path": files / "target.nii.gz"}
    with pytest.raises(InputError, match=r"ihf\.pt: is a ihf model, not a HAIL model") as err:
        apply_image_model(files / "ihf.pt", method="hail", out=tmp_path / "o", **kw)
    assert str(err.value).count(".") >= 1 and "\n" not in str(err.value)
    with pytest.raises(InputError, match="is a hail model, not an IHF-Harmony model"):
        apply_image_model(files / "hail", method="ihf", out=tmp_path / "o", **kw)
    assert apply_image_model(files / "hail", method="hail", out=tmp_path / "o", **kw).is_file()
    # an existing output folder is refused before the model is read
    with pytest.raises(InputError, match="already exists"):
        apply_image_model(tmp_path / "no-model", out=tmp_path / "o", **kw)
    with pytest.raises(InputError, match="model.pt: is missing"):
        apply_image_model(tmp_path / "o", out=tmp_path / "p", **kw)
    assert not (tmp_path / "p").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_modalities_named_by_bids_suffixes_must_agree(files, tmp_path):
    import shutil

    from mrharmony.cli import main

    shutil.copy(files / "input.nii.gz", tmp_path / "sub-03_T2w.nii.gz")
    shutil.copy(files / "target.nii.gz", tmp_path / "sub-01_T1w.nii.gz")
    args = [
        "structural",
        "apply",
        str(files / "hail"),
        "--input",
        str(tmp_path / "sub-03_T2w.nii.gz"),
        "--target-image",
        str(tmp_path / "sub-01_T1w.nii.gz"),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    with pytest.raises(
        InputError,
        match=r"sub-03_T2w.nii.gz: is a T2w image but the target image sub-01_T1w.nii.gz "
        r"is T1w; pass --allow-modality-mismatch",
    ):
        apply_image_model(
            files / "hail",
            input_path=tmp_path / "sub-03_T2w.nii.gz",
            target_path=tmp_path / "sub-01_T1w.nii.gz",
            out=tmp_path / "out",
        )
    assert main(args) == 2 and not (tmp_path / "out").exists()
    assert main(args + ["--allow-modality-mismatch"]) == 0
    side = _sidecar(tmp_path / "out" / "sub-03_desc-harmonized_T2w.nii.gz")
    assert side["ModalityMismatch"] == "T2w input, T1w target"


def test_images_of_another_voxel_size_are_harmonized_on_the_model_s_grid(files, tmp_path):
    """A model trained on 1 mm images gets the 2 mm input resampled to 1 mm and its prediction
    back on the input's grid (recorded in the sidecar); the invertible IHF-Harmony refuses."""
    torch.manual_seed(0)
    save_model(
        tmp_path / "hail1mm.pt",
        HAIL((4, 8, 16), skips=True),
        {**META, "voxel_size": [1.0, 1.0, 1.0], "model": {"method": "hail", "widths": [4, 8, 16], "skips": True}},
    )
    out = apply_image_model(
        tmp_path / "hail1mm.pt",
        input_path=files / "input.nii.gz",
        target_path=files / "target.nii.gz",
        out=tmp_path / "h",
    )
    img = nib.load(out)
    assert img.shape == nib.load(files / "input.nii.gz").shape
    np.testing.assert_allclose(img.affine, nib.load(files / "input.nii.gz").affine)
    side = _sidecar(out)
    assert side["InputResampled"]["VoxelSize"] == [2.0, 2.0, 2.0]
    assert side["InputResampled"]["ModelVoxelSize"] == [1.0, 1.0, 1.0]
    assert side["TargetResampled"]["Method"] == "linear interpolation to the model's voxel size"
    assert np.isfinite(np.asarray(img.dataobj)).all() and np.asarray(img.dataobj).std() > 0
    # on the model's own grid nothing is resampled (the same weights, recorded with the input's voxel size)
    torch.manual_seed(0)
    save_model(
        tmp_path / "hail2mm.pt",
        HAIL((4, 8, 16), skips=True),
        {**META, "voxel_size": [2.0, 2.0, 2.0], "model": {"method": "hail", "widths": [4, 8, 16], "skips": True}},
    )
    same = apply_image_model(
        tmp_path / "hail2mm.pt",
        input_path=files / "input.nii.gz",
        target_path=files / "target.nii.gz",
        out=tmp_path / "same",
    )
    assert "InputResampled" not in _sidecar(same)
    # the way to the model's grid and back lands on the input's own voxels (not shifted, flipped or
    # scaled): a voxelwise method gives nearly what it gives without resampling, voxel noise and all
    from mrharmony.structural.intensity import ZScoreHarmonizer

    class ZScoreAt1mm(ZScoreHarmonizer):
        training_voxel_size = np.ones(3)

    brain = _read(files / "mask.nii.gz") > 0
    x, y, _ = np.indices(brain.shape)
    ramp = (brain * (100.0 + 20 * x + 7 * y)).astype(np.float32)  # smooth, asymmetric: a flip or shift shows
    nib.save(nib.Nifti1Image(ramp, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "ramp.nii.gz")
    kw = {
        "input_path": tmp_path / "ramp.nii.gz",
        "target_path": files / "target.nii.gz",
        "mask_path": files / "mask.nii.gz",
        "target_mask_path": files / "mask.nii.gz",
    }
    ZScoreHarmonizer().harmonize_file(out=tmp_path / "z.nii.gz", **kw)
    ZScoreAt1mm().harmonize_file(out=tmp_path / "z1.nii.gz", **kw)
    assert "InputResampled" in json.loads((tmp_path / "z1.json").read_text())
    direct, via = _read(tmp_path / "z.nii.gz"), _read(tmp_path / "z1.nii.gz")
    inner = np.zeros_like(brain)
    inner[4:12, 4:12, 3:9] = True  # away from the mask's edge, where resampling the mask moves it by a voxel
    assert np.corrcoef(direct[inner], via[inner])[0, 1] > 0.99
    np.testing.assert_allclose(via[inner], direct[inner], rtol=0.05)
    net = SqueezeIHF(dims=2)
    save_model(
        tmp_path / "ihf1mm.pt",
        net,
        {
            **META,
            "voxel_size": [1.0, 1.0, 1.0],
            "model": {
                "method": "ihf",
                "flow": "squeeze",
                "dims": 2,
                "levels": 2,
                "blocks": 3,
                "hidden": 32,
                "style_dim": 32,
            },
        },
    )
    with pytest.raises(
        InputError,
        match=r"input.nii.gz: has 2 x 2 x 2 mm voxels, but the model learned from "
        r"1 x 1 x 1 mm images; IHF-Harmony \(squeeze variant\)'s exact inverse needs the model's grid",
    ):
        apply_image_model(
            tmp_path / "ihf1mm.pt",
            input_path=files / "input.nii.gz",
            target_path=files / "target.nii.gz",
            out=tmp_path / "i",
        )
    assert not (tmp_path / "i").exists()


def test_a_baseline_by_name_on_the_command_line(files, tmp_path):
    from mrharmony.cli import main
    from mrharmony.structural.intensity import ZScoreHarmonizer

    args = ["structural", "apply", "zscore", "--input", str(files / "input.nii.gz")]
    args += ["--target-image", str(files / "target.nii.gz"), "--mask", str(files / "mask.nii.gz")]
    assert main([*args, "--out", str(tmp_path / "z"), "--quiet"]) == 0
    out = tmp_path / "z" / "input_desc-harmonized.nii.gz"
    x, t, m = _read(files / "input.nii.gz"), _read(files / "target.nii.gz"), _read(files / "mask.nii.gz") > 0
    np.testing.assert_array_equal(_read(out), ZScoreHarmonizer().transform(x, target=t, mask=m, target_mask=m).image)
    assert "z-score" in _sidecar(out)["Description"]
