"""BIDS in (pybids), ``mrharmony describe``, and the BIDS App (``mrharmony bids``)."""

import json
import os
import shutil
import tempfile

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from mrharmony.cli import main
from mrharmony.data import load_dataset
from mrharmony.dmri.bids_app import THREAD_VARIABLES, app_resources
from mrharmony.errors import InputError
from mrharmony.io import container_record, write_derivative_description

LABELS = {"ge_st": "gest", "prisma_st": "prismast", "connectom_st": "connectomst", "connectom_sa": "connectomsa"}


@pytest.fixture(scope="module")
def bids_dir(tmp_path_factory, tiny_dataset):
    """The tiny traveling heads as BIDS: one session per platform; masks as a derivative for
    sub-01 only (the others get computed masks)."""
    root = tmp_path_factory.mktemp("bids") / "travel"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "travel", "BIDSVersion": "1.9.0"}))
    for s in ("sub-01", "sub-02", "sub-03"):
        for plat, label in LABELS.items():
            src = tiny_dataset / s / plat
            d = root / s / f"ses-{label}" / "dwi"
            d.mkdir(parents=True)
            stem = f"{s}_ses-{label}_dwi"
            shutil.copy(src / "dwi.nii.gz", d / f"{stem}.nii.gz")
            shutil.copy(src / "dwi.bval", d / f"{stem}.bval")
            shutil.copy(src / "dwi.bvec", d / f"{stem}.bvec")
            (d / f"{stem}.json").write_text(json.dumps({"EchoTime": 0.089, "Manufacturer": "Synthetic"}))
            if s == "sub-01":
                m = root / "derivatives" / "masks" / s / f"ses-{label}" / "dwi"
                m.mkdir(parents=True)
                shutil.copy(src / "mask.nii.gz", m / f"{s}_ses-{label}_desc-brain_mask.nii.gz")
    return root


def test_describe_and_read_a_bids_dataset(bids_dir, tiny_dataset, tmp_path):
    study = tmp_path / "study"
    assert (
        main(
            [
                "describe",
                str(bids_dir),
                "--layout",
                "bids",
                "--entity",
                "ses",
                "--input",
                "gest",
                "--out",
                str(study),
                "--quiet",
            ]
        )
        == 0
    )
    spec = yaml.safe_load((study / "dataset.yaml").read_text())
    assert spec["layout"] == "bids" and spec["bids_entity"] == "ses"
    plats = {p["name"]: p for p in spec["platforms"]}
    assert plats["gest"]["role"] == "input" and plats["prismast"]["role"] == "target"
    assert plats["gest"]["te_ms"] == pytest.approx(89.0) and plats["gest"]["scanner"] == "Synthetic"
    assert plats["connectomsa"]["voxel_size"] == [1.2, 1.2, 1.2] and plats["gest"]["bvalues"] == [0.0, 1200.0]
    ds = load_dataset(study)
    assert ds.subjects == ["sub-01", "sub-02", "sub-03"]
    s1, s2 = ds.scan("sub-01", "prismast"), ds.scan("sub-02", "prismast")
    assert s1.mask.name == "sub-01_ses-prismast_desc-brain_mask.nii.gz" and s2.mask is None
    # a mask is computed for the scans without one (its quality: tests/data/test_layouts.py)
    auto = s2.load_mask()
    assert auto.shape == s2.load_dwi()[0].shape[:3] and auto.any()
    # prepare writes the features under the study folder, not into the raw BIDS dataset
    assert main(["dmri", "prepare", str(study), "--quiet"]) == 0
    assert not (bids_dir / "derivatives" / "mrharmony-sh").exists()
    side = json.loads(next((study / "derivatives" / "mrharmony-sh" / "sub-02" / "prismast").glob("*.json")).read_text())
    assert side["mask"].endswith("sub-02_desc-brain_mask.nii.gz")
    with pytest.raises(InputError, match="already exists"):
        from mrharmony.data.describe import describe

        describe(bids_dir, study, layout="bids", input_platform="gest", entity="ses")


def test_bids_errors_name_the_problem(bids_dir, tmp_path, capsys):
    assert (
        main(
            [
                "describe",
                str(bids_dir),
                "--layout",
                "bids",
                "--entity",
                "acq",
                "--input",
                "gest",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    assert "no dwi runs with acq-gest" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(bids_dir, broken)
    study = tmp_path / "s"
    assert (
        main(
            [
                "describe",
                str(broken),
                "--layout",
                "bids",
                "--entity",
                "ses",
                "--input",
                "gest",
                "--out",
                str(study),
                "--quiet",
            ]
        )
        == 0
    )
    shutil.rmtree(broken / "sub-03" / "ses-connectomst")
    spec = yaml.safe_load((study / "dataset.yaml").read_text())
    with pytest.raises(InputError, match=r"no dwi run with ses-connectomst for subject sub-03"):
        load_dataset(study)
    spec.pop("subjects")  # then sub-03 is left out: it lacks a platform
    (study / "dataset.yaml").write_text(yaml.safe_dump(spec))
    assert load_dataset(study, check_data=False).subjects == ["sub-01", "sub-02"]


def test_bids_app_writes_a_derivative_dataset(bids_dir, tiny_prepared, tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "rish.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": str(tiny_prepared), "split": "subject", "test_subjects": ["sub-03"]},
                "model": {"method": "rish"},
            }
        )
    )
    model = tmp_path / "rish"
    assert main(["dmri", "train", str(cfg), "--out", str(model), "--quiet"]) == 0
    out = tmp_path / "harmonized"
    args = [
        "bids",
        str(bids_dir),
        str(out),
        "participant",
        "--participant-label",
        "01",
        "sub-03",
        "--model",
        str(model),
        "--filter",
        "ses=gest",
        "--target",
        "prisma_st",
        "--quiet",
    ]
    # the BIDS Apps' resource options, and the variables the container image sets
    work = tmp_path / "work"
    monkeypatch.setenv("MRHARMONY_CONTAINER_TYPE", "docker")
    monkeypatch.setenv("MRHARMONY_CONTAINER_TAG", "mrharmony:test")
    threads, mpl = torch.get_num_threads(), os.environ.get("MPLCONFIGDIR")
    assert main([*args, "--n-cpus", "1", "--mem-gb", "2.5", "--work-dir", str(work)]) == 0
    assert torch.get_num_threads() == threads and os.environ.get("MPLCONFIGDIR") == mpl  # restored afterwards
    assert sorted(p.name for p in work.iterdir()) == ["cache", "dipy", "matplotlib", "tmp"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "mrharmony"
    assert desc["GeneratedBy"][0]["Container"] == {"Type": "docker", "Tag": "mrharmony:test"}
    log = json.loads((out / "sub-01" / "log" / "participant.json").read_text())
    assert log["resources"] == {"n_cpus": 1, "mem_gb": 2.5, "work_dir": str(work)}
    assert log["runs"] == ["sub-01/ses-gest/dwi/sub-01_ses-gest_dwi.nii.gz"] and log["targets"] == ["prisma_st"]
    assert log["container"] == {"Type": "docker", "Tag": "mrharmony:test"}
    assert sorted(p.name for p in out.iterdir()) == ["dataset_description.json", "sub-01", "sub-03"]
    d1, d3 = out / "sub-01" / "ses-gest" / "dwi", out / "sub-03" / "ses-gest" / "dwi"
    names = sorted(p.name for p in d1.iterdir())
    assert "sub-01_ses-gest_space-prismast_desc-harmonized_dwi.nii.gz" in names
    assert "sub-01_ses-gest_space-prismast_model-tensor_param-fa_dwimap.nii.gz" in names
    assert not any("brain_mask" in n for n in names)  # sub-01 has a mask derivative
    assert (d3 / "sub-03_ses-gest_desc-brain_mask.nii.gz").is_file()  # computed for sub-03, and written
    img = nib.load(d3 / "sub-03_ses-gest_space-prismast_desc-harmonized_dwi.nii.gz")
    assert img.get_data_dtype() == np.float32
    side = json.loads((d3 / "sub-03_ses-gest_space-prismast_desc-harmonized_dwi.json").read_text())
    assert side["Method"] == "rish" and side["TargetPlatform"] == "prisma_st"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(args) == 2  # outputs exist: nothing is touched without --force
    assert "already exists" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    bad = args[:]
    bad[bad.index("01")] = "07"
    assert main(bad) == 2
    assert "no participant sub-07" in capsys.readouterr().err
    assert main(["bids", str(bids_dir), str(bids_dir / "out"), "participant", "--model", str(model)]) == 2
    assert "inside the BIDS dataset" in capsys.readouterr().err
    # a session of another protocol (the 1.2 mm Connectom scans): refused before anything is written
    other = tmp_path / "other"
    sa = args[:]
    sa[sa.index(str(out))] = str(other)
    sa[sa.index("ses=gest")] = "ses=connectomsa"
    assert main(sa) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "sub-01_ses-connectomsa_dwi.nii.gz: has 1.2 x 1.2 x 1.2 mm voxels, but the model learned from "
        "2.4 x 2.4 x 2.4 mm scans (ge_st; tolerance 10%); pass --allow-protocol-mismatch" in err
    )
    assert not other.exists()
    # the group level: FA / MD per site, before (every session as acquired) and after (the harmonized runs)
    group = ["bids", str(bids_dir), str(out), "group", "--participant-label", "01", "sub-03", "--quiet"]
    assert main([*group, "--n-cpus", "1", "--work-dir", str(work)]) == 0
    record = json.loads((out / "group" / "group.json").read_text())
    assert record["resources"] == {"n_cpus": 1, "mem_gb": None, "work_dir": str(work)}
    assert record["container"] == {"Type": "docker", "Tag": "mrharmony:test"}
    summary = (out / "group" / "summary.tsv").read_text().splitlines()
    assert summary[0].split("\t") == [
        "site",
        "stage",
        "target",
        "region",
        "runs",
        "fa_mean",
        "fa_sd",
        "md_mean",
        "md_sd",
    ]
    cells = {tuple(r.split("\t")[:4]): r.split("\t") for r in summary[1:]}
    assert set(LABELS.values()) <= {site for site, _, _, _ in cells}
    after = cells[("gest", "after", "prismast", "white_matter")]
    assert after[4] == "2" and 0.2 < float(after[5]) < 1
    before = {site: float(cells[(site, "before", "", "white_matter")][7]) for site in ("gest", "prismast")}
    assert before["gest"] != before["prismast"]
    rows = (out / "group" / "regional.tsv").read_text().splitlines()
    assert len(rows) - 1 == 2 * (2 * 4 + 2)  # 2 participants x (4 sessions before + 1 harmonized run after) x 2 regions
    # an "after" row is the harmonized maps' own regional mean
    fa = np.asarray(nib.load(d1 / "sub-01_ses-gest_space-prismast_model-tensor_param-fa_dwimap.nii.gz").dataobj)
    md = np.asarray(nib.load(d1 / "sub-01_ses-gest_space-prismast_model-tensor_param-md_dwimap.nii.gz").dataobj)
    wm = (md > 0) & (fa >= 0.2)
    row = next(
        r.split("\t") for r in rows if r.startswith("sub-01\tsub-01_ses-gest\tgest\tafter\tprismast\twhite_matter")
    )
    assert float(row[6]) == pytest.approx(float(fa[wm].mean()), rel=1e-5)
    assert float(row[7]) == pytest.approx(float(md[wm].mean()), rel=1e-5) and int(row[8]) == int(wm.sum())
    assert (out / "group" / "fa_md_by_site.png").stat().st_size > 1000
    assert main(group) == 2 and "pass --force" in capsys.readouterr().err
    assert main(["bids", str(bids_dir), str(tmp_path / "empty"), "group", "--quiet"]) == 2
    assert "run the participant level first" in capsys.readouterr().err


def test_app_resources_limit_threads_and_keep_temporary_files_in_the_work_dir(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setenv("TMPDIR", "/elsewhere")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads, tmp, cache = torch.get_num_threads(), tempfile.gettempdir(), os.environ.get("XDG_CACHE_HOME")
    work = tmp_path / "work" / "new"  # created
    with app_resources(n_cpus=1, work_dir=work):
        assert torch.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
        assert all(os.environ[v] == "1" for v in THREAD_VARIABLES)
        assert os.environ["TMPDIR"] == str(work / "tmp") == tempfile.gettempdir()
        assert os.environ["XDG_CACHE_HOME"] == str(work / "cache")
        assert os.environ["MPLCONFIGDIR"] == str(work / "matplotlib") and (work / "matplotlib").is_dir()
        with tempfile.NamedTemporaryFile() as f:
            assert f.name.startswith(str(work / "tmp"))
    assert torch.get_num_threads() == threads and tempfile.gettempdir() == tmp
    assert os.environ["TMPDIR"] == "/elsewhere" and "OMP_NUM_THREADS" not in os.environ
    assert os.environ.get("XDG_CACHE_HOME") == cache
    with app_resources():  # nothing given: nothing changes
        assert torch.get_num_threads() == threads and os.environ["TMPDIR"] == "/elsewhere"


def test_bad_resource_options_are_one_sentence_and_exit_2(tmp_path, capsys):
    base = ["bids", str(tmp_path / "bids"), str(tmp_path / "out"), "group"]
    for option, value in (("--n-cpus", "0"), ("--n-cpus", "two"), ("--mem-gb", "-1"), ("--mem-gb", "nan")):
        with pytest.raises(SystemExit) as exc:
            main([*base, option, value])
        assert exc.value.code == 2
        assert f"argument {option}: {value!r} is not" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main([*base, "--work-dir", str(afile)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mrharmony bids: error: {afile}: is not a directory; --work-dir needs a writable directory."
    )
    assert main([*base, "--work-dir", str(afile / "below")]) == 2
    assert "cannot be created as the --work-dir" in capsys.readouterr().err
    with pytest.raises(InputError, match="--n-cpus 0 is not a whole number"), app_resources(n_cpus=0):
        pass


@pytest.mark.parametrize(
    ("env", "record"),
    [
        ({}, None),
        (
            {"MRHARMONY_CONTAINER_TYPE": "docker", "MRHARMONY_CONTAINER_TAG": "mrharmony:0.1.0"},
            {"Type": "docker", "Tag": "mrharmony:0.1.0"},
        ),
        ({"MRHARMONY_CONTAINER_TYPE": "apptainer"}, {"Type": "apptainer"}),
        # the Docker image run by Apptainer
        (
            {
                "MRHARMONY_CONTAINER_TYPE": "docker",
                "MRHARMONY_CONTAINER_TAG": "mrharmony:0.1.0",
                "APPTAINER_CONTAINER": "/images/mrharmony.sif",
            },
            {"Type": "apptainer", "Tag": "mrharmony:0.1.0"},
        ),
    ],
)
def test_generated_by_records_the_container(env, record, tmp_path, monkeypatch):
    for name in ("MRHARMONY_CONTAINER_TYPE", "MRHARMONY_CONTAINER_TAG", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert container_record() == record
    write_derivative_description(tmp_path / "dataset_description.json", name="n", description="d")
    generated = json.loads((tmp_path / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert generated.get("Container") == record
