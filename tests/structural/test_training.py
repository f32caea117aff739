"""HAIL end to end on the tiny structural data: training, resume, apply, and the consistency property."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from mrharmony.cli import main
from mrharmony.data.structural import load_structural
from mrharmony.structural.config import load_structural_config, split_subjects
from mrharmony.structural.crops import CropSampler
from mrharmony.structural.hail import HAIL, HAILHarmonizer, harmonize
from mrharmony.structural.training import train_structural


@pytest.fixture(scope="module")
def structural(tmp_path_factory):
    from mrharmony.simulate.structural import simulate_structural

    return simulate_structural(tmp_path_factory.mktemp("st") / "tiny", preset="tiny", seed=5, rescans=False, quiet=True)


def _config(folder, dataset, **training):
    path = folder / "hail.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "preset": "test",
                "data": {"dataset": str(dataset), "n_test_subjects": 1, "crop_size": 16},
                "model": {"method": "hail", "widths": [4, 8, 16], "skips": True},  # the U-Net variant, hail_unet
                "training": {"threads": 1, **training},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def trained(structural, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hail")
    cfg = _config(folder, structural, pretrain_epochs=10, epochs=2, steps_per_epoch=12, batch_size=2)
    return train_structural(cfg, folder / "run", quiet=True)


def test_split_never_trains_on_test_or_unseen(structural, trained):
    split = json.loads((trained / "split.json").read_text())
    assert len(split["test"]) == 1 and len(split["validation"]) == 1
    assert not set(split["test"]) & set(split["train"] + split["validation"])
    meta = HAILHarmonizer.load(trained).meta
    ds = load_structural(structural)
    assert meta["training_sites"] == ds.train_sites and not set(ds.unseen_sites) & set(meta["training_sites"])
    for name in ("config.yaml", "log.txt", "metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt", "model.pt"):
        assert (trained / name).is_file(), name


def test_same_site_target_leaves_the_image_nearly_unchanged(structural, trained):
    """Input = target: AdaIN is the identity on features, so the prediction is the autoencoder's
    reconstruction, which training makes close to the input (and an untrained one is not)."""
    ds = load_structural(structural)
    subject = json.loads((trained / "split.json").read_text())["test"][0]
    img, _ = ds.load_image(subject, "siteA")
    mask = ds.load_mask(subject)
    net = HAILHarmonizer.load(trained).net
    with torch.no_grad():
        x = torch.from_numpy(img / np.percentile(img[mask], 99))[None, None]
        m = torch.from_numpy(mask.astype(np.float32))[None, None]
        torch.testing.assert_close(net(x, x, m, m), net.reconstruct(x), atol=1e-5, rtol=1e-5)

    def rel_error(model):
        pred = harmonize(model, img, mask, img, mask)
        return float(np.abs(pred[mask] - img[mask]).mean() / img[mask].mean())

    torch.manual_seed(0)
    untrained = rel_error(HAIL((4, 8, 16), skips=True))
    trained_err = rel_error(net)
    assert trained_err < 0.15 and trained_err < untrained / 3, (trained_err, untrained)


def test_resume_gives_the_uninterrupted_weights(structural, tmp_path):
    cfg = _config(tmp_path, structural)  # 1 autoencoder epoch + 1 transfer epoch
    whole = train_structural(cfg, tmp_path / "whole", quiet=True)
    part = train_structural(cfg, tmp_path / "part", quiet=True, stop_after_epochs=1)
    assert not (part / "model.pt").exists()
    train_structural(None, part, resume=True, quiet=True)
    a, b = torch.load(whole / "model.pt")["state_dict"], torch.load(part / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_apply_from_the_command_line(structural, trained, tmp_path, capsys):
    ds = load_structural(structural)
    subject = json.loads((trained / "split.json").read_text())["test"][0]
    ref = json.loads((trained / "split.json").read_text())["validation"][0]
    out = tmp_path / "out" / "T1w_desc-harmonized.nii.gz"
    args = [
        "structural",
        "apply",
        str(trained),
        "--input",
        str(ds.image_path(subject, "siteB")),
        "--target-image",
        str(ds.image_path(ref, "siteD")),
        "--out",
        str(out.parent),
        "--quiet",
    ]
    assert main(args + ["--mask", str(ds.mask_path(subject)), "--target-mask", str(ds.mask_path(ref))]) == 0
    img = nib.load(out)
    src = nib.load(ds.image_path(subject, "siteB"))
    assert img.get_data_dtype() == np.float32 and img.shape == src.shape
    np.testing.assert_allclose(img.affine, src.affine)
    data = img.get_fdata()
    mask = ds.load_mask(subject)
    target = nib.load(ds.image_path(ref, "siteD")).get_fdata()
    # the prediction is on the target's intensity scale, not the input's (siteB stores 2400, siteD 1500)
    assert abs(np.median(data[mask]) / np.median(target[ds.load_mask(ref)]) - 1) < 0.5
    side = json.loads(out.with_name("T1w_desc-harmonized.json").read_text())
    assert side["ModelTrainingSites"] == ds.train_sites and "BrainMask" in side
    # an existing output is kept without --force; the automatic mask works without --mask
    before = out.read_bytes()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(args + ["--force"]) == 0


def test_metrics_on_a_harmonized_image(structural, trained, tmp_path):
    ds = load_structural(structural)
    subject = json.loads((trained / "split.json").read_text())["test"][0]
    ref = json.loads((trained / "split.json").read_text())["validation"][0]
    out = tmp_path / "h" / "T1w_desc-harmonized.nii.gz"
    assert (
        main(
            [
                "structural",
                "apply",
                str(trained),
                "--input",
                str(ds.image_path(subject, "siteA")),
                "--target-image",
                str(ds.image_path(ref, "siteC")),
                "--out",
                str(out.parent),
                "--quiet",
                "--mask",
                str(ds.mask_path(subject)),
                "--target-mask",
                str(ds.mask_path(ref)),
            ]
        )
        == 0
    )
    res = tmp_path / "m.json"
    assert (
        main(
            [
                "structural",
                "metrics",
                "--input",
                str(ds.image_path(subject, "siteA")),
                "--prediction",
                str(out),
                "--target",
                str(ds.image_path(ref, "siteC")),
                "--mask",
                str(ds.mask_path(subject)),
                "--target-mask",
                str(ds.mask_path(ref)),
                "--truth",
                str(ds.image_path(subject, "siteC")),
                "--json",
                str(res),
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads(res.read_text())
    assert m["nwd_ip"] > 0.5 and m["nwd_tp"] < 0.5  # moved towards the target's intensities


def test_crops_keep_their_place_and_are_padded():
    vol = np.arange(6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5)
    mask = np.zeros(vol.shape, bool)
    mask[1:5, 2:6, 1:4] = True
    images = {
        "a": {"T1w": {"x": vol, "y": vol + 1}, "T2w": {"x": -vol, "y": -vol - 1}},
        "b": {"T1w": {"x": vol * 2, "y": vol * 3}, "T2w": {"x": -vol * 2, "y": -vol * 3}},
    }
    s = CropSampler(images, {"a": mask, "b": mask}, crop=(3, 3, 3))
    t = s.triplets(np.random.default_rng(0), 16)
    assert t["x"].shape == (16, 1, 3, 3, 3) and t["mx"].max() == 1
    # input, target and same-site crops are of one modality (T2w images are negative here)
    for k in range(16):
        assert len({np.sign(t[key][k].sum()) for key in ("x", "t", "s")}) == 1
    assert {np.sign(t["x"][k].sum()) for k in range(16)} == {-1.0, 1.0}
    big = CropSampler({"a": {"T1w": {"x": vol}}}, {"a": mask}, crop=(8, 8, 8))._cut(vol, "a", np.zeros(3))
    assert big.shape == (8, 8, 8) and big.sum() > 0 and (big == 0).sum() > 8**3 - vol.size
    flat = CropSampler({"a": {"T1w": {"x": vol}}}, {"a": mask}, crop=(4, 4, 1)).triplets(np.random.default_rng(1), 2)
    assert flat["x"].shape == (2, 1, 4, 4, 1)


def test_config_errors(structural, tmp_path):
    from mrharmony.errors import InputError

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"data": {"dataset": str(structural), "sites": ["siteD"]}, "model": {"method": "hail"}})
    )
    with pytest.raises(InputError, match="holds out of training"):
        train_structural(bad, tmp_path / "r")
    bad.write_text(
        yaml.safe_dump({"data": {"dataset": str(structural)}, "model": {"method": "hail", "style_wieght": 1}})
    )
    with pytest.raises(InputError, match="style_wieght"):
        load_structural_config(bad)
    bad.write_text(yaml.safe_dump({"data": {"dataset": str(structural)}, "model": {"method": "hial"}}))
    with pytest.raises(InputError, match="'method' is one of hail, ihf"):
        load_structural_config(bad)
    assert not (tmp_path / "r").exists()
    ds = load_structural(structural)
    with pytest.raises(InputError, match="training needs"):
        split_subjects(
            ds.subjects,
            load_structural_config(_config(tmp_path, structural)).data.model_copy(update={"n_test_subjects": 3}),
            bad,
        )


def test_the_model_card_says_what_the_model_learned_from(structural, trained, tmp_path):
    from mrharmony.engine.card import card_hash, read_card

    card, _ = read_card(trained)
    split = json.loads((trained / "split.json").read_text())
    assert (card["wing"], card["method"]) == ("structural", "hail") and card["variant"] in ("hail", "hail_unet")
    data = card["training_data"]
    assert data["synthetic"] and data["subjects_held_out"] == split["test"] and data["voxel_size"]
    assert set(data["sites"]) <= set(load_structural(structural).train_sites)
    assert card["validation"]["best_epoch"] >= 1 and card["budget"]["epochs"] >= 1
    ds = load_structural(structural)
    out = tmp_path / "h" / "T1w_desc-harmonized.nii.gz"
    assert (
        main(
            [
                "structural",
                "apply",
                str(trained),
                "--input",
                str(ds.image_path(split["test"][0], "siteA")),
                "--target-image",
                str(ds.image_path(split["validation"][0], "siteC")),
                "--out",
                str(out.parent),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(out.with_name("T1w_desc-harmonized.json").read_text())["ModelCardSHA256"] == card_hash(card)


def test_two_processes_train_as_one(structural, tmp_path):
    """torchrun with 2 CPU processes (gloo) on the same global batches: each takes half of every
    batch and the gradients are averaged, so the weights are those of one process to float rounding
    (here every crop is all brain; the consistency loss's masked mean is taken per share)."""
    import os
    import subprocess
    import sys

    cfg = _config(tmp_path, structural, pretrain_epochs=1, epochs=1, steps_per_epoch=3, batch_size=2)
    one = train_structural(cfg, tmp_path / "one", quiet=True)
    env = {**os.environ, "MRHARMONY_DDP_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "mrharmony", "structural", "train", str(cfg), "--out", str(tmp_path / "two"), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = torch.load(one / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)["state_dict"]
    assert "2 process(es)" in (tmp_path / "two" / "log.txt").read_text()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)  # the order of float sums differs
