"""The simulated multi-site study: its design, its drawn platforms, the files, and rendering its
people again (the truth on the reference platform, a rescan at their site)."""

import numpy as np
import pytest
import yaml

from mrharmony.cli import main
from mrharmony.data.study import load_study
from mrharmony.errors import InputError
from mrharmony.simulate.study import PlatformDistribution, StudyDesign, default_distribution_path


def test_the_design_confounds_site_with_diagnosis_and_age():
    design = StudyDesign(
        sites=3, controls_per_site=6, patients_per_site=2, patients={"site-02": 0.75}, ages={"site-03": (65, 80)}
    )
    people = design.people(seed=4)
    assert people == design.people(seed=4) and people != design.people(seed=5)
    by_site = {s: [p for p in people if p["site"] == s] for s in ("site-01", "site-02", "site-03")}
    assert all(len(v) == 8 for v in by_site.values())
    assert sum(p["group"] == "patient" for p in by_site["site-01"]) == 2
    assert sum(p["group"] == "patient" for p in by_site["site-02"]) == 6
    assert all(65 <= p["age"] <= 80 for p in by_site["site-03"]) and all(20 <= p["age"] <= 80 for p in people)
    assert [p["subject"] for p in people] == [f"sub-{i:03d}" for i in range(1, 25)]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sites": 2, "patients": {"site-03": 0.5}}, "'site-03' is not one of the study's sites"),
        ({"patients": {"site-01": 1.5}}, "fraction of patients must be in"),
        ({"ages": {"site-01": (70, 30)}}, "age range needs"),
    ],
)
def test_an_impossible_design_is_refused(settings, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        StudyDesign(**settings)


def test_platforms_are_drawn_reproducibly_and_differ_between_sites():
    from mrharmony.config import load_yaml_model

    dist = load_yaml_model(PlatformDistribution, default_distribution_path())
    sites = dist.draw(6, seed=2)
    assert [p.model_dump() for p in sites] == [p.model_dump() for p in dist.draw(6, seed=2)]
    assert [p.name for p in sites] == [f"site-{i:02d}" for i in range(1, 7)] and {p.role for p in sites} == {"site"}
    assert len({(p.te_ms, p.snr, p.b_scale) for p in sites}) == 6
    assert {p.voxel_size[0] for p in sites} <= {1.2, 2.4} and all(p.shells == [1000.0] for p in sites)
    assert all(isinstance(p.n_directions, int) and p.snr > 0 for p in sites)
    assert dist.reference_platform().name == "reference"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from mrharmony.simulate.study import simulate_study

    design = StudyDesign(sites=2, controls_per_site=2, patients_per_site=1, ages={"site-02": (75, 80)})
    return simulate_study(tmp_path_factory.mktemp("study") / "s", preset="tiny", seed=1, design=design, quiet=True)


def test_every_person_is_scanned_once_at_their_site(study):
    st = load_study(study)
    assert st.sites == ["site-01", "site-02"] and len(st.participants) == 6
    for p in st.participants:
        assert sorted(d.name for d in (study / p.subject).iterdir()) == [p.site]
        assert p.age is not None and p.sex in ("F", "M") and p.group in ("control", "patient")
        bvals, _ = st.scan(p.subject).gradients()
        assert (bvals > 50).sum() == st.site(p.site).n_directions


def test_people_render_again_on_the_reference_platform_and_as_a_rescan(study):
    from mrharmony.simulate import render_scan

    st = load_study(study)
    p = st.participants[0]
    stored = st.scan(p.subject).load_dwi()[0]
    assert np.array_equal(render_scan(study, p.subject, p.site).dwi, stored)
    again = render_scan(study, p.subject, p.site, session=2).dwi
    assert again.shape == stored.shape and not np.array_equal(again, stored)
    truth = render_scan(study, p.subject, "reference", noise=False)
    assert truth.dwi.dtype == np.float32 and truth.bvals.max() == 1000


def test_older_people_have_higher_diffusivities(study):
    from mrharmony.simulate.generator import ageing

    sim = yaml.safe_load((study / "simulation.yaml").read_text())
    design = sim["cohort"]
    old = [s for s, a in design["ages"].items() if a >= 75]
    assert old
    for s in old:
        scale, f_change = ageing(design, s)
        assert scale > 1.1 and f_change < -0.03
        truth = yaml.safe_load((study / "truth" / s / "subject.yaml").read_text())
        assert truth["diffusivity_scale"] >= scale - 1e-9
    assert ageing(design, "sub-none") == (1.0, 0.0)


def test_participants_are_checked(study, tmp_path):
    import shutil

    copy = tmp_path / "s"
    shutil.copytree(study, copy)
    st = load_study(copy)
    st.require(("age", "sex", "group"))
    tsv = copy / "participants.tsv"
    lines = tsv.read_text().splitlines()
    lines[1] = "\t".join(lines[1].split("\t")[:2] + ["n/a", "F", "control"])
    tsv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"participants.tsv: gives no age for sub-001, which this method needs\."):
        load_study(copy).require(("age",))
    tsv.write_text(tsv.read_text().replace("site-02", "site-09", 1))
    with pytest.raises(InputError, match=r"site 'site-09' of sub-00\d is not a site of study.yaml"):
        load_study(copy)


def test_the_command_line_makes_a_study_and_refuses_what_does_not_apply(tmp_path, capsys):
    design = tmp_path / "design.yaml"
    design.write_text(yaml.safe_dump({"sites": 2, "controls_per_site": 1, "patients_per_site": 1}))
    assert (
        main(
            ["simulate", str(tmp_path / "s"), "--kind", "study", "--preset", "tiny", "--design", str(design), "--quiet"]
        )
        == 0
    )
    assert len(load_study(tmp_path / "s").participants) == 4
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "t"), "--kind", "study", "--cohort", "8", "--quiet"]) == 2
    assert "--cohort does not apply to --kind study" in capsys.readouterr().err
    design.write_text(yaml.safe_dump({"sites": 2, "ages": {"site-05": [20, 30]}}))
    assert main(["simulate", str(tmp_path / "u"), "--kind", "study", "--design", str(design), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(design) in err and "'site-05' is not one of the study's sites" in err and not (tmp_path / "u").exists()


def test_a_study_is_prepared_scan_by_scan(study, tmp_path, capsys):
    import shutil

    from mrharmony.dmri.features.prepare import load_features, prepare

    copy = tmp_path / "s"
    shutil.copytree(study, copy)
    report = prepare(copy, quiet=True)
    st = load_study(copy)
    assert sorted(report.computed) == sorted((p.subject, p.site) for p in st.participants)
    f = load_features(st, st.participants[0].subject, st.participants[0].site, normalized=False)
    assert f.data.shape[-1] == 28 and f.mask.any()
    assert prepare(copy, quiet=True).computed == []  # up to date
    capsys.readouterr()
    assert main(["dmri", "prepare", str(copy), "--register", "--quiet"]) == 2
    assert "study.yaml: is a multi-site study: --register aligns" in capsys.readouterr().err
