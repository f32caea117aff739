"""IHF-Harmony end to end on the tiny structural data: 2D and 3D training, exact invertibility
after training, the VGG path, and the command line."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from mrharmony.cli import main
from mrharmony.data.structural import load_structural
from mrharmony.structural.ihf import IHFHarmonizer
from mrharmony.structural.training import train_structural


@pytest.fixture(scope="module")
def structural(tmp_path_factory):
    from mrharmony.simulate.structural import simulate_structural

    return simulate_structural(tmp_path_factory.mktemp("st") / "tiny", preset="tiny", seed=6, rescans=False, quiet=True)


def _config(folder, dataset, model=None, **training):
    path = folder / "flow.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "preset": "test",
                "data": {
                    "dataset": str(dataset),
                    "n_test_subjects": 1,
                    "crop_size": 16,
                    "modalities": ["T1w", "T2w", "FLAIR"],
                },
                "model": {
                    "method": "ihf",
                    "flow": "squeeze",
                    "hidden": 8,
                    "style_dim": 8,
                    "widths": [4, 8, 16],
                    **(model or {}),
                },
                "training": {"threads": 1, **training},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def trained2d(structural, tmp_path_factory):
    folder = tmp_path_factory.mktemp("flow")
    cfg = _config(folder, structural, pretrain_epochs=2, epochs=3, steps_per_epoch=6, batch_size=4)
    return train_structural(cfg, folder / "run", quiet=True, method="ihf")


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_training_changes_the_flow_and_it_stays_exactly_invertible(structural, trained2d):
    h = IHFHarmonizer.load(trained2d)
    net, meta = h.net, h.meta
    assert meta["model"]["dims"] == 2 and meta["training_sites"] == ["siteA", "siteB", "siteC"]
    ds = load_structural(structural)
    subject = meta["split"]["test"][0]
    ref = meta["split"]["validation"][0]
    for modality in ("T1w", "FLAIR"):
        img, _ = ds.load_image(subject, "siteA", modality)
        mask = ds.load_mask(subject)
        tgt, _ = ds.load_image(ref, "siteD", modality)  # a site never seen in training
        tmask = ds.load_mask(ref)
        res = h.transform(img, mask=mask, target=tgt, target_mask=tmask)
        assert res.image.dtype == np.float32 and res.image.shape == img.shape
        scaled_in = img / res.sidecar["InputScale"]
        assert _relative(res.image / np.percentile(tgt[tmask], 99), scaled_in) > 1e-3  # it did something
        assert _relative(h.restore(res), img) < 1e-5
    # and on random inputs, as the flow sees them
    code = net.style_code(torch.rand(1, 1, 16, 16))
    x = torch.randn(3, 1, 16, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float((net.inverse(net(x, code), code) - x).norm() / x.norm()) < 1e-5
    assert any(p.abs().sum() > 0 for n, p in net.named_parameters() if n.endswith("out.weight"))


def test_3d_mode_trains_and_inverts(structural, tmp_path):
    cfg = _config(tmp_path, structural, model={"dims": 3}, epochs=1, steps_per_epoch=2)
    run = train_structural(cfg, tmp_path / "run3d", quiet=True, method="ihf")
    h = IHFHarmonizer.load(run)
    assert h.net.dims == 3 and h.invertible
    ds = load_structural(structural)
    img, _ = ds.load_image(h.split["test"][0], "siteB", "T2w")
    mask = ds.load_mask(h.split["test"][0])
    res = h.transform(img, mask=mask, target=img, target_mask=mask)
    assert _relative(h.restore(res), img) < 1e-5


def test_a_vgg_weights_file_replaces_the_self_trained_encoder(structural, tmp_path):
    from tests.structural.test_ihf import _torchvision_vgg19_state

    torch.save(_torchvision_vgg19_state(), tmp_path / "vgg19.pth")
    cfg = _config(tmp_path, structural, model={"vgg_weights": "vgg19.pth"}, epochs=1, steps_per_epoch=2)
    run = train_structural(cfg, tmp_path / "run-vgg", quiet=True, method="ihf")
    history = (run / "metrics.csv").read_text().splitlines()
    assert len(history) == 2 and history[1].split(",")[1] == "2"  # one epoch, the flow's (no autoencoder)
    saved = torch.load(run / "model.pt")["state_dict"]
    assert not any(k.startswith("features") for k in saved)  # the model keeps the flow only
    cfg3d = _config(tmp_path, structural, model={"vgg_weights": "vgg19.pth", "dims": 3})
    with pytest.raises(Exception, match="vgg_weights needs dims: 2"):
        train_structural(cfg3d, tmp_path / "nope", quiet=True)


def test_flow_apply_from_the_command_line(structural, trained2d, tmp_path, capsys):
    ds = load_structural(structural)
    split = json.loads((trained2d / "split.json").read_text())
    subject, ref = split["test"][0], split["validation"][0]
    out = tmp_path / "harmonized" / "FLAIR_desc-harmonized.nii.gz"
    args = [
        "structural",
        "apply",
        str(trained2d),
        "--input",
        str(ds.image_path(subject, "siteC", "FLAIR")),
        "--target-image",
        str(ds.image_path(ref, "siteE", "FLAIR")),
        "--out",
        str(out.parent),
        "--mask",
        str(ds.mask_path(subject)),
        "--target-mask",
        str(ds.mask_path(ref)),
        "--quiet",
    ]
    assert main(args) == 0
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32 and img.shape == ds.load_mask(subject).shape
    side = json.loads(out.with_name("FLAIR_desc-harmonized.json").read_text())
    assert side["InputScale"] > 0
    assert "IHF-Harmony" in side["Description"]  # one command for both methods: the model file decides
    assert main(args) == 2  # the output exists
    assert "pass --force" in capsys.readouterr().err


def test_resume_gives_the_uninterrupted_weights(structural, tmp_path):
    cfg = _config(tmp_path, structural, pretrain_epochs=1, epochs=2)
    whole = train_structural(cfg, tmp_path / "whole", quiet=True)
    for stop in (1, 2):  # in the autoencoder phase, and in the flow's
        part = train_structural(cfg, tmp_path / f"part{stop}", quiet=True, stop_after_epochs=stop)
        assert not (part / "model.pt").exists()
        train_structural(None, part, resume=True, quiet=True)
        a, b = torch.load(whole / "model.pt")["state_dict"], torch.load(part / "model.pt")["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), stop


def test_crop_size_must_survive_the_squeezes(structural, tmp_path):
    from mrharmony.errors import InputError

    cfg = _config(tmp_path, structural, model={"levels": 3})  # crop 16 is fine for 3 levels (8)
    path = tmp_path / "odd.yaml"
    raw = yaml.safe_load(cfg.read_text())
    raw["data"]["crop_size"] = 20
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="use a multiple of 8"):
        train_structural(path, tmp_path / "r", quiet=True)


def test_the_papers_hierarchy_flow_trains_harmonizes_and_is_not_restored(structural, tmp_path):
    from mrharmony.errors import InputError
    from mrharmony.structural.apply import restore_image
    from mrharmony.structural.ihf.paper_flow import HierarchyFlow

    cfg = _config(
        tmp_path,
        structural,
        model={"flow": "hierarchy", "chunks": [3, 2], "pad": 2, "hidden": 8},
        pretrain_epochs=1,
        epochs=2,
        steps_per_epoch=4,
        batch_size=2,
    )
    run = train_structural(cfg, tmp_path / "run", quiet=True, method="ihf")
    h = IHFHarmonizer.load(run)
    assert isinstance(h.net, HierarchyFlow) and h.name == "ihf" and not h.invertible
    rows = (run / "metrics.csv").read_text().splitlines()
    assert "anatomy" in rows[0] and "artefact" in rows[0]
    # the style code and the decode's scale and shift have left zero (what the training changes)
    assert any(float(b.aan.scale.weight.abs().sum()) > 0 for b in h.net.blocks)
    ds = load_structural(structural)
    img, _ = ds.load_image("sub-01", "siteA", "T1w")
    tgt, _ = ds.load_image("sub-02", "siteB", "T1w")
    res = h.transform(img, mask=ds.load_mask("sub-01"), target=tgt, target_mask=ds.load_mask("sub-02"))
    assert res.image.shape == img.shape and np.isfinite(res.image).all() and not res.arrays
    files = tmp_path / "files"
    files.mkdir()
    nib.save(nib.Nifti1Image(res.image, np.eye(4)), files / "h.nii.gz")
    (files / "h.json").write_text(json.dumps({"InputScale": 1.0}))
    with pytest.raises(InputError, match="not invertible from its outputs; only the outputs of IHF-Harmony's squeeze"):
        restore_image(run, input_path=files / "h.nii.gz", out=files / "r")
    assert not (files / "r").exists()


def test_the_flow_trains_on_whole_slices_with_a_cosine_decay_and_resumes_exactly(structural, tmp_path):
    from mrharmony.errors import InputError

    cfg = _config(
        tmp_path,
        structural,
        model={"flow": "hierarchy"},
        pretrain_epochs=1,
        epochs=2,
        steps_per_epoch=2,
        batch_size=2,
        lr_schedule="cosine",
        transfer_learning_rate=1e-3,
    )
    raw = yaml.safe_load(cfg.read_text())
    raw["data"]["crop_size"] = "slice"
    cfg.write_text(yaml.safe_dump(raw))
    run = train_structural(cfg, tmp_path / "slices", quiet=True)
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    lr = {int(r[0]): float(r[rows[0].index("lr")]) for r in rows[1:]}
    # each epoch's last step: phase 2's fractional epochs 0.5 and 1.5 of 2
    assert lr[2] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi / 4)))
    assert lr[3] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(3 * np.pi / 4)))
    part = train_structural(cfg, tmp_path / "part", quiet=True, stop_after_epochs=2)
    train_structural(None, part, resume=True, quiet=True)
    a, b = torch.load(run / "model.pt")["state_dict"], torch.load(part / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    raw["model"]["dims"], raw["model"]["flow"] = 3, "squeeze"
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="crop_size: slice .* only a 2D method"):
        train_structural(cfg, tmp_path / "nope", quiet=True)


def test_whole_slice_crops_are_the_slices_as_they_are():
    from mrharmony.structural.crops import CropSampler

    vol = np.arange(6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5) + 1
    mask = np.zeros(vol.shape, bool)
    mask[2:5, 3:6, 1:4] = True  # off centre: a crop centred on the brain would cut the slice
    t = CropSampler(
        {"a": {"T1w": {"x": vol, "y": vol}}, "b": {"T1w": {"x": vol, "y": vol}}},
        {"a": mask, "b": mask},
        crop=(8, 8, 1),
        whole_slices=True,
    ).triplets(np.random.default_rng(0), 6)
    for k in range(6):
        z = int(np.argwhere(vol == t["x"][k, 0, 0, 0, 0])[0][2])
        assert 1 <= z < 4  # a slice of the brain
        assert np.array_equal(t["x"][k, 0, :6, :7, 0], vol[..., z])  # the whole slice, in place
        assert not t["x"][k, 0, 6:].any() and not t["x"][k, 0, :, 7:].any()  # zero-padded at the end


@pytest.mark.parametrize("value", [4, "slices"])
def test_a_crop_size_that_is_neither_an_edge_nor_slice_is_refused_in_one_sentence(structural, tmp_path, value):
    from mrharmony.errors import InputError
    from mrharmony.structural.config import load_structural_config

    raw = yaml.safe_load(_config(tmp_path, structural).read_text())
    raw["data"]["crop_size"] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError) as e:
        load_structural_config(path)
    assert str(e.value) == (
        f"{path}: invalid value for 'data.crop_size': {value!r} is neither a crop edge of at "
        "least 8 voxels nor 'slice' (whole slices)."
    )


def test_the_residual_flow_trains_harmonizes_and_is_restored_from_its_files(structural, tmp_path):
    """``flow: residual`` (ihf_residual): trained through the same engine, applied on files at the
    data's own size (no squeeze, no padding), and the input restored from the written files alone."""
    from mrharmony.structural.apply import restore_image

    cfg = _config(
        tmp_path,
        structural,
        model={"flow": "residual", "levels": 2, "blocks": 2},
        pretrain_epochs=1,
        epochs=2,
        steps_per_epoch=4,
        batch_size=2,
    )
    run = train_structural(cfg, tmp_path / "run", quiet=True, method="ihf")
    h = IHFHarmonizer.load(run)
    assert h.name == "ihf_residual" and h.invertible and h.net.multiple == 1
    ds = load_structural(structural)
    split = json.loads((run / "split.json").read_text())
    subject, ref = split["test"][0], split["validation"][0]
    src = ds.image_path(subject, "siteA", "T1w")
    args = [
        "structural",
        "apply",
        str(run),
        "--input",
        str(src),
        "--target-image",
        str(ds.image_path(ref, "siteD", "T1w")),
    ]
    args += [
        "--mask",
        str(ds.mask_path(subject)),
        "--target-mask",
        str(ds.mask_path(ref)),
        "--out",
        str(tmp_path / "h"),
    ]
    assert main([*args, "--quiet"]) == 0
    harmonized = tmp_path / "h" / "T1w_desc-harmonized.nii.gz"
    x = np.asarray(nib.load(src).dataobj, np.float32)
    assert not np.allclose(np.asarray(nib.load(harmonized).dataobj), x)  # trained: it changes the image
    back = restore_image(run, input_path=harmonized, out=tmp_path / "r")
    restored = np.asarray(nib.load(back).dataobj, np.float32)
    assert np.linalg.norm(restored - x) / np.linalg.norm(x) < 1e-5
