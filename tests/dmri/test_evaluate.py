import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from mrharmony.cli import main
from mrharmony.dmri.evaluate import evaluate
from mrharmony.dmri.training import train
from mrharmony.errors import InputError
from mrharmony.registration import finer_affine
from mrharmony.stats import paired_tests


def test_paired_tests_and_bonferroni():
    rng = np.random.default_rng(0)
    a = rng.random(200)
    b = a + 0.05 + 0.01 * rng.standard_normal(200)  # b is worse on almost every patch
    c = a.copy()
    rows = {(r["a"], r["b"]): r for r in paired_tests({"a": a, "b": b, "c": c}, n_comparisons=6)}
    assert rows[("a", "b")]["p"] < 1e-10 and rows[("a", "b")]["median_difference"] < 0
    assert rows[("a", "b")]["p_bonferroni"] == pytest.approx(min(1, rows[("a", "b")]["p"] * 6))
    assert rows[("a", "c")]["p"] == 1.0  # identical errors: no difference
    from scipy.stats import wilcoxon

    assert rows[("b", "c")]["p"] == pytest.approx(wilcoxon(b, c).pvalue)


def test_finer_affine_shares_the_corner():
    a = np.diag([2.4, 2.4, 2.4, 1.0])
    a[:3, 3] = [-10, 5, 7]
    f = finer_affine(a, 2)
    np.testing.assert_allclose(f @ [-0.5, -0.5, -0.5, 1], a @ [-0.5, -0.5, -0.5, 1])
    np.testing.assert_allclose(np.diag(f)[:3], 1.2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_prepared):
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for method, targets in (("diqt", ["prisma_st"]), ("diqt", ["connectom_sa"]), ("hned", None)):
        cfg = {
            "preset": "test",
            "data": {"dataset": str(tiny_prepared), "split": "subject", "test_subjects": ["sub-03"]},
            "model": {"method": method},
            "training": {"epochs": 1},
        }
        if targets:
            cfg["data"]["targets"] = targets
        name = f"{method}-{'-'.join(targets or ['all'])}"
        (base / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        out[name] = train(base / f"{name}.yaml", base / name, quiet=True)
    return out


def test_evaluate_scores_every_method_on_the_same_held_out_patches(runs, tmp_path, capsys):
    ev = evaluate([runs["diqt-prisma_st"], runs["diqt-connectom_sa"], runs["hned-all"]], max_patches=200, quiet=True)
    assert ev.split == "subject" and ev.test_subjects == ["sub-03"]
    assert ev.methods == ["diqt", "hned", "none"]
    assert set(ev.patch_errors["diqt"]) == {"prisma_st", "connectom_sa"}
    assert set(ev.patch_errors["hned"]) == {"prisma_st", "connectom_st", "connectom_sa"}
    for per in ev.patch_errors.values():
        for e in per.values():
            assert e.shape == (200,) and np.all(e >= 0)
    # the "none" row is the MSE between the input's raw coefficients and the target's, both on the
    # target platform's fixed scale (nothing standardized per scan)
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.loading import load_harmonizer

    ds = load_dataset(_dataset_of(runs["hned-all"]), check_data=False)
    fin, ft = load_features(ds, "sub-03", "ge_st"), load_features(ds, "sub-03", "prisma_st", normalized=False)
    st = load_harmonizer(runs["hned-all"]).reference["target_stats"]["prisma_st"]
    as_target = (fin.raw() - np.asarray(st["mean"])) / np.asarray(st["std"])
    truth = (ft.data - np.asarray(st["mean"])) / np.asarray(st["std"])
    voxel_mse = float(((as_target - truth)[fin.mask] ** 2).mean())
    assert 0.3 * voxel_mse < ev.patch_errors["none"]["prisma_st"].mean() < 3 * voxel_mse
    # whole-volume errors on the held-out subject
    rows = [r for r in ev.volume_errors if r["method"] == "diqt"]
    assert {r["target"] for r in rows} == {"prisma_st", "connectom_sa"}
    assert all(0 <= r["fa_mae"] < 1 and r["md_mae"] > 0 for r in rows)
    # the floors through the same path: the oracle (noiseless target: one scan's noise) and the
    # rescan (a second session: two scans' noise, about twice the oracle's SH error, and a small
    # misregistration); in FA and MD both below no harmonization. (In SH MSE a smooth prediction,
    # such as the upsampled 2.4 mm input for the 1.2 mm target, can beat a noisy rescan. At the
    # 1.2 mm protocol's SNR of 5, the noise floor biases FA and MD alike in every noisy scan:
    # there the noiseless truth is further from the scan than a rescan or the noisy input is.)
    rows = {(r["method"], r["target"]): r for r in ev.volume_errors}
    for t in ("prisma_st", "connectom_st", "connectom_sa"):
        oracle, rescan, none = rows[("oracle", t)], rows[("rescan", t)], rows[("none", t)]
        assert 1.5 < rescan["sh_rel"] / oracle["sh_rel"] < 2.5, t
        assert 1.5 < rescan["sh_mse_l4"] / oracle["sh_mse_l4"] < 2.5, t  # per order too
        for k in ("fa_mae", "md_mae"):
            if t != "connectom_sa":
                assert 0 < oracle[k] < rescan[k] < none[k], (t, k)
            else:
                assert oracle[k] > rescan[k] > 0, (t, k)
        # against the noiseless target the oracle scores 0, the rescan its own noise
        assert oracle["sh_rel_noiseless"] == 0 and oracle["fa_mae_noiseless"] == 0
        # regional means in the named white-matter regions, and each person's white-matter means
        assert oracle["fa_region_mae_noiseless"] == 0 and oracle["md_region_mae_noiseless"] == 0
        assert none["fa_region_mae_noiseless"] > 0 and rescan["md_region_mae"] > 0
        assert oracle["fa_wm"] == oracle["fa_wm_truth"] and 0.2 < none["fa_wm_truth"] < 0.8
        assert rescan["fa_mae_noiseless"] > 0
    # FA and MD on a seeded sample of the brain: the same voxels for every row, close to the whole volume
    sampled = evaluate([runs["diqt-prisma_st"]], max_patches=50, volume_voxels=300, quiet=True)
    part = {(r["method"], r["target"]): r for r in sampled.volume_errors}
    assert sampled.summary()["volume_voxels"] == 300
    for key in (("diqt", "prisma_st"), ("none", "prisma_st"), ("rescan", "prisma_st")):
        assert part[key]["fa_mae"] == pytest.approx(rows[key]["fa_mae"], rel=0.2), key
        assert part[key]["sh_rel"] == rows[key]["sh_rel"]  # SH errors stay whole-volume
    assert part[("oracle", "prisma_st")]["fa_mae_noiseless"] == 0
    import csv
    import io

    from mrharmony.dmri.tables import csv_text, markdown, rescan_ratios

    # rows.csv: one row per method, subject and target, the same numbers
    written = list(csv.DictReader(io.StringIO(csv_text(sampled))))
    assert len(written) == len(sampled.volume_errors) and {r["subject"] for r in written} == set(sampled.test_subjects)
    assert float(written[0]["fa_mae"]) == pytest.approx(sampled.volume_errors[0]["fa_mae"])

    ratios = {(r["method"], r["target"]): r for r in rescan_ratios(ev)}
    assert ratios[("none", "prisma_st")]["fa_mae"] == pytest.approx(
        rows[("none", "prisma_st")]["fa_mae"] / rows[("rescan", "prisma_st")]["fa_mae"]
    )
    assert ratios[("none", "prisma_st")]["sh_rel"] > 1 and ("oracle", "prisma_st") not in ratios
    assert "as a multiple of the rescan floor" in markdown(ev)
    assert "| FA MAE, noiseless |" in markdown(ev) and "seeded brain voxels" in markdown(sampled)
    # the command line writes the three formats
    assert (
        main(
            [
                "dmri",
                "evaluate",
                str(runs["diqt-prisma_st"]),
                str(runs["hned-all"]),
                "--max-patches",
                "100",
                "--out",
                str(tmp_path / "ev"),
                "--quiet",
                "--no-volume-metrics",
            ]
        )
        == 0
    )
    text = (tmp_path / "ev" / "table.md").read_text()
    assert "by held-out subject (sub-03" in text and "| hned |" in text and "Bonferroni" in text
    data = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert data["n_patches"] == 100 and "prisma_st" in data["patch_mse"]["diqt"]
    assert (tmp_path / "ev" / "rows.csv").read_text().splitlines() == [
        "method,subject,target"
    ]  # no volume errors asked for


def test_a_perfect_prediction_scores_zero_through_the_evaluation_path(runs):
    """The target scan's own coefficients as a method's prediction: SH, FA and MD errors 0 against
    the scan, and the noiseless target's: 0 against the noiseless truth, through the code the
    evaluation runs (volume_errors and TargetReference), for a 1x and a 2x target. A prediction
    standardized per scan (the MSP paper's normalization: the right shape with the training
    subjects' average scale) scores clearly above 0: the raw truth sees what it erases."""
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import TargetReference, volume_errors
    from mrharmony.dmri.features.normalization import ChannelStats
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.harmonizer import Harmonizer
    from mrharmony.dmri.loading import load_harmonizer

    ds = load_dataset(_dataset_of(runs["hned-all"]), check_data=False)
    trained = load_harmonizer(runs["hned-all"])
    reference = TargetReference(ds, "sub-03")

    class Returns(Harmonizer):
        method = "returns"

        def __init__(self, kind, **kwargs):
            super().__init__(**kwargs)
            self.kind = kind

        def predict(self, scan):
            out = {}
            for t in self.targets:
                scale = ChannelStats.from_dict(self.reference["target_stats"][t])
                raw = reference.features("noiseless" if self.kind != "scan" else "scan", t)
                mask = reference.scan(t)[0].mask
                own = ChannelStats.fit(raw, mask)
                # per-scan standardization, mapped back with the platform's average scale
                out[t] = own.apply(raw, mask) if self.kind == "standardized" else scale.apply(raw, mask)
            return out

        def save(self, directory):
            raise NotImplementedError

    f = load_features(ds, "sub-03", ds.input_platform.name)
    scores = {}
    for kind in ("scan", "noiseless", "standardized"):
        h = Returns(kind, targets=trained.targets, ratios=trained.ratios, reference=trained.reference)
        rows = volume_errors(h, kind, f, h.predict(f), reference)
        assert {r["target"] for r in rows} == {"prisma_st", "connectom_st", "connectom_sa"}
        scores[kind] = rows
    for r in scores["scan"]:
        assert r["sh_rel"] < 1e-10 and r["fa_mae"] < 1e-6 and r["md_mae"] < 1e-9, r
    for r in scores["noiseless"]:
        assert r["sh_rel_noiseless"] < 1e-10 and r["fa_mae_noiseless"] < 1e-6 and r["md_mae_noiseless"] < 1e-9, r
    for r, clean in zip(scores["standardized"], scores["noiseless"]):
        assert r["sh_mse_l0_noiseless"] > 1e-6, r
        assert r["md_mae_noiseless"] > 1e-6 and r["md_mae_noiseless"] > 3 * clean["md_mae_noiseless"], r


def _dataset_of(run):
    return (run / yaml.safe_load((run / "config.yaml").read_text())["data"]["dataset"]).resolve()


def test_runs_on_other_splits_cannot_share_a_table(runs, tmp_path, tiny_prepared):
    cfg = {
        "preset": "test",
        "data": {"dataset": str(tiny_prepared), "targets": ["prisma_st"]},
        "model": {"method": "diqt"},
        "training": {"epochs": 1},
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    other = train(tmp_path / "p.yaml", tmp_path / "patch-split", quiet=True)
    with pytest.raises(InputError, match=r"other data settings .*\(split, test_subjects\)"):
        evaluate([runs["diqt-prisma_st"], other], quiet=True)


def test_apply_writes_float32_derivatives_for_every_target(runs, tiny_prepared, tmp_path, capsys):
    scan = tiny_prepared / "sub-03" / "ge_st"
    out = tmp_path / "out"
    args = [
        "dmri",
        "apply",
        str(runs["hned-all"]),
        "--dwi",
        str(scan / "dwi.nii.gz"),
        "--bval",
        str(scan / "dwi.bval"),
        "--bvec",
        str(scan / "dwi.bvec"),
        "--mask",
        str(scan / "mask.nii.gz"),
        "--out",
        str(out),
        "--prefix",
        "sub-03",
        "--quiet",
    ]
    assert main(args) == 0
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "mrharmony"
    src = nib.load(scan / "dwi.nii.gz")
    for t, r in (("prismast", 1), ("connectomsa", 2)):
        sh = nib.load(out / f"sub-03_space-{t}_model-sh_desc-harmonized_dwimap.nii.gz")
        assert sh.get_data_dtype() == np.float32 and sh.shape == tuple(r * n for n in src.shape[:3]) + (28,)
        np.testing.assert_allclose(sh.affine @ [-0.5, -0.5, -0.5, 1], src.affine @ [-0.5, -0.5, -0.5, 1])
        dwi = nib.load(out / f"sub-03_space-{t}_desc-harmonized_dwi.nii.gz")
        bvals = np.loadtxt(out / f"sub-03_space-{t}_desc-harmonized_dwi.bval")
        assert dwi.shape[3] == len(bvals) and bvals[0] == 0
        fa = nib.load(out / f"sub-03_space-{t}_model-tensor_param-fa_dwimap.nii.gz").get_fdata()
        assert 0 < fa.max() <= 1
        assert nib.load(out / f"sub-03_space-{t}_model-tensor_param-decfa_dwimap.nii.gz").shape[-1] == 3
    # an existing output is kept without --force; a bad input leaves nothing behind
    assert main(args) == 2
    assert "pass --force" in capsys.readouterr().err
    bad = list(args)
    bad[bad.index("--bval") + 1] = str(tiny_prepared / "sub-03" / "connectom_sa" / "dwi.bval")
    bad[bad.index(str(out))] = str(tmp_path / "out2")
    assert main(bad) == 2
    assert "b-values but the DWI series has" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
    bad = list(args)
    bad[bad.index(str(out))] = str(tmp_path / "out3")
    assert main(bad + ["--target", "siemens_trio"]) == 2
    assert "not 'siemens_trio'" in capsys.readouterr().err
