"""Real-data layouts (MUSHAC / CDMRI folders), co-registration checks and ``prepare --register``."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml

from mrharmony.cli import main
from mrharmony.data import load_dataset
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
        _write_phantom_scan(root / s / "fine", 1.2, tuple(2 * n for n in base),
                            motion if s == "sub-02" else np.eye(4), bvecs)
    with pytest.raises(InputError, match=r"sub-02/new/dwi.nii.gz: is not co-registered.*Dice.*prepare --register"):
        load_dataset(root)
    assert main(["prepare", str(root), "--quiet"]) == 2
    assert "--register" in capsys.readouterr().err
    assert main(["prepare", str(root), "--register", "--quiet"]) == 0
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
