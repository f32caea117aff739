"""The Python API of both wings (mrharmony.dmri.api, mrharmony.structural.api) on the tiny data:
no held-out subject leaks into a fit, bad training subjects are refused in one sentence, a
cross-validation loop runs end to end, and the guide's examples (docs/python-api.md) run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mrharmony import dmri, structural
from mrharmony.engine.checkpoint import read_checkpoint
from mrharmony.errors import InputError

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
SUBJECTS = ["sub-01", "sub-02", "sub-03"]  # the tiny traveling heads
SITE_SUBJECTS = ["sub-01", "sub-02", "sub-03", "sub-04"]  # the tiny structural dataset


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    from mrharmony.simulate.structural import simulate_structural

    return simulate_structural(
        tmp_path_factory.mktemp("api-st") / "tiny", preset="tiny", seed=5, rescans=False, quiet=True
    )


def _noised_copy(src: Path, dst: Path, files) -> Path:
    """A copy of a dataset whose ``files`` (paths relative to it) hold other data: 1.5 times the
    image plus seeded noise of a fifth of its mean."""
    shutil.copytree(src, dst)
    rng = np.random.default_rng(3)
    for rel in files:
        img = nib.load(dst / rel)
        data = np.asarray(img.dataobj, np.float32)
        data = 1.5 * data + rng.normal(0.0, 0.2 * float(np.abs(data).mean()), data.shape).astype(np.float32)
        out = nib.Nifti1Image(np.abs(data).astype(np.float32), img.affine)
        (dst / rel).unlink()
        nib.save(out, dst / rel)
    return dst


def _weights(run: Path) -> dict:
    return read_checkpoint(run / "model.pt")["state_dict"]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- (a) no leak ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory, tiny_prepared):
    """The tiny dataset twice: as it is, and with the held-out subject sub-01's scans (every
    platform) replaced by other data."""
    root = tmp_path_factory.mktemp("api-leak")
    same = root / "same"
    shutil.copytree(tiny_prepared, same)
    platforms = [p.name for p in (same / "sub-01").iterdir() if p.is_dir()]
    other = _noised_copy(tiny_prepared, root / "other", [f"sub-01/{p}/dwi.nii.gz" for p in platforms])
    return same, other


@pytest.mark.parametrize(
    "method,options",
    [
        ("rish", {}),
        ("diqt", {"targets": ["prisma_st"], "preset": "test", "training": {"threads": 1}}),
    ],
    ids=["statistical", "network"],
)
def test_dmri_fit_never_sees_a_held_out_subject(two_datasets, tmp_path, method, options):
    same, other = two_datasets
    train = ["sub-02", "sub-03"]
    a = dmri.fit(method, same, train_subjects=train, out=tmp_path / "a", **options)
    b = dmri.fit(method, other, train_subjects=train, out=tmp_path / "b", **options)
    # the replaced scans were prepared again, so the held-out subject's features do differ
    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import load_features

    fs = [load_features(load_dataset(d, check_data=False), "sub-01", "ge_st").data for d in (same, other)]
    assert not np.allclose(*fs)
    assert a.reference == b.reference  # the platforms' feature scale, gradient tables, SH settings
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert split["test_subjects"] == ["sub-01"]
    if method == "rish":
        assert a.meta["fit_subjects"] == b.meta["fit_subjects"] == train
        files = sorted(p.name for p in (tmp_path / "a").glob("*.nii.gz"))
        assert files and files == sorted(p.name for p in (tmp_path / "b").glob("*.nii.gz"))
        for name in files:  # the saved arrays: the common space and the RISH scale maps
            assert np.array_equal(
                nib.load(tmp_path / "a" / name).get_fdata(), nib.load(tmp_path / "b" / name).get_fdata()
            )
        assert a.settings == b.settings
    else:
        assert _same_weights(tmp_path / "a", tmp_path / "b")
        assert a.meta["best_epoch"] == b.meta["best_epoch"]


def test_structural_fit_never_sees_a_held_out_subject(sites, tmp_path):
    from mrharmony.data.structural import load_structural

    ds = load_structural(sites)
    files = [f"sub-04/{site}/{m}.nii.gz" for site in ds.site_names for m in ds.modalities]
    other = _noised_copy(sites, tmp_path / "other", files)
    options = {"preset": "test", "data": {"crop_size": 16}, "training": {"threads": 1}, "widths": [4, 8, 16]}
    train = ["sub-01", "sub-02", "sub-03"]
    a = structural.fit("hail", sites, train_subjects=train, out=tmp_path / "a", **options)
    structural.fit("hail", other, train_subjects=train, out=tmp_path / "b", **options)
    assert a.split["test"] == ["sub-04"] and "sub-04" not in a.split["train"] + a.split["validation"]
    assert _same_weights(tmp_path / "a", tmp_path / "b")


# ---- (b) bad training subjects ------------------------------------------------------------------


def _one_sentence(err: InputError) -> str:
    text = str(err)
    assert "\n" not in text and text.endswith(".") and text.count(". ") == 0, text
    return text


@pytest.mark.parametrize(
    "subjects,says",
    [
        (["sub-01", "sub-09"], "'sub-09', which is not among the dataset's subjects"),
        ([], "train_subjects is empty"),
        ("sub-01", "must be a list of subject names"),
        (["sub-01", "sub-01"], "'sub-01' twice"),
    ],
)
def test_bad_training_subjects_are_refused_in_one_sentence(tiny_prepared, sites, tmp_path, subjects, says):
    with pytest.raises(InputError) as dm:
        dmri.fit("rish", tiny_prepared, train_subjects=subjects, out=tmp_path / "rish")
    with pytest.raises(InputError) as st:
        structural.fit("hail", sites, train_subjects=subjects, out=tmp_path / "hail", preset="test")
    with pytest.raises(InputError) as baseline:  # a baseline learns nothing but checks them all the same
        structural.fit("nyul", sites, train_subjects=subjects)
    for err in (dm.value, st.value, baseline.value):
        assert says in _one_sentence(err)
    assert not (tmp_path / "rish").exists() and not (tmp_path / "hail").exists()


def test_other_misuse_is_refused_in_one_sentence(tiny_prepared, sites, tmp_path):
    cases = [
        lambda: dmri.fit("nonsense", tiny_prepared, train_subjects=SUBJECTS[:2], out=tmp_path / "x"),
        lambda: dmri.fit("rish", tiny_prepared, train_subjects=SUBJECTS[:2], out=tmp_path / "x", smoothing=3),
        lambda: dmri.fit(
            "rish", tiny_prepared, train_subjects=SUBJECTS[:2], out=tmp_path / "x", data={"test_subjects": ["sub-03"]}
        ),
        lambda: structural.fit("hail", sites, out=tmp_path / "x"),
        lambda: structural.fit("nyul", widths=[4]),
    ]
    for case in cases:
        with pytest.raises(InputError) as err:
            case()
        _one_sentence(err.value)
    assert not (tmp_path / "x").exists()


def test_a_baseline_needs_no_data():
    from mrharmony.structural.intensity import NyulHarmonizer

    h = structural.fit("nyul")
    assert isinstance(h, NyulHarmonizer)
    rng = np.random.default_rng(0)
    image, target = rng.random((12, 12, 12)) + 1, 2 * rng.random((12, 12, 12)) + 5
    assert np.isfinite(
        h.transform(image, target=target, mask=np.ones(image.shape, bool), target_mask=np.ones(image.shape, bool)).image
    ).all()


# ---- (c) a cross-validation loop ----------------------------------------------------------------


@pytest.mark.parametrize(
    "method,options",
    [
        ("rish", {"registration": "none"}),
        ("diqt", {"targets": ["connectom_sa"], "preset": "test", "training": {"threads": 1}}),
    ],
    ids=["statistical", "network"],
)
def test_dmri_two_fold_loop(tiny_prepared, tmp_path, method, options):
    from mrharmony.data import load_dataset

    voxel = load_dataset(tiny_prepared, check_data=False).input_platform.voxel_size
    for k, held_out in enumerate([SUBJECTS[0::2], SUBJECTS[1::2]]):
        train = [s for s in SUBJECTS if s not in held_out]
        h = dmri.fit(method, tiny_prepared, train_subjects=train, out=tmp_path / f"fold{k}", **options)
        assert json.loads((tmp_path / f"fold{k}" / "split.json").read_text())["test_subjects"] == held_out
        for subject in held_out:
            maps = dmri.transform(h, tiny_prepared, subject)
            assert set(maps) == set(h.targets)
            for t, m in maps.items():
                r = h.ratios[t]
                assert m.fa.shape == m.md.shape == m.mask.shape and m.decfa.shape == (*m.mask.shape, 3)
                assert m.sh.shape[:3] == m.mask.shape
                assert np.allclose(np.abs(np.diag(m.affine)[:3]) * r, voxel)  # r times finer than the input
                for a in (m.fa, m.md, m.decfa, m.sh):
                    assert np.all(np.isfinite(a))
                inside = m.mask
                assert inside.any() and m.fa[inside].min() >= 0 and m.fa[inside].max() <= 1
                assert m.md[inside].mean() > 0 and not m.fa[~inside].any()


def test_dmri_transform_of_arrays_matches_the_subject(tiny_prepared, tmp_path):
    from mrharmony.data import load_dataset

    h = dmri.fit("none", tiny_prepared, train_subjects=SUBJECTS[:2], out=tmp_path / "none")
    scan = load_dataset(tiny_prepared, check_data=False).scan("sub-03", "ge_st")
    dwi, affine = scan.load_dwi()
    by_name = dmri.transform(h, tiny_prepared, "sub-03", targets=["prisma_st"])
    by_arrays = dmri.transform_dwi(
        h, dwi, *scan.gradients(), affine=affine, mask=scan.load_mask(), targets=["prisma_st"]
    )
    assert list(by_name) == list(by_arrays) == ["prisma_st"]
    assert np.array_equal(by_name["prisma_st"].fa, by_arrays["prisma_st"].fa)
    with pytest.raises(InputError, match="not 'nowhere'"):
        dmri.transform(h, tiny_prepared, "sub-03", targets=["nowhere"])


def test_structural_two_fold_loop(sites, tmp_path):
    from mrharmony.data.structural import load_structural

    ds = load_structural(sites)
    options = {"preset": "test", "data": {"crop_size": 16}, "training": {"threads": 1}, "widths": [4, 8, 16]}
    for k, held_out in enumerate([SITE_SUBJECTS[0::2], SITE_SUBJECTS[1::2]]):
        train = [s for s in SITE_SUBJECTS if s not in held_out]
        h = structural.fit("hail", sites, train_subjects=train, out=tmp_path / f"fold{k}", **options)
        assert sorted(h.split["test"]) == held_out
        target, _ = ds.load_image(train[0], "siteB")
        for subject in held_out:
            image, _ = ds.load_image(subject, "siteA")
            result = h.transform(image, mask=ds.load_mask(subject), target=target, target_mask=ds.load_mask(train[0]))
            assert result.image.shape == image.shape and np.all(np.isfinite(result.image))


# ---- the guide's examples --------------------------------------------------------------------


def test_the_guides_examples_run(tiny_prepared, sites, tmp_path, monkeypatch, capsys):
    """Every ```python block of docs/python-api.md, run in order with the tiny datasets' paths
    for the names the guide gives them."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) == 2
    dataset = tmp_path / "tiny"
    shutil.copytree(tiny_prepared, dataset)
    code = "\n".join(blocks)
    for name, path in (('dataset = "tiny"', dataset), ('sites = "tiny-sites"', sites)):
        assert code.count(name) == 1, name
        code = code.replace(name, f"{name.split(' = ')[0]} = {str(path)!r}")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(GUIDE), "exec"), {"__name__": "guide"})
    out = capsys.readouterr().out
    assert re.search(r"rish: mean absolute FA error 0\.\d+ over 3 held-out subjects", out), out
    assert re.search(r"diqt: mean absolute FA error 0\.\d+ over 3 held-out subjects", out), out
    assert len(re.findall(r"fold \d (hail|nyul) sub-0\d: SSIM -?\d\.\d+", out)) == 8, out
