"""The HTML report: its summary numbers are the evaluation's, its pictures are embedded, and it
reports a structural evaluation from the folder `structural evaluate` wrote."""

import re

import numpy as np
import pytest
import torch
import yaml

from mrharmony.dmri.evaluate import Evaluation
from mrharmony.report.dmri import MAX_PICTURED, chosen_methods, glance, pictured_methods
from mrharmony.report.format import readable_p


def _evaluation(n_subjects: int) -> Evaluation:
    """An evaluation of two statistical methods, two networks and the floors on one target."""
    rng = np.random.default_rng(0)
    base = {
        "none": 0.10,
        "rish": 0.07,
        "meanvar_global": 0.08,
        "diqt": 0.05,
        "msp": 0.06,
        "rescan": 0.04,
        "oracle": 0.02,
    }
    rows = []
    for m, v in base.items():
        for s in range(n_subjects):
            e = v + 0.002 * rng.standard_normal()
            rows.append(
                {
                    "method": m,
                    "subject": f"sub-{s:02d}",
                    "target": "prisma_st",
                    "sh_mse": None,
                    "fa_mae": e,
                    "md_mae": e * 1e-3,
                }
            )
    params = {"none": None, "rish": None, "meanvar_global": None, "diqt": 1000, "msp": 5000}
    return Evaluation(
        split="subject",
        n_patches=0,
        eval_size=5,
        targets=["prisma_st"],
        methods=list(params),
        parameters=params,
        volume_errors=rows,
        test_subjects=[f"sub-{s:02d}" for s in range(n_subjects)],
    )


def test_the_summary_is_the_mean_over_subjects_of_the_evaluation():
    ev = _evaluation(4)
    g = glance(ev)["prisma_st"]["fa_mae"]

    def mean(m):
        return np.mean([r["fa_mae"] for r in ev.volume_errors if r["method"] == m])

    assert g["none"]["mean"] == pytest.approx(mean("none"))
    assert g["statistical"]["method"] == "rish" and g["statistical"]["mean"] == pytest.approx(mean("rish"))
    assert g["learned"]["method"] == "diqt" and g["learned"]["mean"] == pytest.approx(mean("diqt"))
    assert g["rescan"]["mean"] == pytest.approx(mean("rescan"))
    lo, hi = g["learned"]["ci95"]
    assert lo < g["learned"]["mean"] < hi and g["learned"]["n"] == 4
    assert "fa_mae_noiseless" not in glance(ev)["prisma_st"]  # no such column: no such row
    assert chosen_methods(ev, "prisma_st") == ["rish", "diqt", "msp"]
    # the pictures show every method (no harmonization is their input column), up to MAX_PICTURED
    assert pictured_methods(ev, "prisma_st") == ["rish", "meanvar_global", "diqt", "msp"]
    many = [f"m{i}" for i in range(MAX_PICTURED + 1)]
    ev.methods += many
    ev.parameters.update(dict.fromkeys(many))
    ev.volume_errors += [{**ev.volume_errors[0], "method": m} for m in many]
    assert pictured_methods(ev, "prisma_st") == chosen_methods(ev, "prisma_st")


def test_no_interval_under_three_subjects():
    g = glance(_evaluation(2))["prisma_st"]["md_mae"]
    assert g["learned"]["ci95"] is None and g["learned"]["n"] == 2


def test_p_values_are_written_readably():
    assert [readable_p(p) for p in (1e-40, 0.0004, 0.012345, 0.5)] == ["< 0.001", "< 0.001", "0.012", "0.50"]


SITES = [
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


def test_a_structural_evaluation_is_reported_from_its_folder(tmp_path):
    from mrharmony.engine.checkpoint import save_model
    from mrharmony.report.html import build_report
    from mrharmony.report.structural import glance as structural_glance
    from mrharmony.report.structural import load_evaluation
    from mrharmony.simulate.structural import simulate_structural
    from mrharmony.structural.evaluate import evaluate_structural
    from mrharmony.structural.ihf.squeeze_flow import SqueezeIHF

    (tmp_path / "sites.yaml").write_text(yaml.safe_dump({"sites": SITES}))
    data = simulate_structural(
        tmp_path / "st", preset="tiny", seed=5, n_subjects=3, sites_file=tmp_path / "sites.yaml", quiet=True
    )
    torch.manual_seed(0)
    save_model(
        tmp_path / "run-ihf" / "model.pt",
        SqueezeIHF(dims=2, levels=1, blocks=1, hidden=8, style_dim=8),
        {
            "training_sites": ["siteA"],
            "split": {"train": [], "validation": ["sub-01"], "test": ["sub-02"]},
            "mrharmony_version": "0.0.test",
            "data": {"modalities": ["T1w"]},
            "model": {
                "method": "ihf",
                "flow": "squeeze",
                "dims": 2,
                "levels": 1,
                "blocks": 1,
                "hidden": 8,
                "style_dim": 8,
            },
        },
    )
    ev = evaluate_structural(
        data,
        tmp_path / "eval",
        methods=[str(tmp_path / "run-ihf"), "none", "zscore", "nyul"],
        split={"test": ["sub-02", "sub-03"], "validation": ["sub-01"]},
        quiet=True,
    )
    rows, info, tests = load_evaluation(tmp_path / "eval")
    assert len(rows) == len(ev.rows) and info["test_subjects"] == ["sub-02", "sub-03"] and tests
    # read back from rows.csv, the summary is that of the evaluation itself: per subject, then over subjects
    g = structural_glance(rows, info)[("T1w", "unseen")]["ssim"]

    def ssim(m):
        return np.mean(
            [
                np.mean(
                    [r["ssim"] for r in ev.rows if r["method"] == m and r["group"] == "unseen" and r["subject"] == s]
                )
                for s in ("sub-02", "sub-03")
            ]
        )

    assert g["none"]["mean"] == pytest.approx(ssim("none")) and g["ihf_squeeze"]["mean"] == pytest.approx(
        ssim("ihf_squeeze")
    )
    best = max(("zscore", "nyul"), key=ssim)
    assert g["best baseline"]["method"] == best and g["best baseline"]["mean"] == pytest.approx(ssim(best))
    assert g["ihf_squeeze"]["n"] == 2 and g["ihf_squeeze"]["ci95"] is None

    page = build_report([], tmp_path / "report.html", structural=tmp_path / "eval").read_text()
    assert page.count("data:image/png;base64,") == 1  # one modality, one picture
    assert f"{ssim('ihf_squeeze'):.3f}" in page and "<details>" in page
    assert {t["n"] for t in tests} == {2} and "<th>subjects</th>" in page  # the tests pair the two test subjects
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # self-contained
    with pytest.raises(Exception, match="already exists"):
        build_report([], tmp_path / "report.html", structural=tmp_path / "eval")
