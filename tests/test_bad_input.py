"""Bad input across the commands: each case a real file on disk, run through the command line;
each must end with exit code 2, one sentence on stderr naming the file and the problem, nothing
on stdout, and no output left behind. (The dataset checks of ``mrharmony validate`` have their
own table of cases in tests/data/test_validate.py.)"""

import re
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from mrharmony.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_prepared):
    """A small trained run (DIQT, test preset) and a scan of the input platform to apply it to."""
    base = tmp_path_factory.mktemp("bad")
    cfg = base / "diqt.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "preset": "test",
                "data": {
                    "dataset": str(tiny_prepared),
                    "split": "subject",
                    "test_subjects": ["sub-03"],
                    "targets": ["prisma_st"],
                },
                "model": {"method": "diqt"},
                "training": {"epochs": 1},
            }
        )
    )
    assert main(["dmri", "train", str(cfg), "--out", str(base / "run"), "--quiet"]) == 0
    return base / "run"


def _scan(tiny_prepared, tmp_path):
    src = tiny_prepared / "sub-03" / "ge_st"
    dst = tmp_path / "scan"
    shutil.copytree(src, dst)
    return dst


def _config(tmp_path, tiny_prepared, data=None, model=None, extra=None):
    cfg = {
        "preset": "test",
        "data": {"dataset": str(tiny_prepared), "targets": ["prisma_st"], **(data or {})},
        "model": model or {"method": "diqt"},
        **(extra or {}),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _apply_args(model, scan, out, **override):
    args = {
        "--dwi": scan / "dwi.nii.gz",
        "--bval": scan / "dwi.bval",
        "--bvec": scan / "dwi.bvec",
        "--mask": scan / "mask.nii.gz",
        "--out": out,
        **override,
    }
    return ["dmri", "apply", str(model)] + [str(x) for kv in args.items() for x in kv]


def _rewrite(path, fn):
    img = nib.load(path)
    nib.save(nib.Nifti1Image(fn(np.asanyarray(img.dataobj)), img.affine), path)


def _case_config_typo(tmp_path, prepared, model):
    path = _config(tmp_path, prepared, extra={"trainig": {"epochs": 2}})
    return ["dmri", "train", str(path), "--out", str(tmp_path / "out")], path, r"unknown key 'trainig'"


def _case_config_unknown_platform(tmp_path, prepared, model):
    path = _config(tmp_path, prepared, data={"targets": ["siemens_trio"]})
    return (
        ["dmri", "train", str(path), "--out", str(tmp_path / "out")],
        prepared / "dataset.yaml",
        "unknown platform 'siemens_trio'",
    )


def _case_config_unknown_method(tmp_path, prepared, model):
    path = _config(tmp_path, prepared, model={"method": "unet"})
    return ["dmri", "train", str(path), "--out", str(tmp_path / "out")], path, "'unet' is not a dMRI method"


def _case_config_key_of_another_method(tmp_path, prepared, model):
    path = _config(tmp_path, prepared, model={"method": "rish", "revnet_blocks": 2})
    return (
        ["dmri", "train", str(path), "--out", str(tmp_path / "out")],
        path,
        "'revnet_blocks' does not apply to method rish",
    )


def _case_train_output_exists(tmp_path, prepared, model):
    path = _config(tmp_path, prepared)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    return ["dmri", "train", str(path), "--out", str(tmp_path / "out")], tmp_path / "out", "pass --force"


def _case_truncated_checkpoint(tmp_path, prepared, model):
    run = tmp_path / "out"
    shutil.copytree(model, run)
    (run / "checkpoints" / "last.pt").write_bytes((model / "checkpoints" / "last.pt").read_bytes()[:500])
    return ["dmri", "train", "--resume", "--out", str(run)], run / "checkpoints" / "last.pt", "truncated or corrupt"


def _case_newer_model(tmp_path, prepared, model):
    run = tmp_path / "newer"
    shutil.copytree(model, run)
    state = torch.load(run / "model.pt", weights_only=True)
    state["format_version"] = 99
    torch.save(state, run / "model.pt")
    return _apply_args(run, _scan(prepared, tmp_path), tmp_path / "out"), run / "model.pt", "newer mrharmony"


def _case_apply_output_exists(tmp_path, prepared, model):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.nii.gz").write_bytes(b"mine")
    return _apply_args(model, _scan(prepared, tmp_path), tmp_path / "out"), tmp_path / "out", "pass --force"


def _case_apply_unwritable(tmp_path, prepared, model):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    return _apply_args(model, _scan(prepared, tmp_path), blocker / "out"), blocker / "out", "cannot be created"


def _case_apply_3d(tmp_path, prepared, model):
    scan = _scan(prepared, tmp_path)
    _rewrite(scan / "dwi.nii.gz", lambda d: d[..., 0])
    return _apply_args(model, scan, tmp_path / "out"), scan / "dwi.nii.gz", "is 3D .* must be 4D"


def _case_apply_mask_shape(tmp_path, prepared, model):
    scan = _scan(prepared, tmp_path)
    _rewrite(scan / "mask.nii.gz", lambda d: d[:-1])
    return _apply_args(model, scan, tmp_path / "out"), scan / "mask.nii.gz", "has shape"


def _case_apply_bval_count(tmp_path, prepared, model):
    scan = _scan(prepared, tmp_path)
    vals = (scan / "dwi.bval").read_text().split()
    (scan / "dwi.bval").write_text(" ".join(vals[:-1]) + "\n")
    return _apply_args(model, scan, tmp_path / "out"), scan / "dwi.bval", "b-values but the DWI series has"


def _case_apply_nan(tmp_path, prepared, model):
    scan = _scan(prepared, tmp_path)

    def nan(d):
        d = d.astype(np.float32)
        d[3, 3, 3, 2] = np.nan
        return d

    _rewrite(scan / "dwi.nii.gz", nan)
    return _apply_args(model, scan, tmp_path / "out"), scan / "dwi.nii.gz", "NaN or infinite"


def _case_apply_empty_mask(tmp_path, prepared, model):
    scan = _scan(prepared, tmp_path)
    _rewrite(scan / "mask.nii.gz", np.zeros_like)
    return _apply_args(model, scan, tmp_path / "out"), scan / "mask.nii.gz", "is empty"


def _case_apply_unknown_target(tmp_path, prepared, model):
    args = _apply_args(model, _scan(prepared, tmp_path), tmp_path / "out") + ["--target", "siemens_trio"]
    return args, model, "not 'siemens_trio'"


def _case_too_few_directions(tmp_path, prepared, model):
    data = tmp_path / "data"
    shutil.copytree(prepared, data, ignore=shutil.ignore_patterns("derivatives"))
    return ["dmri", "prepare", str(data), "--sh-order", "10"], data / "sub-01" / "ge_st" / "dwi.bval", "directions"


def _case_not_coregistered(tmp_path, prepared, model):
    data = tmp_path / "data"
    shutil.copytree(prepared, data, ignore=shutil.ignore_patterns("derivatives"))
    mask = data / "sub-02" / "prisma_st" / "mask.nii.gz"

    def elsewhere(d):  # this scan's brain lies in a corner of its field of view only
        out = np.zeros_like(d)
        out[:4, :4] = 1
        return out

    _rewrite(mask, elsewhere)
    return ["dmri", "prepare", str(data)], data / "sub-02" / "prisma_st" / "dwi.nii.gz", "not co-registered"


def _case_model_not_a_model(tmp_path, prepared, model):
    run = tmp_path / "empty-run"
    run.mkdir()
    return _apply_args(run, _scan(prepared, tmp_path), tmp_path / "out"), run, "not a saved mrharmony model"


def _case_describe_unknown_input(tmp_path, prepared, model):
    return (
        ["describe", str(prepared), "--layout", "mushac", "--input", "ge/st", "--out", str(tmp_path / "out")],
        prepared,
        "holds no <subject>/<scanner>/<protocol>",
    )


def _structural(tmp_path, *, image=None, target=None, mask=None):
    """A HAIL model with weights made here, and 3D images: arguments of 'structural apply'."""
    from mrharmony.engine.checkpoint import save_model
    from mrharmony.structural.hail import HAIL

    torch.manual_seed(0)
    save_model(
        tmp_path / "hail.pt",
        HAIL((4, 8, 16), skips=True),
        {"model": {"method": "hail", "widths": [4, 8, 16], "skips": True}, "training_sites": ["a", "b"]},
    )
    rng = np.random.default_rng(0)
    brain = np.zeros((12, 12, 12), np.float32)
    brain[2:10, 2:10, 2:10] = 1
    files = {}
    for name, data in (("input", image), ("target", target), ("mask", mask)):
        arr = data if data is not None else (brain if name == "mask" else brain * (1 + rng.random(brain.shape)))
        files[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), np.eye(4)), files[name])
    args = [
        "structural",
        "apply",
        str(tmp_path / "hail.pt"),
        "--input",
        str(files["input"]),
        "--target-image",
        str(files["target"]),
        "--mask",
        str(files["mask"]),
        "--out",
        str(tmp_path / "out"),
    ]
    return args, files


def _case_structural_apply_4d(tmp_path, prepared, model):
    args, files = _structural(tmp_path, image=np.ones((12, 12, 12, 3)))
    return args, files["input"], "is 4D; a structural image must be 3D"


def _case_structural_apply_nan_target(tmp_path, prepared, model):
    bad = np.ones((10, 10, 10))
    bad[3, 3, 3] = np.nan
    args, files = _structural(tmp_path, target=bad)
    return args, files["target"], "has NaN or infinite values"


def _case_structural_apply_mask_shape(tmp_path, prepared, model):
    args, files = _structural(tmp_path, mask=np.ones((12, 12, 11)))
    return args, files["mask"], r"has shape \(12, 12, 11\) but the input image has \(12, 12, 12\)"


def _case_structural_apply_empty_mask(tmp_path, prepared, model):
    args, files = _structural(tmp_path, mask=np.zeros((12, 12, 12)))
    return args, files["mask"], "gives an empty brain mask"


def _case_structural_apply_dmri_model(tmp_path, prepared, model):
    args, _ = _structural(tmp_path)
    args[2] = str(model)
    return args, model / "model.pt", "is a diqt model, not a HAIL or IHF-Harmony model"


def _metrics_images(tmp_path, size=12):
    """Two different 3D images for 'structural metrics' (no model needed)."""
    rng = np.random.default_rng(1)
    files = {}
    for name in ("a", "b"):
        files[name] = tmp_path / f"{name}.nii.gz"
        data = np.zeros((size,) * 3, np.float32)
        data[2:-2, 2:-2, 2:-2] = 1 + rng.random((size - 4,) * 3)
        nib.save(nib.Nifti1Image(data, np.eye(4)), files[name])
    return files["a"], files["b"]


def _case_structural_metrics_same_input_and_target(tmp_path, prepared, model):
    a, _ = _metrics_images(tmp_path)
    args = [
        "structural",
        "metrics",
        "--input",
        str(a),
        "--prediction",
        str(a),
        "--target",
        str(a),
        "--json",
        str(tmp_path / "m.json"),
    ]
    return args, a, r"has the same intensity distribution .* as the input image .*nWD is undefined"


def _case_structural_metrics_too_small_for_ssim(tmp_path, prepared, model):
    a, b = _metrics_images(tmp_path, size=8)
    args = [
        "structural",
        "metrics",
        "--input",
        str(a),
        "--prediction",
        str(a),
        "--target",
        str(b),
        "--truth",
        str(b),
        "--json",
        str(tmp_path / "m.json"),
    ]
    return args, b, r"has shape \(8, 8, 8\); SSIM needs at least 11 voxels"


def _case_structural_metrics_flat_prediction(tmp_path, prepared, model):
    a, b = _metrics_images(tmp_path)
    flat = tmp_path / "flat.nii.gz"
    data = np.zeros((12,) * 3, np.float32)
    data[2:-2, 2:-2, 2:-2] = 1.0
    nib.save(nib.Nifti1Image(data, np.eye(4)), flat)
    args = [
        "structural",
        "metrics",
        "--input",
        str(a),
        "--prediction",
        str(flat),
        "--target",
        str(b),
        "--mask",
        str(flat),
        "--target-mask",
        str(flat),
        "--json",
        str(tmp_path / "m.json"),
    ]
    return args, flat, "has fewer than three intensity levels inside the brain mask"


def _case_structural_apply_out_is_a_file(tmp_path, prepared, model):
    args, _ = _structural(tmp_path)
    (tmp_path / "out.png").write_bytes(b"a picture")
    args[-1] = str(tmp_path / "out.png")
    return args, tmp_path / "out.png", "exists and is not a directory"


def _case_structural_train_unseen_site(tmp_path, prepared, model):
    from mrharmony.simulate.structural import simulate_structural

    data = simulate_structural(tmp_path / "st", preset="tiny", n_subjects=3, rescans=False, quiet=True)
    cfg = tmp_path / "hail.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "preset": "test",
                "data": {"dataset": str(data), "sites": ["siteA", "siteE"], "n_test_subjects": 1},
                "model": {"method": "hail"},
            }
        )
    )
    return ["structural", "train", str(cfg), "--out", str(tmp_path / "run")], cfg, "holds out of training"


def _case_apply_other_shell(tmp_path, prepared, model):
    scan = _scan(prepared, tmp_path)
    bval = scan / "dwi.bval"
    bval.write_text(bval.read_text().replace("1200", "2000"))
    return (
        _apply_args(model, scan, tmp_path / "out"),
        bval,
        r"has its shell at b=2000 s/mm\^2, but the model learned from b=1200 s/mm\^2 scans \(ge_st; tolerance 100\); "
        r"pass --allow-protocol-mismatch",
    )


def _case_apply_extra_shell(tmp_path, prepared, model):
    scan = _scan(prepared, tmp_path)
    bval = scan / "dwi.bval"
    values = bval.read_text().split()
    dw = [i for i, v in enumerate(values) if float(v) > 50]
    for i in dw[::2]:  # half the directions become a second shell
        values[i] = "3000"
    bval.write_text(" ".join(values) + "\n")
    return (
        _apply_args(model, scan, tmp_path / "out"),
        bval,
        r"has a b=3000 s/mm\^2 shell the model did not learn from \(its shells: b=1200 s/mm\^2; harmonized anyway, "
        r"that shell is left out\); pass --allow-protocol-mismatch",
    )


def _case_apply_other_voxel_size(tmp_path, prepared, model):
    scan = _scan(prepared, tmp_path)
    img = nib.load(scan / "dwi.nii.gz")
    affine = img.affine.copy()
    affine[:3, :3] *= 0.5  # 1.2 mm voxels
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), affine), scan / "dwi.nii.gz")
    return (
        _apply_args(model, scan, tmp_path / "out"),
        scan / "dwi.nii.gz",
        r"has 1.2 x 1.2 x 1.2 mm voxels, but the model learned from 2.4 x 2.4 x 2.4 mm scans",
    )


CASES = {name.removeprefix("_case_"): fn for name, fn in dict(globals()).items() if name.startswith("_case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_across_commands(case, tmp_path, tiny_prepared, model, capsys):
    args, named, pattern = CASES[case](tmp_path, tiny_prepared, model)
    before = sorted(p for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(args) == 2
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip() and "%|" not in ln and "it/s]" not in ln]
    assert out == "" and len(lines) == 1, err
    msg = lines[0]
    assert str(named) in msg and re.search(pattern, msg) and msg.endswith("."), msg
    # nothing half-written: no new files or folders anywhere under the case's folder
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_the_suite_is_complete():
    from tests.data.test_validate import CASES as DATASET_CASES

    assert len(CASES) + len(DATASET_CASES) >= 20


def test_apply_with_a_protocol_mismatch_allowed_records_it_in_every_sidecar(tmp_path, tiny_prepared, model):
    import json

    scan = _scan(tiny_prepared, tmp_path)
    bval = scan / "dwi.bval"
    bval.write_text(bval.read_text().replace("1200", "2000"))
    assert main(_apply_args(model, scan, tmp_path / "out") + ["--allow-protocol-mismatch", "--quiet"]) == 0
    sidecars = sorted((tmp_path / "out").glob("*_space-*.json"))
    assert len(sidecars) >= 5  # SH, signal, FA, MD, DEC FA
    for side in sidecars:
        found = json.loads(side.read_text())["ProtocolMismatch"]
        assert found == [
            "dwi.bval has its shell at b=2000 s/mm^2, but the model learned from b=1200 s/mm^2 scans "
            "(ge_st; tolerance 100)"
        ], side
