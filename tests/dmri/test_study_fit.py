"""RISH learned from a study's site cohorts (no traveling heads): trained from a study run config,
applied to a person of the source site, its maps matching the sites' controls, keeping a change of
the person, and refusing what it cannot learn from."""

import numpy as np
import pytest
import yaml

from mrharmony.cli import main


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.simulate.study import StudyDesign, simulate_study

    # people under 40 do not age in the simulator: the sites differ by their scanners only
    design = StudyDesign(sites=2, controls_per_site=3, patients_per_site=1, age_range=(25, 35))
    root = simulate_study(tmp_path_factory.mktemp("study") / "s", preset="tiny", seed=2, design=design, quiet=True)
    prepare(root, quiet=True)
    return root


def _config(folder, study, **data):
    path = folder / "rish.yaml"
    cfg = {
        "data": {"study": str(study), "source": "site-01", "target": "site-02", "controls": 3, **data},
        # the tiny block of every person lies in one MNI box: too small to register, and no need
        "model": {"method": "rish", "registration": "none"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, study):
    folder = tmp_path_factory.mktemp("run")
    assert main(["dmri", "train", str(_config(folder, study)), "--out", str(folder / "rish"), "--quiet"]) == 0
    return folder / "rish"


def _order0(coeffs, mask):
    return float((coeffs[mask][:, 0] ** 2).mean())


def test_the_maps_bring_the_source_controls_to_the_target_controls(study, run):
    from mrharmony.data.study import load_study
    from mrharmony.dmri.apply import harmonize_arrays
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.loading import load_harmonizer

    st = load_study(study)
    h = load_harmonizer(run)
    controls = {s: [p.subject for p in st.at(s) if p.group == "control"] for s in ("site-01", "site-02")}
    targets = [load_features(st, s, "site-02", normalized=False) for s in controls["site-02"]]
    target = np.mean([_order0(f.data, f.mask) for f in targets])
    before, after = [], []
    for s in controls["site-01"]:
        scan = st.scan(s)
        dwi, affine = scan.load_dwi()
        bvals, bvecs = scan.gradients()
        mask = scan.load_mask()
        f = load_features(st, s, "site-01", normalized=False)
        before.append(_order0(f.data, f.mask))
        res = harmonize_arrays(h, dwi, bvals, bvecs, mask, affine)["site-02"]
        after.append(_order0(res["sh"], res["mask"]))
    assert abs(np.mean(after) / target - 1) < 0.03 < abs(np.mean(before) / target - 1)


def test_a_person_of_the_source_site_is_harmonized_on_files_keeping_a_change(study, run, tmp_path):
    from mrharmony.data.study import load_study
    from mrharmony.dmri.changes import kept_changes
    from mrharmony.dmri.loading import load_harmonizer

    st = load_study(study)
    patient = next(p for p in st.at("site-01") if p.group == "patient")
    folder = study / patient.subject / "site-01"
    args = ["--dwi", str(folder / "dwi.nii.gz"), "--bval", str(folder / "dwi.bval"), "--bvec", str(folder / "dwi.bvec")]
    assert main(["dmri", "apply", str(run), *args, "--out", str(tmp_path / "h"), "--quiet"]) == 0
    assert (tmp_path / "h" / "dwi_space-site02_model-tensor_param-md_dwimap.nii.gz").is_file()
    h = load_harmonizer(run)
    assert patient.subject not in h.meta["fit_subjects"] and len(h.meta["fit_subjects"]) == 6
    scan = st.scan(patient.subject)
    dwi, affine = scan.load_dwi()
    bvals, bvecs = scan.gradients()
    for kind, res in kept_changes(h, dwi, bvals, bvecs, scan.load_mask(), affine, "site-02", kinds=["md"]).items():
        assert abs(res["kept"] - res["given"]) <= 0.10 * abs(res["given"]), (kind, res)


@pytest.mark.parametrize(
    ("data", "model", "message"),
    [
        ({"controls": 5}, None, "participants.tsv: lists 3 controls at site-01, fewer than the 5"),
        ({"target": "site-01"}, None, "study.yaml: names site-01 as both source and target"),
        ({"target": "site-09"}, None, "study.yaml: has no site 'site-09'"),
        ({}, {"method": "diqt"}, "method 'diqt' learns from traveling heads"),
    ],
)
def test_what_a_study_cannot_give_is_refused(study, tmp_path, capsys, data, model, message):
    cfg = _config(tmp_path, study, **data)
    if model:
        raw = yaml.safe_load(cfg.read_text())
        raw["model"] = model
        cfg.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert main(["dmri", "train", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.combat
def test_combat_offsets_read_at_the_persons_covariates_match_neuroharmonize():
    """The plain-value model (the base person's offset, and per voxel the change per unit of each of
    ComBat's covariate columns) gives exactly what neuroHarmonize's own model gives a new person, for
    a straight age line and for the age spline."""
    pytest.importorskip("neuroHarmonize")
    import contextlib
    import io

    import pandas as pd
    from neuroHarmonize import harmonizationApply, harmonizationLearn

    from mrharmony.data.study import Participant
    from mrharmony.dmri.combat import ComBatHarmonizer, covariate_table, learned_adjustment, probe_table

    rng = np.random.default_rng(0)
    n, v = 40, 6
    people = [
        Participant(f"sub-{i:02d}", "s", age=float(a), sex=str(x), group=str(g))
        for i, (a, x, g) in enumerate(
            zip(rng.uniform(20, 80, n), rng.choice(["F", "M"], n), rng.choice(["control", "patient"], n))
        )
    ]
    sites = ["input"] * (n // 2) + ["target"] * (n // 2)
    age = np.array([p.age for p in people])
    data = rng.normal(size=(n, v)) + 0.02 * (age[:, None] - 50) ** 2 / 50 + 0.5 * (np.array(sites) == "input")[:, None]
    covariates = ["age", "sex", "group"]
    for term in ("linear", "spline"):
        knots = {"bounds": [age.min(), age.max()], "interior": np.quantile(age, (1 / 3, 2 / 3)).tolist()}
        model = {
            "covariates": covariates,
            "age_term": term,
            "age_base": float(age.min()),
            "terms": ["sex", "group"],
            **({"age_knots": knots} if term == "spline" else {}),
        }
        table = covariate_table(people, covariates, sites, model.get("age_knots"))
        slope, offsets = learned_adjustment(data, table, probe_table(model))
        h = ComBatHarmonizer(targets=["t"], ratios={"t": 1}, reference={}, settings={"covariate_model": model})
        h.maps = {"t": np.stack([slope, offsets[0]], -1).reshape(v, 1, 1, 2).astype(np.float32)}
        h.covariate_maps = {"t": (offsets[1:] - offsets[0]).T.reshape(v, 1, 1, -1).astype(np.float32)}
        person = Participant("sub-y", "s", age=57.3, sex="M", group="patient")
        mine = h.for_person({"age": 57.3, "sex": "M", "group": "patient"}).maps["t"].reshape(v, 2)
        with contextlib.redirect_stdout(io.StringIO()):
            fitted, _ = harmonizationLearn(data, table, ref_batch="target", seed=0)
            rows = pd.concat(
                [
                    covariate_table([person] * 2, covariates, ["input", "input"], model.get("age_knots")),
                    table.iloc[[-1]],
                ]
            )
            theirs = harmonizationApply(np.stack([np.zeros(v), np.ones(v), data[-1]]), rows, fitted)
        np.testing.assert_allclose(mine[:, 0], theirs[1] - theirs[0], atol=1e-5)
        np.testing.assert_allclose(mine[:, 1], theirs[0], atol=1e-5)
        # the person's covariates change the offset: the base person's alone is far from it
        assert np.abs(h.maps["t"].reshape(v, 2)[:, 1] - theirs[0]).max() > 1e-2


@pytest.mark.combat
def test_combat_with_covariates_is_learned_from_a_study_and_applied_with_the_persons_covariates(study, tmp_path):
    pytest.importorskip("neuroHarmonize")
    from mrharmony.data.study import load_study

    cfg = tmp_path / "combat.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"study": str(study), "source": "site-01", "target": "site-02", "people": "everyone"},
                "model": {"method": "combat", "registration": "none", "covariates": ["age", "group"]},
            }
        )
    )
    run = tmp_path / "combat"
    assert main(["dmri", "train", str(cfg), "--out", str(run), "--quiet"]) == 0
    st = load_study(study)
    patient = next(p for p in st.at("site-01") if p.group == "patient")
    folder = study / patient.subject / "site-01"
    args = ["--dwi", str(folder / "dwi.nii.gz"), "--bval", str(folder / "dwi.bval"), "--bvec", str(folder / "dwi.bvec")]
    # the person's covariates are needed: refused without them, nothing written
    assert main(["dmri", "apply", str(run), *args, "--out", str(tmp_path / "none"), "--quiet"]) == 2
    assert not (tmp_path / "none").exists()
    out = tmp_path / "h"
    who = ["--age", str(patient.age), "--group", "patient"]
    assert main(["dmri", "apply", str(run), *args, *who, "--out", str(out), "--quiet"]) == 0
    side = __import__("json").loads((out / "dwi_space-site02_model-tensor_param-fa_dwimap.json").read_text())
    assert side["Covariates"] == {"age": patient.age, "group": "patient"}
    # fitted on the controls alone, the diagnosis is no covariate: refused naming participants.tsv
    raw = yaml.safe_load(cfg.read_text())
    raw["data"].update(people="controls", controls=3)
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["dmri", "train", str(cfg), "--out", str(tmp_path / "c2"), "--quiet"]) == 2
    assert not (tmp_path / "c2").exists()


@pytest.mark.combat
def test_combat_location_alone_keeps_a_change_of_the_person_on_files_where_its_scale_shrinks_it(study, tmp_path):
    """A person of the source site and a copy of them with MD 15% higher everywhere, written to files
    and harmonized by ``apply``: ComBat's location alone (``scale: false``) keeps the change within
    10%; location and scale multiply it by the model's slope, the ratio of the sites' spreads."""
    pytest.importorskip("neuroHarmonize")
    import nibabel as nib

    from mrharmony.data.study import load_study
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.simulate.person import change_scan

    st = load_study(study)
    patient = next(p for p in st.at("site-01") if p.group == "patient")
    scan = st.scan(patient.subject)
    dwi, affine = scan.load_dwi()
    mask = scan.load_mask()
    folder = study / patient.subject / "site-01"
    changed = tmp_path / "changed" / "dwi.nii.gz"
    changed.parent.mkdir()
    nib.save(nib.Nifti1Image(change_scan(dwi, scan.gradients()[0], mask, "md"), affine), changed)
    given = input_change(st, patient.subject, dwi, changed, mask)
    who = ["--age", str(patient.age), "--group", "patient"]
    md = "dwi_space-site02_model-tensor_param-md_dwimap.nii.gz"
    kept = {}
    for scale in (True, False):
        cfg = tmp_path / f"combat-{scale}.yaml"
        model = {"method": "combat", "registration": "none", "covariates": ["age", "group"], "scale": scale}
        data = {"study": str(study), "source": "site-01", "target": "site-02", "people": "everyone"}
        cfg.write_text(yaml.safe_dump({"data": data, "model": model}))
        run = tmp_path / f"run-{scale}"
        assert main(["dmri", "train", str(cfg), "--out", str(run), "--quiet"]) == 0
        means = []
        for name, dwi_file in (("original", folder / "dwi.nii.gz"), ("changed", changed)):
            args = ["--dwi", str(dwi_file), "--bval", str(folder / "dwi.bval"), "--bvec", str(folder / "dwi.bvec")]
            out = tmp_path / f"h-{scale}-{name}"
            assert main(["dmri", "apply", str(run), *args, *who, "--out", str(out), "--quiet"]) == 0
            means.append(float(nib.load(out / md).get_fdata()[mask].mean()))
        kept[scale] = means[1] / means[0] - 1
        if scale:
            h = load_harmonizer(run)
            slope = float(np.median(h.maps["site-02"][..., 2][h.space.mask]))
    assert abs(kept[False] - given) <= 0.10 * given, (kept, given)
    assert abs(kept[True] / given - slope) <= 0.1 * slope, (kept, given, slope)


def input_change(st, subject, dwi, changed, mask) -> float:
    """The relative change of the brain-mean MD between the scan ``dwi`` and the file ``changed``."""
    import nibabel as nib

    from mrharmony.dmri.changes import brain_mean
    from mrharmony.dmri.features.sh import SHConfig, fit_sh

    bvals, bvecs = st.scan(subject).gradients()
    cfg = SHConfig()
    before, after = (
        brain_mean(fit_sh(d, bvals, bvecs, mask, cfg), bvals, bvecs, cfg, mask, "md")
        for d in (dwi, nib.load(changed).get_fdata(dtype=np.float32))
    )
    return after / before - 1


def test_the_bids_app_reads_a_persons_covariates_from_participants_tsv(tmp_path):
    from mrharmony.dmri.bids_app import participant_covariates
    from mrharmony.errors import InputError

    (tmp_path / "participants.tsv").write_text(
        "participant_id\tage\tsex\tgroup\nsub-01\t63\tfemale\tpatient\nsub-02\tn/a\tM\tcontrol\n"
    )
    got = participant_covariates(tmp_path, ["01"], ["age", "sex", "group"])
    assert got == {"01": {"age": 63.0, "sex": "F", "group": "patient"}}
    with pytest.raises(InputError, match=r"participants.tsv.*sub-02 the age 'n/a'"):
        participant_covariates(tmp_path, ["01", "02"], ["age"])
    with pytest.raises(InputError, match="does not list sub-03"):
        participant_covariates(tmp_path, ["03"], ["sex"])


@pytest.mark.combat
def test_combat_refuses_a_covariate_that_site_determines(study, tmp_path):
    """Every patient at one site: ComBat cannot tell diagnosis from scanner; refused before any work."""
    pytest.importorskip("neuroHarmonize")
    from mrharmony.data.study import PARTICIPANTS_FILE

    copy = tmp_path / "study"
    __import__("shutil").copytree(study, copy)
    tsv = copy / PARTICIPANTS_FILE
    lines = tsv.read_text().splitlines()
    header = lines[0].split("\t")
    site, group = header.index("site"), header.index("group")
    rows = [line.split("\t") for line in lines[1:]]
    for r in rows:
        r[group] = "patient" if r[site] == "site-01" else "control"
    tsv.write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n")
    cfg = tmp_path / "combat.yaml"
    data = {"study": str(copy), "source": "site-01", "target": "site-02", "people": "everyone"}
    cfg.write_text(
        yaml.safe_dump({"data": data, "model": {"method": "combat", "registration": "none", "covariates": ["group"]}})
    )
    assert main(["dmri", "train", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()
