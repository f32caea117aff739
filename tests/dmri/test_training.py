import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mrharmony.cli import main
from mrharmony.dmri.models import load_model
from mrharmony.dmri.run_config import load_run_config
from mrharmony.dmri.training import train
from mrharmony.engine.checkpoint import read_checkpoint
from mrharmony.errors import InputError


def _config(tmp_path, dataset, name="run.yaml", **model):
    data = {"dataset": str(dataset), "targets": model.pop("targets", None)}
    training = model.pop("training", {})
    cfg = {
        "preset": "test",
        "data": {k: v for k, v in data.items() if v is not None},
        "model": {"method": "diqt", **model},
        "training": training,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(run):
    return read_checkpoint(Path(run) / "checkpoints" / "last.pt")["model"]


def test_a_run_writes_its_directory(tmp_path, tiny_prepared):
    cfg = _config(tmp_path, tiny_prepared, targets=["connectom_sa"])
    run = train(cfg, tmp_path / "run", quiet=True)
    for f in (
        "config.yaml",
        "log.txt",
        "metrics.csv",
        "split.json",
        "model.pt",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run / f).is_file(), f
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,lr,train_loss,val_loss,val_loss_connectom_sa,seconds,patches_per_s" and len(rows) == 3
    net, meta = load_model(run)
    assert meta["parameter_count"] == sum(p.numel() for p in net.parameters()) > 0
    assert meta["targets"] == ["connectom_sa"] and meta["ratios"] == {"connectom_sa": 2}
    assert meta["output_sizes"] == {"connectom_sa": [14]}
    # the resolved config says everything: the preset's values are written out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["training"]["batch_size"] == 4 and saved["training"]["epochs"] == 2


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_prepared):
    cfg = _config(tmp_path, tiny_prepared, targets=["prisma_st"], training={"epochs": 3})
    full = train(cfg, tmp_path / "full", quiet=True)
    part = train(cfg, tmp_path / "part", quiet=True, stop_after_epochs=1)
    assert not (part / "model.pt").exists()
    assert read_checkpoint(part / "checkpoints" / "last.pt")["epoch"] == 1
    train(None, part, resume=True, quiet=True)
    a, b = _weights(full), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "metrics.csv").read_text().splitlines()[1:] != []
    assert (
        read_checkpoint(part / "model.pt")["meta"]["best_epoch"]
        == read_checkpoint(full / "model.pt")["meta"]["best_epoch"]
    )


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_prepared):
    cfg = _config(tmp_path, tiny_prepared, targets=["prisma_st"], training={"epochs": 1})
    a = _weights(train(cfg, tmp_path / "a", quiet=True))
    b = _weights(train(cfg, tmp_path / "b", quiet=True))
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg2 = _config(tmp_path, tiny_prepared, name="seed.yaml", targets=["prisma_st"], training={"epochs": 1, "seed": 5})
    c = _weights(train(cfg2, tmp_path / "c", quiet=True))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_msp_chooses_its_first_stage_on_validation_loss(tmp_path, tiny_prepared):
    runs = []
    for method in ("diqt", "cnn_rish"):
        for t in ("prisma_st", "connectom_sa"):
            cfg = _config(tmp_path, tiny_prepared, name=f"{method}-{t}.yaml", method=method, targets=[t])
            runs.append(str(train(cfg, tmp_path / f"{method}-{t}", quiet=True)))
    msp_cfg = _config(
        tmp_path,
        tiny_prepared,
        name="msp.yaml",
        method="msp",
        targets=["prisma_st", "connectom_sa"],
        first_stage_runs=runs,
        alpha_end_epoch=1.0,
    )
    run = train(msp_cfg, tmp_path / "msp", quiet=True)
    assert (run / "metrics.csv").read_text().startswith("epoch,lr,alpha,train_loss,val_loss,")
    # resumed mid-ramp of alpha, MSP ends with the uninterrupted run's weights
    part = train(msp_cfg, tmp_path / "msp-part", quiet=True, stop_after_epochs=1)
    train(None, part, resume=True, quiet=True)
    a, b = _weights(run), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_checkpoint(run / "model.pt")["meta"]["first_stage_runs"]["prisma_st"].startswith("../")
    _, meta = load_model(run)  # paths recorded relative to the run, returned absolute
    for t in ("prisma_st", "connectom_sa"):
        losses = {r: read_checkpoint(Path(r) / "model.pt")["meta"]["best_validation_loss"].get(t) for r in runs}
        best = min((v, r) for r, v in losses.items() if v is not None)[1]
        assert meta["first_stage_runs"][t] == str(Path(best).resolve())
    net, _ = load_model(run)
    assert float(net.alpha) == 1.0
    # MSP's own first stage as a row of its own, right after MSP, scored with the first stage's outputs
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.loading import load_harmonizer

    ev = evaluate([run], first_stages=True, max_patches=50, volume_metrics=False, quiet=True)
    assert ev.methods == ["msp", "msp_stage1", "none"]
    stage = load_harmonizer(run).first_stage()
    assert ev.parameters["msp_stage1"] == sum(p.numel() for p in net.first.parameters()) < ev.parameters["msp"]
    assert not np.allclose(ev.patch_errors["msp"]["prisma_st"], ev.patch_errors["msp_stage1"]["prisma_st"])
    assert stage.output == 0 and load_harmonizer(runs[0]).first_stage() is None
    # a single run trained on another split cannot be a first stage: its training patches may be test patches here
    other = _config(tmp_path, tiny_prepared, name="other.yaml", targets=["prisma_st"])
    raw = yaml.safe_load(other.read_text())
    raw["data"]["split_seed"] = 9
    other.write_text(yaml.safe_dump(raw))
    bad_run = train(other, tmp_path / "other", quiet=True)
    bad = _config(
        tmp_path,
        tiny_prepared,
        name="bad.yaml",
        method="msp",
        targets=["prisma_st", "connectom_sa"],
        first_stage={"prisma_st": str(bad_run)},
    )
    with pytest.raises(InputError, match=r"other data settings \(split_seed\)"):
        train(bad, tmp_path / "msp-bad", quiet=True)


def test_config_errors_name_the_file_and_key(tmp_path, tiny_prepared, capsys):
    cfg = _config(tmp_path, tiny_prepared)
    raw = yaml.safe_load(cfg.read_text())
    raw["training"]["lerning_rate"] = 0.1
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["dmri", "train", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert f"{cfg}: unknown key 'training.lerning_rate'." in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    raw = yaml.safe_load(_config(tmp_path, tiny_prepared, name="c2.yaml").read_text())
    raw["model"]["stages"] = 3
    (tmp_path / "c2.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="'stages' does not apply to method diqt"):
        load_run_config(tmp_path / "c2.yaml")
    raw["model"] = {"method": "unet"}
    (tmp_path / "c2.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="'unet' is not a dMRI method"):
        load_run_config(tmp_path / "c2.yaml")
    bad_target = _config(tmp_path, tiny_prepared, name="c3.yaml", targets=["siemens_trio"])
    with pytest.raises(InputError, match="unknown platform 'siemens_trio'"):
        train(bad_target, tmp_path / "r3", quiet=True)
    assert not (tmp_path / "r3").exists()  # nothing half-written


def test_existing_run_needs_force_and_resume_needs_a_checkpoint(tmp_path, tiny_prepared, capsys):
    cfg = _config(tmp_path, tiny_prepared, targets=["prisma_st"], training={"epochs": 1})
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    assert main(["dmri", "train", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (tmp_path / "r" / "notes.txt").exists()
    assert main(["dmri", "train", "--resume", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "has no checkpoint to resume from" in capsys.readouterr().err


def test_truncated_checkpoint_and_newer_model_are_refused(tmp_path, tiny_prepared, capsys):
    cfg = _config(tmp_path, tiny_prepared, targets=["prisma_st"], training={"epochs": 2})
    run = train(cfg, tmp_path / "r", quiet=True, stop_after_epochs=1)
    ck = run / "checkpoints" / "last.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    assert main(["dmri", "train", "--resume", "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "last.pt: could not be read as a mrharmony model or checkpoint (truncated or corrupt" in err
    run2 = train(cfg, tmp_path / "r2", quiet=True)
    obj = torch.load(run2 / "model.pt", weights_only=True)
    obj["format_version"] = 99
    torch.save(obj, run2 / "model.pt")
    with pytest.raises(InputError, match=r"model.pt: was written by a newer mrharmony \(format version 99"):
        load_model(run2)


def test_two_process_ddp_matches_one_process(tmp_path, tiny_prepared):
    """torchrun with 2 CPU processes (gloo) on the same global batch gives the 1-process weights."""
    cfg = _config(tmp_path, tiny_prepared, targets=["prisma_st"], training={"epochs": 1, "threads": 1})
    one = train(cfg, tmp_path / "one", quiet=True)
    env = {**os.environ, "MRHARMONY_DDP_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mrharmony",
        "dmri",
        "train",
        str(cfg),
        "--out",
        str(tmp_path / "two"),
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _weights(one), _weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)  # the order of float sums differs


def test_data_and_runs_can_move_together(tmp_path, tiny_prepared):
    import shutil

    from mrharmony.dmri.evaluate import evaluate

    root = tmp_path / "project"
    shutil.copytree(tiny_prepared, root / "data")
    cfg = _config(root, root / "data", targets=["prisma_st"], training={"epochs": 1})
    train(cfg, root / "runs" / "a", quiet=True)
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    _, meta = load_model(moved / "runs" / "a")
    assert meta["data"]["dataset"] == str((moved / "data").resolve())
    ev = evaluate([moved / "runs" / "a"], max_patches=50, quiet=True, volume_metrics=False)
    assert ev.n_patches == 50
    train(None, moved / "runs" / "a", resume=True, quiet=True)  # the recorded config still resolves


def test_config_problems_found_with_the_data_name_the_config(tmp_path, tiny_prepared, capsys):
    cfg = _config(tmp_path, tiny_prepared, targets=["prisma_st"], training={"patches_per_epoch": 2})
    assert main(["dmri", "train", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert f"{cfg}: gives 2 training patches per epoch, fewer than one minibatch" in capsys.readouterr().err
    assert (
        main(["dmri", "train", str(_config(tmp_path, tiny_prepared, name="all.yaml")), "--out", str(tmp_path / "r")])
        == 2
    )
    assert "all.yaml: trains diqt, which predicts one target, for 3 targets" in capsys.readouterr().err
    raw = yaml.safe_load(_config(tmp_path, tiny_prepared, name="held.yaml", targets=["prisma_st"]).read_text())
    raw["data"].update(split="subject", test_subjects=["sub-99"])
    (tmp_path / "held.yaml").write_text(yaml.safe_dump(raw))
    assert main(["dmri", "train", str(tmp_path / "held.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert f"{tmp_path / 'held.yaml'}: names held-out subject 'sub-99'" in capsys.readouterr().err
    raw["model"] = {"features": 8}
    (tmp_path / "held.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="missing required key 'model.method'"):
        load_run_config(tmp_path / "held.yaml")
    raw["model"] = {"method": "diqt", "featurs": 8}
    (tmp_path / "held.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="unknown key 'model.featurs'"):
        load_run_config(tmp_path / "held.yaml")
    assert not (tmp_path / "r").exists()


def test_a_run_can_start_from_a_finished_run_of_the_same_network(tmp_path, tiny_prepared):
    first = train(_config(tmp_path, tiny_prepared, name="a.yaml", targets=["prisma_st"]), tmp_path / "a", quiet=True)
    # continued with a vanishing learning rate, the network keeps the weights it started from
    cfg = _config(
        tmp_path,
        tiny_prepared,
        name="b.yaml",
        targets=["prisma_st"],
        init_from="a",
        training={"epochs": 1, "learning_rate": 1e-12},
    )
    cont = train(cfg, tmp_path / "b", quiet=True)
    a, b = (read_checkpoint(r / "model.pt")["state_dict"] for r in (first, cont))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert yaml.safe_load((cont / "config.yaml").read_text())["model"]["init_from"] == "../a"
    labelled = _config(
        tmp_path, tiny_prepared, name="l.yaml", targets=["prisma_st"], init_from="a", training={"epochs": 1}
    )
    raw = yaml.safe_load(labelled.read_text())
    labelled.write_text(yaml.safe_dump({**raw, "label": "diqt_continued"}))
    from mrharmony.dmri.loading import load_harmonizer

    assert load_harmonizer(train(labelled, tmp_path / "l", quiet=True)).name == "diqt_continued"
    other = train(
        _config(tmp_path, tiny_prepared, name="c.yaml", method="cnn_rish", targets=["prisma_st"]),
        tmp_path / "c",
        quiet=True,
    )
    bad = _config(tmp_path, tiny_prepared, name="d.yaml", targets=["prisma_st"], init_from=str(other))
    with pytest.raises(InputError, match="init_from needs the network this run trains"):
        train(bad, tmp_path / "d", quiet=True)
    with pytest.raises(InputError, match="'init_from' does not apply to method rish"):
        load_run_config(_config(tmp_path, tiny_prepared, name="e.yaml", method="rish", init_from="a"))


def test_dense_training_on_tiles_trains_the_same_function_on_every_output_voxel(tmp_path, tiny_prepared):
    """A tile's answer at each output voxel is that voxel's patch answer (valid convolutions), so
    the loss on a tile's brain voxels is the mean of the patch losses there; the run trains on
    tiles, validates on the centred patches and applies like any other run."""
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.dmri.networks.single import DIQT
    from mrharmony.dmri.training import crop_batch, patch_loss

    torch.manual_seed(0)
    net = DIQT("t", 28, 2).eval()
    x = torch.randn(1, 28, 15, 15, 15)
    y = torch.randn(1, 28, 22, 22, 22)  # the tile's output for a 2x target: (15 - 4) * 2
    with torch.no_grad():
        out = net(x)
    assert out["t"][-1].shape[-1] == 22
    y[:, :, :4] = 0  # outside the brain: excluded
    total, _ = patch_loss({"t": out["t"]}, {"t": y}, in_brain=True)
    inside = (y != 0).any(dim=1)
    expected = ((out["t"][-1] - y) ** 2).sum(dim=1)[inside].mean() / 28
    assert float(total) == pytest.approx(float(expected), rel=1e-5)
    xs, ys = crop_batch((x.numpy(), {"t": y.numpy()}), 11, {"t": 14})
    assert xs.shape[-1] == 11 and ys["t"].shape[-1] == 14
    with torch.no_grad():
        np.testing.assert_allclose(
            net(torch.from_numpy(np.ascontiguousarray(xs)))["t"][-1].numpy(),
            out["t"][-1][..., 4:18, 4:18, 4:18].numpy(),
            atol=1e-5,
        )

    cfg = _config(tmp_path, tiny_prepared, targets=["connectom_sa"], training={"tile_size": 15})
    run = train(cfg, tmp_path / "tiles", quiet=True)
    meta = read_checkpoint(run / "model.pt")["meta"]
    assert meta["patch_size"] == 11 and meta["output_sizes"] == {"connectom_sa": [14]}
    h = load_harmonizer(run)
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import load_features

    f = load_features(load_dataset(tiny_prepared, check_data=False), "sub-01", "ge_st")
    assert h.predict(f)["connectom_sa"].shape[:3] == tuple(2 * n for n in f.data.shape[:3])
    for bad in (14, 11):
        path = _config(
            tmp_path, tiny_prepared, name=f"bad{bad}.yaml", targets=["prisma_st"], training={"tile_size": bad}
        )
        with pytest.raises(InputError, match=f"tile_size {bad}; a tile must be odd and larger than the patch"):
            train(path, tmp_path / f"bad{bad}", quiet=True)


@pytest.mark.parametrize("axis,kind", [(0, "platform"), (1, "scan"), (2, "platform")])
def test_mirrored_samples_are_the_features_of_the_mirrored_scan(tiny_prepared, axis, kind):
    """Flip augmentation: mirroring normalized features (with the SH reflection and the statistics
    that scaled the scan, its platform's or its own) gives exactly the features of the scan
    mirrored before the SH fit, its gradient directions reflected."""
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.normalization import FeatureScaling
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.features.sh import SHConfig, fit_sh
    from mrharmony.dmri.training import Reflections

    ds = load_dataset(tiny_prepared, check_data=False)
    scaling = FeatureScaling.from_dataset(kind, ds, ["ge_st", "prisma_st"], ["sub-01", "sub-02"])
    f = load_features(ds, "sub-02", "prisma_st", scaling=scaling)
    refl = Reflections(
        ds,
        ["sub-01", "sub-02"],
        {"input": "ge_st", "prisma_st": "prisma_st"},
        {
            "sh_order_max": 6,
            "basis": f.sh.basis,
            "legacy": f.sh.legacy,
            "smooth": f.sh.smooth,
            "b0_threshold": f.sh.b0_threshold,
            "shells": f.sh.shells,
        },
        scaling,
    )
    x = np.moveaxis(f.data, -1, 0)[None]
    flips = np.zeros((1, 3), bool)
    flips[0, axis] = True
    _, ys = refl((x, {"prisma_st": x}), np.array([1]), flips)
    scan = ds.scan("sub-02", "prisma_st")
    dwi, _ = scan.load_dwi()
    bvals, bvecs = scan.gradients()
    bvecs = bvecs.copy()
    bvecs[:, axis] *= -1
    mask = np.flip(f.mask, axis)
    coeffs = fit_sh(np.flip(dwi, axis).astype(np.float32), bvals, bvecs, mask, SHConfig(**f.sh.model_dump()))
    expected = f.stats.apply(coeffs, mask)
    np.testing.assert_allclose(np.moveaxis(ys["prisma_st"][0], 0, -1), expected, atol=2e-4)
    assert not np.allclose(expected, f.data, atol=1e-2)  # the mirror changed something


def test_order_weighting_gives_each_sh_order_the_same_share_of_the_loss(tmp_path, tiny_prepared):
    from mrharmony.dmri.features.sh import sh_orders
    from mrharmony.dmri.training import NetworkTrainee, patch_loss
    from mrharmony.engine.loop import Machine

    cfg = load_run_config(
        _config(tmp_path, tiny_prepared, targets=["prisma_st"], training={"loss_weighting": "order", "device": "cpu"})
    )
    import contextlib

    trainee = NetworkTrainee(cfg, tmp_path / "w", Machine(device=torch.device("cpu"), autocast=contextlib.nullcontext))
    w = trainee.channel_weights.numpy()
    orders = sh_orders(6)
    assert w.mean() == pytest.approx(1.0)
    shares = [w[orders == o].sum() for o in (0, 2, 4, 6)]
    np.testing.assert_allclose(shares, shares[0], rtol=1e-6)
    # an error in the order-0 channel alone counts 7 times what it counts with the paper's loss
    y = torch.zeros(1, 28, 3, 3, 3)
    o = y.clone()
    o[:, 0] = 1.0
    plain, _ = patch_loss({"t": [o]}, {"t": y})
    weighted, _ = patch_loss({"t": [o]}, {"t": y}, channel_weights=trainee.channel_weights)
    assert float(weighted) == pytest.approx(7 * float(plain))


def test_cosine_schedule_warms_up_decays_to_zero_and_resumes_exactly(tmp_path, tiny_prepared):
    cfg = _config(
        tmp_path,
        tiny_prepared,
        targets=["prisma_st"],
        training={"epochs": 3, "lr_schedule": "cosine", "warmup_epochs": 1, "learning_rate": 0.002},
    )
    whole = train(cfg, tmp_path / "whole", quiet=True)
    lrs = [float(r.split(",")[1]) for r in (whole / "metrics.csv").read_text().splitlines()[1:]]
    # the rate of each epoch's last step (4 steps an epoch): the warm-up's end, then the cosine at
    # 0.75 / 2 and 1.75 / 2 of the decay
    import math

    expected = [0.002, 0.001 * (1 + math.cos(math.pi * 0.375)), 0.001 * (1 + math.cos(math.pi * 0.875))]
    np.testing.assert_allclose(lrs, expected, rtol=1e-4)
    part = train(cfg, tmp_path / "part", quiet=True, stop_after_epochs=1)
    train(None, part, resume=True, quiet=True)
    a, b = _weights(whole), _weights(part)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_position_channels_follow_a_mirrored_sample(tiny_prepared, axis):
    """A mirrored sample's position channels are those of the mirrored scan: mirroring voxel axis
    a reverses the voxels and negates channel a (the brain's centroid mirrors with it)."""
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.position import position_channels, with_position
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.training import Reflections

    ds = load_dataset(tiny_prepared, check_data=False)
    f = load_features(ds, "sub-02", "ge_st")
    sh = {
        "sh_order_max": 6,
        "basis": f.sh.basis,
        "legacy": f.sh.legacy,
        "smooth": f.sh.smooth,
        "b0_threshold": f.sh.b0_threshold,
        "shells": f.sh.shells,
    }
    from mrharmony.dmri.features.normalization import FeatureScaling

    scaling = FeatureScaling.from_dataset("platform", ds, ["ge_st"], ["sub-01", "sub-02"])
    refl = Reflections(ds, ["sub-01", "sub-02"], {"input": "ge_st"}, sh, scaling, position=True)
    x = np.moveaxis(with_position(f.data, f.mask, f.affine), -1, 0)[None]
    flips = np.zeros((1, 3), bool)
    flips[0, axis] = True
    plain = Reflections(ds, ["sub-01", "sub-02"], {"input": "ge_st"}, sh, scaling)
    mirrored, _ = refl((x, {}), np.array([1]), flips)
    sh_only, _ = plain((x[:, :28], {}), np.array([1]), flips)
    np.testing.assert_array_equal(mirrored[0, :28], sh_only[0])  # the SH channels as without position
    expected = position_channels(np.flip(f.mask, axis), f.affine)
    np.testing.assert_allclose(np.moveaxis(mirrored[0, 28:], 0, -1), expected, atol=1e-6)
    assert np.abs(expected[..., axis]).max() > 0.05  # several voxels from the centre, even on the tiny preset
    sizes = np.linalg.norm(f.affine[:3, :3], axis=0)
    centre = np.argwhere(f.mask).mean(0)
    np.testing.assert_allclose(position_channels(f.mask, f.affine)[0, 0, 0], -centre * sizes / 100, rtol=1e-5)


def test_a_model_file_made_before_the_position_option_loads_and_predicts_the_same(tmp_path, tiny_prepared):
    """Model files written before ``training.inputs`` existed have no ``position_channels`` in
    their metadata: they load as networks of the SH features, as they were trained."""
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.loading import load_harmonizer

    run = train(_config(tmp_path, tiny_prepared, targets=["prisma_st"]), tmp_path / "r", quiet=True)
    f = load_features(load_dataset(tiny_prepared, check_data=False), "sub-01", "ge_st")
    now = load_harmonizer(run).predict(f)["prisma_st"]
    obj = torch.load(run / "model.pt", weights_only=True)
    assert obj["meta"].pop("position_channels") is False
    torch.save(obj, run / "model.pt")
    assert "position_channels" not in read_checkpoint(run / "model.pt")["meta"]
    np.testing.assert_array_equal(load_harmonizer(run).predict(f)["prisma_st"], now)


def test_a_network_with_position_channels_trains_applies_and_guards_its_first_stage(tmp_path, tiny_prepared):
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.dmri.networks.position import PositionModulated

    run = train(
        _config(
            tmp_path, tiny_prepared, targets=["prisma_st"], training={"inputs": "sh+position", "learning_rate": 0.01}
        ),
        tmp_path / "pos",
        quiet=True,
    )
    net, meta = load_model(run)
    assert meta["position_channels"] is True and meta["in_channels"] == 28
    assert isinstance(net, PositionModulated)
    mod = net.modulation["prisma_st"][-1]
    assert mod.weight.abs().sum() > 0  # the modulation (zero at the start) was trained
    h = load_harmonizer(run)
    f = load_features(load_dataset(tiny_prepared, check_data=False), "sub-01", "ge_st")
    y = h.predict(f)["prisma_st"]
    assert y.shape == (*f.data.shape[:3], 28) and np.isfinite(y).all() and y[f.mask].std() > 0
    # the position changes the answer: the same features, the brain's centroid moved
    f.mask = f.mask.copy()
    f.mask[tuple(np.argwhere(f.mask)[0])] = False
    assert not np.allclose(h.predict(f)["prisma_st"][f.mask], y[f.mask])
    # dense training on tiles takes the position channels too
    tiled = train(
        _config(
            tmp_path,
            tiny_prepared,
            name="tiles.yaml",
            targets=["prisma_st"],
            training={"inputs": "sh+position", "tile_size": 13},
        ),
        tmp_path / "pos-tiles",
        quiet=True,
    )
    assert load_model(tiled)[1]["position_channels"] is True
    # MSP takes first stages of the SH features alone, and does not take the position itself
    path = _config(
        tmp_path, tiny_prepared, name="msp.yaml", method="msp", targets=["prisma_st"], first_stage_runs=[str(run)]
    )
    with pytest.raises(InputError, match="trained with the position channels; MSP's first stage"):
        train(path, tmp_path / "msp", quiet=True)
    path = _config(
        tmp_path,
        tiny_prepared,
        name="msp2.yaml",
        method="msp",
        targets=["prisma_st"],
        training={"inputs": "sh+position"},
    )
    with pytest.raises(InputError, match="sets training.inputs to sh\\+position, which msp does not take"):
        train(path, tmp_path / "msp2", quiet=True)
