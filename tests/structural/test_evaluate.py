"""Evaluating ImageHarmonizers on a structural dataset's held-out subjects (mrharmony.structural.evaluate)."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from mrharmony.engine.checkpoint import save_model
from mrharmony.errors import InputError
from mrharmony.structural.evaluate import (
    compare_harmonizers,
    evaluate_structural,
    image_harmonizers,
)
from mrharmony.structural.hail import HAIL, HAILHarmonizer, harmonize
from mrharmony.structural.ihf import IHFHarmonizer
from mrharmony.structural.ihf.squeeze_flow import SqueezeIHF
from mrharmony.structural.intensity import NyulHarmonizer
from mrharmony.structural.metrics import METRICS, nwd

SITES = [  # three sites, T1w and T2w only: small and quick
    {
        "name": "siteA",
        "role": "train",
        "t1w": [0.25, 0.62, 1.0],
        "t2w": [1.0, 0.55, 0.38],
        "scale": 900.0,
        "snr": 30.0,
        "blur_fwhm_mm": [1.0, 1.0, 1.0],
        "bias": 0.15,
        "ringing": 1.0,
        "ghosting": 0.0,
    },
    {
        "name": "siteB",
        "role": "train",
        "t1w": [0.15, 0.5, 1.0],
        "t2w": [1.0, 0.48, 0.3],
        "scale": 2400.0,
        "snr": 22.0,
        "blur_fwhm_mm": [1.2, 1.2, 2.0],
        "bias": 0.3,
        "ringing": 0.8,
        "ghosting": 0.0,
    },
    {
        "name": "siteD",
        "role": "unseen",
        "t1w": [0.2, 0.56, 1.0],
        "t2w": [1.0, 0.52, 0.33],
        "scale": 1500.0,
        "snr": 25.0,
        "blur_fwhm_mm": [1.0, 1.0, 3.0],
        "bias": 0.35,
        "ringing": 0.7,
        "ghosting": 0.0,
    },
]
SPLIT = {"train": [], "validation": ["sub-01"], "test": ["sub-02"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A dataset of two subjects on three sites, and saved HAIL (T1w) and IHF-Harmony models."""
    from mrharmony.simulate.structural import simulate_structural

    base = tmp_path_factory.mktemp("eval")
    (base / "sites.yaml").write_text(yaml.safe_dump({"sites": SITES}))
    data = simulate_structural(
        base / "st", preset="tiny", seed=5, n_subjects=2, sites_file=base / "sites.yaml", quiet=True
    )
    meta = {"training_sites": ["siteA", "siteB"], "split": SPLIT, "mrharmony_version": "0.0.test"}
    torch.manual_seed(0)
    save_model(
        base / "run-hail" / "model.pt",
        HAIL((4, 8, 16), skips=True),
        {**meta, "model": {"method": "hail", "widths": [4, 8, 16], "skips": True}, "data": {"modalities": ["T1w"]}},
    )
    save_model(
        base / "run-ihf" / "model.pt",
        SqueezeIHF(dims=2),
        {
            **meta,
            "model": {
                "method": "ihf",
                "flow": "squeeze",
                "dims": 2,
                "levels": 2,
                "blocks": 3,
                "hidden": 32,
                "style_dim": 32,
            },
            "data": {"modalities": ["T1w", "T2w"]},
        },
    )
    return base, data


def test_baselines_alone_on_the_default_split(setup, tmp_path):
    base, data = setup
    ev = evaluate_structural(data, tmp_path / "out", methods=["none", "nyul"], quiet=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["evaluation.json", "rows.csv", "table.md"]
    # the first subject is the one-shot reference, the other the test subject; both modalities
    assert ev.info["test_subjects"] == ["sub-02"] and ev.info["one_shot_reference_subject"] == "sub-01"
    assert ev.info["modalities"] == ["T1w", "T2w"] and ev.info["training_sites"] == ["siteA", "siteB"]
    assert len(ev.rows) == 2 * 6 * 4  # modalities x ordered site pairs x (truth, rescan, none, nyul)
    # what a study measures: the truth agrees with itself, its second session nearly, as a floor
    truth = [r for r in ev.rows if r["method"] == "truth"]
    assert all(r["target_vd_gm"] == 0 and r["target_dice_wm"] == 1 and r["gm_ml"] > 0 for r in truth)
    assert all(np.isfinite(r["truth_vd_gm"]) for r in truth)  # the simulator's fractions are there
    rescan = [r for r in ev.rows if r["method"] == "rescan"]
    assert all(0.3 < r["target_dice_wm"] < 1 and 0.3 < r["ssim"] < 1 for r in rescan)
    assert {r["group"] for r in ev.rows if {r["input_site"], r["target_site"]} == {"siteA", "siteB"}} == {"seen"}
    assert {r["group"] for r in ev.rows if "siteD" in (r["input_site"], r["target_site"])} == {"unseen"}
    none = [r for r in ev.rows if r["method"] == "none"]
    assert all(r["nwd_ip"] == 0.0 and r["nwd_tp"] == 1.0 for r in none)  # left as it was
    # one row by hand: nyul from siteB to siteD (the reference subject's image) on T2w
    from mrharmony.data.structural import load_structural

    ds = load_structural(data)
    x, t = ds.load_image("sub-02", "siteB", "T2w")[0], ds.load_image("sub-01", "siteD", "T2w")[0]
    m, tm = ds.load_mask("sub-02"), ds.load_mask("sub-01")
    p = NyulHarmonizer().transform(x, target=t, mask=m, target_mask=tm).image
    row = next(
        r
        for r in ev.rows
        if r["method"] == "nyul"
        and r["modality"] == "T2w"
        and r["input_site"] == "siteB"
        and r["target_site"] == "siteD"
    )
    assert (row["nwd_ip"], row["nwd_tp"]) == nwd(x, p, t, input_mask=m, target_mask=tm)
    # the files hold what was computed
    with open(tmp_path / "out" / "rows.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(ev.rows) and float(rows[5]["ssim"]) == pytest.approx(ev.rows[5]["ssim"])
    summary = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert summary["methods"] == {"none": "none", "nyul": "nyul"} and summary["reference"] == "none"
    assert [t["method"] for t in summary["wilcoxon"]] == ["nyul"] * 8  # 2 modalities x 2 groups x 2 metrics
    assert "| T1w | seen | nyul | 1 | 2 |" in (tmp_path / "out" / "table.md").read_text()  # 1 subject, 2 pairs
    assert (
        "What a study measures, against the same person's image at the target site"
        in (tmp_path / "out" / "table.md").read_text()
    )
    with pytest.raises(InputError, match="already exists and is not empty"):
        evaluate_structural(data, tmp_path / "out", methods=["none"], quiet=True)


def test_trained_models_give_the_split_the_sites_and_the_modalities(setup):
    base, data = setup
    ev = compare_harmonizers(data, [base / "run-ihf", "none", base / "run-hail" / "model.pt"], quiet=True)
    assert ev.reference == "ihf_squeeze" and ev.info["test_subjects"] == ["sub-02"]
    methods = {(r["modality"], r["method"]) for r in ev.rows}
    # HAIL was trained on T1w only; a U-Net decoder (skips) is the variant hail_unet, not the paper's HAIL
    assert ("T1w", "hail_unet") in methods and ("T2w", "hail_unet") not in methods
    assert ("T2w", "ihf_squeeze") in methods
    assert ev.info["methods"]["hail_unet"] == str((base / "run-hail" / "model.pt").resolve())
    # the invertible method's rows hold the round trip; the summary and info report it
    ihf_rows = [r for r in ev.rows if r["method"] == "ihf_squeeze"]
    assert ihf_rows and all(r["roundtrip"] < 1e-5 for r in ihf_rows)
    assert not any("roundtrip" in r for r in ev.rows if r["method"] != "ihf_squeeze")
    assert ev.info["roundtrip_relative_error"]["max"] == max(r["roundtrip"] for r in ihf_rows)
    assert all("roundtrip" in s for s in ev.summary if s["method"] == "ihf_squeeze")
    # the HAIL rows are HAIL's numbers
    from mrharmony.data.structural import load_structural

    ds = load_structural(data)
    h = HAILHarmonizer.load(base / "run-hail")
    x, t = ds.load_image("sub-02", "siteD", "T1w")[0], ds.load_image("sub-01", "siteA", "T1w")[0]
    m, tm = ds.load_mask("sub-02"), ds.load_mask("sub-01")
    p = harmonize(h.net, x, m, t, tm)
    row = next(
        r for r in ev.rows if r["method"] == "hail_unet" and r["input_site"] == "siteD" and r["target_site"] == "siteA"
    )
    assert (row["nwd_ip"], row["nwd_tp"]) == nwd(x, p, t, input_mask=m, target_mask=tm)
    assert set(METRICS) <= set(row)
    # scored in two processes (a modality each): the same rows in the same order
    two = compare_harmonizers(data, [base / "run-ihf", "none", base / "run-hail" / "model.pt"], jobs=2, quiet=True)
    assert_same_rows(two.rows, ev.rows)


def test_names_and_refusals(setup, tmp_path):
    base, data = setup
    import shutil

    shutil.copytree(base / "run-hail", tmp_path / "run-b")
    hs = image_harmonizers([base / "run-hail", tmp_path / "run-b" / "model.pt", "zscore"])
    assert [h.name for h in hs] == ["hail_unet (run-hail)", "hail_unet (run-b)", "zscore"]
    with pytest.raises(InputError, match=r"two methods are named 'hail_unet \(run-hail\)'"):
        image_harmonizers([base / "run-hail", base / "run-hail" / "model.pt"])
    assert [h.name for h in image_harmonizers({"HAIL": base / "run-hail", "HM": "nyul"})] == ["HAIL", "HM"]
    with pytest.raises(InputError, match="is neither a saved model nor a baseline"):
        image_harmonizers(["gan"])
    with pytest.raises(InputError, match="two methods are named 'none'"):
        image_harmonizers(["none", "none"])
    other = torch.load(base / "run-hail" / "model.pt", weights_only=True)["meta"]
    save_model(
        tmp_path / "other" / "model.pt",
        HAIL((4, 8, 16), skips=True),
        {**other, "split": {"train": [], "validation": ["sub-02"], "test": ["sub-01"]}},
    )
    with pytest.raises(InputError, match="trained on another split or other sites"):
        compare_harmonizers(data, [base / "run-hail", tmp_path / "other"], quiet=True)
    with pytest.raises(InputError, match="has no modality 'FLAIR'"):
        compare_harmonizers(data, ["none"], modalities=["FLAIR"], quiet=True)
    with pytest.raises(InputError, match="reference method 'hail' is not among"):
        compare_harmonizers(data, ["none"], reference="hail", quiet=True)
    with pytest.raises(InputError, match=r"number of processes \(--jobs\) must be at least 1, not 0"):
        compare_harmonizers(data, ["none"], jobs=0, quiet=True)
    with pytest.raises(InputError, match="is also a test subject"):
        compare_harmonizers(data, ["none"], split={"test": ["sub-01"], "validation": ["sub-01"]}, quiet=True)
    with pytest.raises(InputError, match="has no subject 'sub-09'"):
        compare_harmonizers(data, ["none"], split={"test": ["sub-09"], "validation": ["sub-01"]}, quiet=True)
    assert not (tmp_path / "never").exists()
    with pytest.raises(InputError):
        evaluate_structural(data, tmp_path / "never", methods=["gan"], quiet=True)
    assert not (tmp_path / "never").exists()  # nothing half-written is left behind
    assert isinstance(hs[0], HAILHarmonizer) and not isinstance(hs[0], IHFHarmonizer)


def test_the_evaluate_command(setup, tmp_path, capsys):
    from mrharmony.cli import main

    base, data = setup
    out = tmp_path / "ev"
    args = [
        "structural",
        "evaluate",
        str(data),
        str(base / "run-hail"),
        "none",
        "--modality",
        "T1w",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| hail_unet |" in printed and (out / "table.md").read_text() in printed
    assert json.loads((out / "evaluation.json").read_text())["reference"] == "hail_unet"
    assert main(args) == 2  # an existing output needs --force
    assert f"{out}: already exists" in capsys.readouterr().err
    assert main(["structural", "evaluate", str(data), "gan", "--out", str(tmp_path / "no"), "--quiet"]) == 2
    assert "gan: is neither a saved model nor a baseline" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_chosen_site_pairs_only(setup, tmp_path, capsys):
    from mrharmony.cli import main

    base, data = setup
    ev = compare_harmonizers(data, ["none", "nyul"], modalities=["T1w"], pairs=[("siteA", "siteD")], quiet=True)
    assert {(r["input_site"], r["target_site"], r["group"]) for r in ev.rows} == {("siteA", "siteD", "unseen")}
    none = [r for r in ev.rows if r["method"] == "none"]
    assert none and all(r["dice_wm"] == 1.0 and r["ravd_wm"] == 0.0 for r in none)  # the input's own labels
    with pytest.raises(InputError, match="has no site 'siteZ', which a pair to score names"):
        compare_harmonizers(data, ["none"], pairs=[("siteA", "siteZ")], quiet=True)
    assert (
        main(
            [
                "structural",
                "evaluate",
                str(data),
                "none",
                "--out",
                str(tmp_path / "e"),
                "--pair",
                "siteA-siteB",
                "--quiet",
            ]
        )
        == 2
    )
    assert "--pair 'siteA-siteB' is not INPUT_SITE:TARGET_SITE." in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_several_processes_keep_the_subjects_order(tmp_path):
    """Two test subjects of one modality scored in two processes: the rows of one process, in its order."""
    from mrharmony.simulate.structural import simulate_structural

    (tmp_path / "sites.yaml").write_text(yaml.safe_dump({"sites": SITES}))
    data = simulate_structural(
        tmp_path / "st", preset="tiny", seed=7, n_subjects=3, sites_file=tmp_path / "sites.yaml", quiet=True
    )
    kw = {
        "modalities": ["T1w"],
        "split": {"test": ["sub-03", "sub-02"], "validation": ["sub-01"]},
        "pairs": [("siteA", "siteB"), ("siteD", "siteA")],
        "quiet": True,
    }
    one = compare_harmonizers(data, ["none", "nyul"], **kw)
    two = compare_harmonizers(data, ["none", "nyul"], jobs=2, **kw)
    assert [r["subject"] for r in one.rows][::4] == ["sub-03", "sub-03", "sub-02", "sub-02"]  # 4 rows a pair
    assert_same_rows(two.rows, one.rows)


def assert_same_rows(rows, expected):
    """The same rows in the same order: the same keys and labels, the values to float rounding (the
    processes' thread counts may split sums otherwise)."""
    assert [list(r) for r in rows] == [list(r) for r in expected]
    for a, b in zip(expected, rows):
        assert {k: v for k, v in a.items() if isinstance(v, str)} == {k: v for k, v in b.items() if isinstance(v, str)}
        assert [b[k] for k in a if isinstance(a[k], float)] == pytest.approx(
            [a[k] for k in a if isinstance(a[k], float)], rel=1e-6, abs=1e-9, nan_ok=True
        )
