"""Multi-shell diffusion through the whole dMRI path on tiny data: the simulator's multi-shell
platforms, features per shell, a network and RISH trained on them, ``apply`` with the kurtosis maps,
the protocol guard on every shell, and the evaluation's kurtosis and per-shell RISH errors."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml

from mrharmony.cli import main

SHELLS = [1200.0, 3000.0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.simulate import simulate

    root = simulate(
        tmp_path_factory.mktemp("ms") / "tiny", preset="tiny", seed=3, platforms_file="multishell", quiet=True
    )
    prepare(root, quiet=True)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset):
    from mrharmony.dmri.training import train

    out = tmp_path_factory.mktemp("ms-runs")
    models = {"rish": {"method": "rish"}, "diqt_skip": {"method": "diqt", "skip": True}}
    runs = {}
    for name, model in models.items():
        cfg = {
            "preset": "test",
            "data": {
                "dataset": str(dataset),
                "targets": ["prisma_ms"],
                "split": "subject",
                "test_subjects": ["sub-03"],
            },
            "model": model,
            "training": {"epochs": 1, "patches_per_epoch": 100},
        }
        (out / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        runs[name] = train(out / f"{name}.yaml", out / name, quiet=True)
    return runs


def _apply(run, scan, out, *extra):
    return main(
        [
            "dmri",
            "apply",
            str(run),
            *("--dwi", str(scan / "dwi.nii.gz"), "--bval", str(scan / "dwi.bval"), "--bvec", str(scan / "dwi.bvec")),
            *("--mask", str(scan / "mask.nii.gz"), "--out", str(out), "--quiet", *extra),
        ]
    )


def test_features_hold_every_shell_in_turn(dataset):
    from mrharmony.data import load_dataset

    ds = load_dataset(dataset, check_data=False)
    bvals, _ = ds.scan("sub-01", "prisma_ms").gradients()
    assert sorted(set(bvals.tolist())) == [0.0, *SHELLS] and (bvals == 3000).sum() == 60
    side = next((dataset / "derivatives").rglob("sub-01_model-sh_desc-b0norm_dwimap.json"))
    meta = json.loads(side.read_text())
    assert meta["shells"] == SHELLS and meta["n_coefficients"] == 56


def test_apply_writes_every_shell_and_the_kurtosis_maps(runs, dataset, tmp_path):
    scan = dataset / "sub-03" / "ge_ms"
    for name, run in runs.items():
        out = tmp_path / name
        assert _apply(run, scan, out) == 0
        bvals = np.loadtxt(next(out.glob("*_desc-harmonized_dwi.bval")))
        assert (bvals == 0).sum() == 1 and (bvals == 1200).sum() == 60 and (bvals == 3000).sum() == 60
        signal = nib.load(next(out.glob("*_desc-harmonized_dwi.nii.gz"))).get_fdata()
        brain = nib.load(next(out.glob("*param-md_dwimap.nii.gz"))).get_fdata() > 0
        # the b=3000 signal decays below the b=1200 one in the brain
        assert signal[brain][:, bvals == 3000].mean() < 0.8 * signal[brain][:, bvals == 1200].mean()
        for param in ("mk", "ak", "rk"):
            k = nib.load(next(out.glob(f"*_model-dki_param-{param}_dwimap.nii.gz"))).get_fdata()
            assert 0.2 < k[brain].mean() < 1.5, (name, param)
        side = json.loads(next(out.glob("*_model-dki_param-mk_dwimap.json")).read_text())
        assert "mean kurtosis" in side["Description"] and side["SphericalHarmonics"]["shells"] == SHELLS


def test_a_scan_missing_a_shell_is_refused(runs, dataset, tmp_path, capsys):
    scan = tmp_path / "scan"
    shutil.copytree(dataset / "sub-03" / "ge_ms", scan)
    img = nib.load(scan / "dwi.nii.gz")
    bvals = np.loadtxt(scan / "dwi.bval")
    keep = bvals < 2000
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[..., keep], img.affine), scan / "dwi.nii.gz")
    np.savetxt(scan / "dwi.bval", bvals[keep][None], fmt="%g")
    np.savetxt(scan / "dwi.bvec", np.loadtxt(scan / "dwi.bvec")[:, keep], fmt="%.6f")
    capsys.readouterr()
    for extra in ((), ("--allow-protocol-mismatch",)):  # no tolerance makes up for a missing shell
        assert _apply(runs["rish"], scan, tmp_path / "out", *extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith("dwi.bval: has 1 shell(s) (b=1200 s/mm^2), but the model needs b=1200, b=3000 s/mm^2."), err
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["rish", "diqt_skip"])
def test_a_change_of_the_person_survives_on_every_shell(runs, dataset, method):
    from mrharmony.data import load_dataset
    from mrharmony.dmri.changes import kept_changes
    from mrharmony.dmri.loading import load_harmonizer

    ds = load_dataset(dataset, check_data=False)
    scan = ds.scan("sub-03", "ge_ms")
    dwi, affine = scan.load_dwi()
    bvals, bvecs = scan.gradients()
    h = load_harmonizer(runs[method])
    for kind, res in kept_changes(
        h, dwi.astype(np.float32), bvals, bvecs, scan.load_mask(), affine, "prisma_ms"
    ).items():
        assert abs(res["given"]) > 0.04, kind
        assert abs(res["kept"] - res["given"]) <= 0.10 * abs(res["given"]), (method, kind, res)


def test_evaluation_scores_kurtosis_and_each_shell(runs):
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import markdown

    ev = evaluate([str(r) for r in runs.values()], volume_voxels=400, max_patches=500, quiet=True)
    assert "| mk mae | rish rel b1200 | rish rel b3000 | mk mae noiseless |" in markdown(ev)
    rows = {r["method"]: r for r in ev.volume_errors}
    assert {"rish", "diqt", "none", "rescan", "oracle"} <= set(rows)
    for name, row in rows.items():
        for key in ("mk_mae", "rish_rel_b1200", "rish_rel_b3000", "mk_mae_noiseless"):
            assert row[key] is not None and np.isfinite(row[key]), (name, key)
    assert rows["oracle"]["mk_mae_noiseless"] == 0 and rows["oracle"]["rish_rel_b3000_noiseless"] == 0
    # the GE's weak gradients and long TE: unharmonized kurtosis and RISH features are far off; RISH mends them
    assert rows["rish"]["mk_mae_noiseless"] < 0.7 * rows["none"]["mk_mae_noiseless"]
    assert rows["rish"]["rish_rel_b3000_noiseless"] < 0.7 * rows["none"]["rish_rel_b3000_noiseless"]


@pytest.mark.combat
def test_combat_harmonizes_mean_kurtosis_of_a_multishell_target(dataset, tmp_path):
    pytest.importorskip("neuroHarmonize")
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.training import train

    cfg = {
        "preset": "test",
        "data": {"dataset": str(dataset), "targets": ["prisma_ms"], "split": "subject", "test_subjects": ["sub-03"]},
        # the tiny subjects share the MNI box and are too small a block to register: no registration
        "model": {"method": "combat", "registration": "none"},
    }
    (tmp_path / "combat.yaml").write_text(yaml.safe_dump(cfg))
    run = train(tmp_path / "combat.yaml", tmp_path / "combat", quiet=True)
    out = tmp_path / "out"
    assert _apply(run, dataset / "sub-03" / "ge_ms", out) == 0
    mk = nib.load(next(out.glob("*_model-dki_param-mk_dwimap.nii.gz"))).get_fdata()
    assert 0.2 < mk[mk > 0].mean() < 1.5
    assert not list(out.glob("*param-ak_dwimap.nii.gz"))  # ComBat harmonizes MK, not the signal
    rows = {r["method"]: r for r in evaluate([str(run)], volume_voxels=800, max_patches=2000, quiet=True).volume_errors}
    assert rows["combat"]["mk_mae_noiseless"] < 0.7 * rows["none"]["mk_mae_noiseless"]
    assert rows["combat"]["rish_rel_b1200"] is None  # no SH, no RISH features
