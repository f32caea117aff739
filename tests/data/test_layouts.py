"""The table of layouts, real-data layouts (MUSHAC / CDMRI folders), co-registration checks and
``prepare --register``."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml

from mrharmony.cli import main
from mrharmony.data import DatasetSpec, load_dataset
from mrharmony.data.layouts import (
    LAYOUTS,
    FolderLayout,
    Layout,
    layout_named,
    recognise_layout,
)
from mrharmony.errors import InputError


def _copy(tiny_dataset, tmp_path, name="th"):
    root = tmp_path / name
    shutil.copytree(tiny_dataset, root, ignore=shutil.ignore_patterns("derivatives", "truth"))
    return root


def test_mushac_layout_reads_the_same_scans(tiny_dataset, tmp_path):
    """<subject>/<scanner>/<protocol>/ as the challenge distributed it, data beside or elsewhere."""
    data = tmp_path / "cdmri"
    spec = yaml.safe_load((tiny_dataset / "dataset.yaml").read_text())
    for p in spec["platforms"]:
        p["scanner"], p["protocol"] = p["name"].split("_")
    for s in spec["subjects"]:
        for p in spec["platforms"]:
            shutil.copytree(tiny_dataset / s / p["name"], data / s / p["scanner"] / p["protocol"])
    desc = tmp_path / "study"
    desc.mkdir()
    spec.update({"layout": "mushac", "data_root": "../cdmri"})
    spec.pop("subjects")  # found from the folders
    (desc / "dataset.yaml").write_text(yaml.safe_dump(spec))
    ds = load_dataset(desc)
    assert ds.subjects == ["sub-01", "sub-02", "sub-03"]
    scan = ds.scan("sub-02", "connectom_sa")
    assert scan.dwi == data.resolve() / "sub-02" / "connectom" / "sa" / "dwi.nii.gz"
    ref = load_dataset(tiny_dataset).scan("sub-02", "connectom_sa")
    np.testing.assert_array_equal(scan.load_dwi()[0], ref.load_dwi()[0])
    # a platform missing for a subject names the folder
    shutil.rmtree(data / "sub-03" / "prisma" / "st")
    with pytest.raises(InputError, match=r"sub-03/prisma/st.*no scan on platform prisma_st"):
        load_dataset(desc)
    # the layout needs scanner and protocol for every platform
    spec["platforms"][0].pop("scanner")
    (desc / "dataset.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match="scanner"):
        load_dataset(desc)


def _rigid(deg: float, shift, centre) -> np.ndarray:
    t = np.deg2rad(deg)
    rot = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = centre - rot @ centre + np.asarray(shift)
    return m


CENTRE = np.array([0.0, -10.0, 20.0])


def _phantom(points: np.ndarray):
    """b=0 signal and brain mask of a head-like phantom at world points (N, 3): an ellipsoid
    with a bright rim, a darker core and a texture of random blobs (structure to register by)."""
    d = (points - CENTRE) / np.array([30.0, 36.0, 26.0])
    r = np.linalg.norm(d, axis=1)
    rng = np.random.default_rng(5)  # the same texture in every scan: tissue-like structure
    centres = CENTRE + rng.uniform(-1, 1, (60, 3)) * np.array([26.0, 32.0, 22.0])
    weights = rng.uniform(-400, 400, 60)
    blobs = sum(w * np.exp(-np.sum(((points - c) / 8.0) ** 2, axis=1)) for w, c in zip(weights, centres))
    s0 = np.where(r < 1, 800 + 600 * r**2 + blobs, 0.0)
    return s0, r < 1


def _write_phantom_scan(folder, voxel, shape, motion, bvecs):
    from tests.helpers import grid_affine

    folder.mkdir(parents=True, exist_ok=True)
    aff = grid_affine(voxel, corner=tuple(CENTRE - np.asarray(shape) * voxel / 2))  # the head well inside
    ijk = np.indices(shape).reshape(3, -1).T
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    # the head moved by ``motion``: the scanner sees at x what was at motion^-1 x
    inv = np.linalg.inv(motion)
    s0, mask = _phantom(world @ inv[:3, :3].T + inv[:3, 3])
    n = len(bvecs)
    dwi = np.repeat(s0.reshape(*shape, 1), n, axis=-1).astype(np.float32)
    dwi[..., 2:] *= 0.45
    nib.save(nib.Nifti1Image(dwi, aff), folder / "dwi.nii.gz")
    nib.save(nib.Nifti1Image(mask.reshape(shape).astype(np.uint8), aff), folder / "mask.nii.gz")
    (folder / "dwi.bval").write_text(" ".join(["0", "0"] + ["1200"] * (n - 2)) + "\n")
    (folder / "dwi.bvec").write_text("\n".join(" ".join(f"{x:.6f}" for x in row) for row in bvecs.T) + "\n")


def test_prepare_register_brings_a_moved_head_back(tmp_path, capsys):
    from tests.helpers import PLATFORMS, directions

    root = tmp_path / "moved"
    root.mkdir()
    (root / "dataset.yaml").write_text(yaml.safe_dump({"platforms": PLATFORMS}))
    bvecs = np.r_[np.zeros((2, 3)), directions(30, 3)]
    motion = _rigid(8.0, [8.0, -6.0, 4.0], CENTRE)
    base = (36, 44, 34)
    for s in ("sub-01", "sub-02"):
        _write_phantom_scan(root / s / "old", 2.4, base, np.eye(4), bvecs)
        _write_phantom_scan(root / s / "new", 2.4, base, motion if s == "sub-02" else np.eye(4), bvecs)
        _write_phantom_scan(
            root / s / "fine", 1.2, tuple(2 * n for n in base), motion if s == "sub-02" else np.eye(4), bvecs
        )
    with pytest.raises(InputError, match=r"sub-02/new/dwi.nii.gz: is not co-registered.*Dice.*prepare --register"):
        load_dataset(root)
    assert main(["dmri", "prepare", str(root), "--quiet"]) == 2
    assert "--register" in capsys.readouterr().err
    assert main(["dmri", "prepare", str(root), "--register", "--quiet"]) == 0
    reg_root = root / "derivatives" / "mrharmony-registered"
    assert sorted(str(p.relative_to(reg_root)) for p in reg_root.glob("*/*")) == ["sub-02/fine", "sub-02/new"]
    ds = load_dataset(root)  # co-registered now: the registered copies are read
    for name in ("new", "fine"):
        info = json.loads((reg_root / "sub-02" / name / "registration.json").read_text())
        assert info["MaskDiceBefore"] < 0.8 < 0.95 < info["MaskDiceAfter"], info
        np.testing.assert_allclose(np.asarray(info["Matrix"]), motion, atol=0.6)  # mm and ~0.5 degrees
        scan = ds.scan("sub-02", name)
        assert scan.dwi == reg_root / "sub-02" / name / "dwi.nii.gz"
        # the directions turn back with the head: FSL frame (x flipped), rotated by motion^T
        flip = np.diag([-1.0, 1.0, 1.0])
        expected = (flip @ motion[:3, :3].T @ flip @ bvecs[2:].T).T
        got = scan.gradients()[1][2:]
        angle = np.degrees(np.arccos(np.clip(np.abs((got * expected).sum(1)), 0, 1)))
        assert angle.max() < 1.5, angle.max()


def test_automatic_mask_finds_the_head(tmp_path):
    from mrharmony.data.dataset import automatic_mask
    from tests.helpers import directions

    bvecs = np.r_[np.zeros((2, 3)), directions(30, 3)]
    _write_phantom_scan(tmp_path / "scan", 2.4, (36, 44, 34), np.eye(4), bvecs)
    dwi = np.asarray(nib.load(tmp_path / "scan" / "dwi.nii.gz").dataobj)
    rng = np.random.default_rng(0)
    noisy = np.abs(dwi + rng.normal(0, 40, dwi.shape))  # background noise as a scanner has
    true = np.asarray(nib.load(tmp_path / "scan" / "mask.nii.gz").dataobj) > 0
    auto = automatic_mask(noisy, np.r_[0, 0, np.full(30, 1200.0)])
    assert 2 * (auto & true).sum() / (auto.sum() + true.sum()) > 0.9


# the table of layouts (mrharmony.data.layouts): every class against the contract of Layout


def _folder_of(name, root):
    """A folder in layout ``name`` (empty files: recognising a layout reads no file)."""
    files = {
        "mrharmony": ["sub-01/ge_st/dwi.nii.gz"],
        "mushac": ["sub-01/ge/st/dwi.nii.gz"],
        "bids": ["dataset_description.json", "sub-01/ses-ge/dwi/sub-01_ses-ge_dwi.nii.gz"],
    }[name]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("")
    return root


@pytest.mark.parametrize("cls", LAYOUTS, ids=lambda c: c.name)
def test_every_layout_keeps_the_contract(cls, tmp_path):
    assert issubclass(cls, Layout) and layout_named(cls.name) is cls
    assert [c.name for c in LAYOUTS].count(cls.name) == 1
    # it recognises a folder of its own layout and no other layout's
    for other in LAYOUTS:
        assert cls.recognises(_folder_of(other.name, tmp_path / other.name)) == (other is cls), other.name
    assert recognise_layout(tmp_path / cls.name) is cls
    # its own keys of dataset.yaml are fields of DatasetSpec
    assert all(k in DatasetSpec.model_fields for k in cls.own_keys)


def test_dataset_yaml_names_a_layout_of_the_table(tiny_dataset, tmp_path):
    root = _copy(tiny_dataset, tmp_path)
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    (root / "dataset.yaml").write_text(yaml.safe_dump({**spec, "layout": "cdmri"}))
    with pytest.raises(
        InputError, match=r"invalid value for 'layout': input should be 'mrharmony', 'mushac' or 'bids'"
    ):
        load_dataset(root)
    # a key of another layout does not go with this one
    (root / "dataset.yaml").write_text(yaml.safe_dump({**spec, "bids_entity": "ses"}))
    with pytest.raises(InputError, match=r"'bids_entity' goes with layout bids"):
        load_dataset(root)


class NestedLayout(FolderLayout):
    """A layout made up for the test: ``<subject>/dwi/<platform>/``."""

    name = "nested"

    @classmethod
    def recognises(cls, folder):
        return any(folder.glob("*/dwi/*/dwi.nii.gz"))

    def platform_folder(self, platform):
        return f"dwi/{platform.name}"


def test_a_new_layout_is_one_class_and_one_line_of_the_table(tiny_dataset, tmp_path):
    root = tmp_path / "nested"
    spec = yaml.safe_load((tiny_dataset / "dataset.yaml").read_text())
    for s in spec["subjects"]:
        for p in spec["platforms"]:
            shutil.copytree(tiny_dataset / s / p["name"], root / s / "dwi" / p["name"])
    spec.pop("subjects")  # found from the folders
    (root / "dataset.yaml").write_text(yaml.safe_dump({**spec, "layout": "nested"}))
    with pytest.raises(InputError, match="input should be 'mrharmony', 'mushac' or 'bids'"):
        load_dataset(root)
    LAYOUTS.insert(0, NestedLayout)
    try:
        assert recognise_layout(root) is NestedLayout
        ds = load_dataset(root, check_data=False)
        assert ds.subjects == ["sub-01", "sub-02", "sub-03"]
        assert ds.scan("sub-03", "connectom_sa").dwi == root / "sub-03" / "dwi" / "connectom_sa" / "dwi.nii.gz"
        shutil.rmtree(root / "sub-02" / "dwi" / "prisma_st")
        with pytest.raises(InputError, match=r"sub-02/dwi/prisma_st: is missing: subject sub-02 has no scan"):
            load_dataset(root, check_data=False)
    finally:
        LAYOUTS.remove(NestedLayout)


def test_describe_reads_a_mushac_folder_and_recognises_it(tiny_dataset, tmp_path):
    from mrharmony.data.describe import describe

    data = tmp_path / "cdmri"
    for s in ("sub-01", "sub-02"):
        for name in ("ge_st", "connectom_sa"):
            shutil.copytree(tiny_dataset / s / name, data / s / name.replace("_", "/"))
    (data / "sub-01" / "ge" / "st" / "dwi.json").write_text(json.dumps({"EchoTime": 0.08, "Manufacturer": "GE"}))
    for layout in ("mushac", None):  # None: the layout that recognises the folder
        out = tmp_path / f"study-{layout}"
        describe(data, out, layout=layout, input_platform="ge/st")
        spec = yaml.safe_load((out / "dataset.yaml").read_text())
        assert spec["layout"] == "mushac" and spec["subjects"] == ["sub-01", "sub-02"]
        plats = {p["name"]: p for p in spec["platforms"]}
        assert plats["ge_st"]["role"] == "input" and plats["connectom_sa"]["role"] == "target"
        assert (plats["ge_st"]["scanner"], plats["ge_st"]["protocol"], plats["ge_st"]["te_ms"]) == ("ge", "st", 80.0)
        assert plats["connectom_sa"]["voxel_size"] == [1.2, 1.2, 1.2]
        assert load_dataset(out, check_data=False).subjects == ["sub-01", "sub-02"]
    with pytest.raises(InputError, match=r"unknown layout 'mrharmony'; choose bids or mushac\."):
        describe(data, tmp_path / "x", layout="mrharmony", input_platform="ge/st")
    with pytest.raises(InputError, match=r"is not a folder of a layout that describe reads; pass --layout"):
        describe(tiny_dataset, tmp_path / "y", layout=None, input_platform="ge_st")
