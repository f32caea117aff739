"""stylecode: learned from a study's sites without traveling heads, applied to the scanner of a target
scan; its person changes are those of a scan, its code is blind to them, a change of the input
survives and a change of the target scan does not pass, training resumes exactly, bad input is
refused."""

import numpy as np
import pytest
import yaml

from mrharmony.cli import main

SMALL = {
    "model": {"method": "stylecode", "width": 12, "code_dim": 4, "blocks": 1, "patch": 8, "style_patch": 10},
    "training": {
        "encoder_epochs": 4,
        "generator_epochs": 2,
        "steps_per_epoch": 10,
        "batch_size": 2,
        "sites_per_batch": 3,
        "validation_batches": 1,
        "device": "cpu",
        "threads": 1,
    },
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.simulate.study import StudyDesign, simulate_study

    design = StudyDesign(sites=3, controls_per_site=4, patients_per_site=0, age_range=(25, 35))
    root = simulate_study(tmp_path_factory.mktemp("study") / "s", preset="tiny", seed=3, design=design, quiet=True)
    prepare(root, quiet=True)
    return root


def _config(folder, study, **data):
    path = folder / "stylecode.yaml"
    path.write_text(yaml.safe_dump({"data": {"study": str(study), "validation_people": 1, **data}, **SMALL}))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, study):
    folder = tmp_path_factory.mktemp("run")
    assert main(["dmri", "train", str(_config(folder, study)), "--out", str(folder / "sc"), "--quiet"]) == 0
    return folder / "sc"


def _scan(study, subject, kind=None):
    from mrharmony.data.study import load_study
    from mrharmony.simulate.person import change_scan

    scan = load_study(study).scan(subject)
    dwi, affine = scan.load_dwi()
    bvals, bvecs = scan.gradients()
    mask = scan.load_mask()
    if kind is not None:
        dwi = change_scan(dwi, bvals, mask, kind)
    return dwi, bvals, bvecs, mask, affine


def _features(dwi, bvals, bvecs, mask, affine, sh):
    from mrharmony.bench.unpaired import scan_features

    return scan_features((dwi, bvals, bvecs, mask, affine), sh)


@pytest.mark.parametrize("kind", ["md", "fa", "csf"])
def test_a_person_change_of_features_is_the_features_of_the_changed_scan(study, kind):
    import torch

    from mrharmony.dmri.changes import brain_mean
    from mrharmony.dmri.networks.stylecode import PersonChange, sphere_directions
    from mrharmony.simulate.person import CHANGES

    dwi, bvals, bvecs, mask, affine = _scan(study, "sub-001")
    sh = {"sh_order_max": 6, "shells": [1000.0]}
    before = _features(dwi, bvals, bvecs, mask, affine, sh).data
    after = _features(*_scan(study, "sub-001", kind), sh).data
    strength = {"md": (1.15, 0.0, 0.0), "fa": (1.0, 0.3, 0.0), "csf": (1.0, 0.0, 0.1)}[kind]
    change = PersonChange(sh, [1000.0], sphere_directions())
    x = torch.as_tensor(np.moveaxis(before, -1, 0)[None])
    p = [torch.tensor([v], dtype=torch.float32) for v in strength]
    mine = np.moveaxis(change(x, *p)[0].numpy(), 0, -1)
    # the measure the change moves moves as the changed scan's does, to within 15% of the change (a
    # change of the noisy samples and one of their SH fit differ by what the noise adds to FA and MD)
    m = CHANGES[kind]
    base = brain_mean(before, bvals, bvecs, sh, mask, m)
    theirs = brain_mean(after, bvals, bvecs, sh, mask, m) / base - 1
    ours = brain_mean(mine, bvals, bvecs, sh, mask, m) / base - 1
    assert abs(ours - theirs) < 0.15 * abs(theirs)


def test_supervised_contrastive_loss_is_lower_for_codes_that_separate_sites():
    import torch

    from mrharmony.dmri.stylecode import supervised_contrastive

    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.1], [-1.0, -0.1]]), dim=1)
    mixed = apart[[0, 2, 1, 3]]
    assert supervised_contrastive(apart, labels, 0.2) < supervised_contrastive(mixed, labels, 0.2)


def test_the_code_of_a_scan_is_blind_to_a_change_of_its_person(study, run):
    from mrharmony.data.study import load_study
    from mrharmony.dmri.loading import load_harmonizer

    h = load_harmonizer(run)
    st = load_study(study)
    codes = {p.subject: h.code_of([_features(*_scan(study, p.subject), h.reference["sh"])]) for p in st.participants}
    site_means = [np.mean([codes[p.subject] for p in st.at(s)], 0) for s in st.sites]
    between = min(np.linalg.norm(a - b) for i, a in enumerate(site_means) for b in site_means[i + 1 :])
    changed = h.code_of([_features(*_scan(study, "sub-001", "md"), h.reference["sh"])])
    assert np.linalg.norm(changed - codes["sub-001"]) < 0.2 * between


def _files(folder, name, dwi, bvals, bvecs, affine):
    from mrharmony.data.gradients import write_gradients
    from mrharmony.io import save_nifti

    folder.mkdir(parents=True, exist_ok=True)
    save_nifti(folder / f"{name}.nii.gz", dwi, affine)
    write_gradients(folder / f"{name}.bval", folder / f"{name}.bvec", bvals, bvecs)
    return [str(folder / f"{name}.{ext}") for ext in ("nii.gz", "bval", "bvec")]


def _mean_md(out, mask):
    import nibabel as nib

    md = np.asarray(nib.load(next(out.glob("*_param-md_dwimap.nii.gz"))).dataobj)
    return float(md[mask].mean())


def test_on_files_a_change_of_the_input_survives_and_a_change_of_the_target_scan_does_not_pass(study, run, tmp_path):
    dwi, bvals, bvecs, mask, affine = _scan(study, "sub-001")
    inputs = {
        "input": _files(tmp_path, "input", dwi, bvals, bvecs, affine),
        "input_md": _files(tmp_path, "input_md", *_scan(study, "sub-001", "md")[:3], affine),
    }
    t = _scan(study, "sub-012")  # a person of another site
    targets = {
        "target": _files(tmp_path, "target", t[0], t[1], t[2], t[4]),
        "target_md": _files(tmp_path, "target_md", *_scan(study, "sub-012", "md")[:3], t[4]),
    }
    mask_file = str(tmp_path / "mask.nii.gz")
    from mrharmony.io import save_nifti

    save_nifti(mask_file, mask.astype(np.uint8), affine, dtype=np.uint8)
    md = {}
    for i, o in (("input", "target"), ("input_md", "target"), ("input", "target_md")):
        d, b, v = inputs[i]
        td, tb, tv = targets[o]
        out = tmp_path / f"{i}-{o}"
        args = ["--dwi", d, "--bval", b, "--bvec", v, "--mask", mask_file]
        args += ["--target-dwi", td, "--target-bval", tb, "--target-bvec", tv, "--target-name", "newsite"]
        assert main(["dmri", "apply", str(run), *args, "--out", str(out), "--quiet"]) == 0
        md[(i, o)] = _mean_md(out, mask)
    given = 0.15  # S -> S0 (S / S0)^1.15: every diffusivity 15% higher
    kept = md[("input_md", "target")] / md[("input", "target")] - 1
    passed = md[("input", "target_md")] / md[("input", "target")] - 1
    assert abs(kept - given) < 0.1 * given * 1.5  # the input's change kept (its SH fit gives about 0.15)
    assert abs(passed) < 0.1 * given


def test_a_generator_that_acts_on_the_code_moves_a_scan_between_sites_but_not_with_the_target_persons_md(study, run):
    """The code decides what passes from the target scan: with a generator made to act strongly on
    it (its weights perturbed), targets of two sites give different outputs, while the target
    person's 15% MD change, which the code does not see, does not reach the output."""
    import torch

    from mrharmony.dmri.apply import harmonize_arrays
    from mrharmony.dmri.changes import brain_mean
    from mrharmony.dmri.loading import load_harmonizer

    h = load_harmonizer(run)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in h.net.generator.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    dwi, bvals, bvecs, mask, affine = _scan(study, "sub-001")
    sh = h.reference["sh"]

    def md_to(subject, kind=None):
        target = h.with_target_scans("t", [_features(*_scan(study, subject, kind), sh)], (bvals, bvecs))
        res = harmonize_arrays(target, dwi, bvals, bvecs, mask, affine, targets=["t"])["t"]
        return brain_mean(res["sh"], bvals, bvecs, sh, res["mask"], "md")

    other, own = md_to("sub-012"), md_to("sub-002")  # a person of another site, one of the input's
    passed = md_to("sub-012", "md") / other - 1
    assert abs(passed) < 0.1 * 0.15
    assert abs(own / other - 1) > 3 * abs(passed)


def test_training_resumes_to_the_weights_of_an_uninterrupted_run(study, run, tmp_path):
    import torch

    cfg = _config(tmp_path, study)
    out = tmp_path / "again"
    assert main(["dmri", "train", str(cfg), "--out", str(out), "--quiet", "--stop-after-epochs", "4"]) == 0
    assert not (out / "model.pt").exists()
    assert main(["dmri", "train", "--resume", "--out", str(out), "--quiet"]) == 0
    a = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_report_says_what_a_run_learned_from_a_study(run, tmp_path):
    assert main(["report", str(run), "--out", str(tmp_path / "r.html"), "--quiet"]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "learned from a study's sites" in page and "the scanner of given target scans" in page
    assert "site-01, site-02, site-03" in page and "<img" in page  # the sites and the phases' curves


def test_bad_input_is_refused_in_one_sentence(study, run, tmp_path, capsys):
    dwi, bvals, bvecs, mask, affine = _scan(study, "sub-001")
    d, b, v = _files(tmp_path, "input", dwi, bvals, bvecs, affine)
    # a target scan of another shell
    td, tb, tv = _files(tmp_path, "b2000", dwi, np.where(bvals > 50, 2000.0, bvals), bvecs, affine)
    args = ["--dwi", d, "--bval", b, "--bvec", v, "--target-dwi", td, "--target-bval", tb, "--target-bvec", tv]
    assert main(["dmri", "apply", str(run), *args, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "b2000.bval" in capsys.readouterr().err and not (tmp_path / "o").exists()
    # a target file without its gradient table
    assert (
        main(
            [
                "dmri",
                "apply",
                str(run),
                "--dwi",
                d,
                "--bval",
                b,
                "--bvec",
                v,
                "--target-dwi",
                td,
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    # too few people at a site for training and validation
    assert (
        main(
            [
                "dmri",
                "train",
                str(_config(tmp_path, study, validation_people=3)),
                "--out",
                str(tmp_path / "r"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "participants.tsv" in capsys.readouterr().err and not (tmp_path / "r").exists()
