"""Small hand-made traveling-heads datasets for tests (no simulator: milliseconds to build)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

PLATFORMS = [
    {"name": "old", "role": "input", "voxel_size": 2.4, "bvalues": [0, 1200], "te_ms": 89, "n_directions": 30},
    {"name": "new", "role": "target", "voxel_size": 2.4, "bvalues": [0, 1200], "te_ms": 89, "n_directions": 30},
    {"name": "fine", "role": "target", "voxel_size": 1.2, "bvalues": [0, 1200], "te_ms": 68, "n_directions": 30},
]
IN_SHAPE = (6, 6, 4)


def directions(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def grid_affine(voxel: float, corner=(-10.0, -20.0, 5.0)) -> np.ndarray:
    a = np.diag([voxel, voxel, voxel, 1.0])
    a[:3, 3] = np.asarray(corner) + voxel / 2
    return a


def write_scan(folder: Path, voxel: float, n_dirs: int = 30, *, seed: int = 0, n_b0: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    r = int(round(2.4 / voxel))
    shape = tuple(s * r for s in IN_SHAPE)
    rng = np.random.default_rng(seed)
    n = n_dirs + n_b0
    bvals = np.r_[np.zeros(n_b0), np.full(n_dirs, 1200.0)]
    bvecs = np.r_[np.zeros((n_b0, 3)), directions(n_dirs, seed + 1)]
    data = rng.uniform(200, 1000, shape + (n,)).astype(np.int16)
    data[..., :n_b0] = 1500
    aff = grid_affine(voxel)
    nib.save(nib.Nifti1Image(data, aff), folder / "dwi.nii.gz")
    mask = np.zeros(shape, np.uint8)
    mask[r:-r, r:-r, r:-r] = 1
    nib.save(nib.Nifti1Image(mask, aff), folder / "mask.nii.gz")
    (folder / "dwi.bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
    (folder / "dwi.bvec").write_text("\n".join(" ".join(f"{x:.6f}" for x in row) for row in bvecs.T) + "\n")


def make_dataset(root: Path, *, subjects=("s1", "s2"), platforms=None) -> Path:
    platforms = platforms or PLATFORMS
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text(
        yaml.safe_dump({"name": "test", "platforms": platforms, "subjects": list(subjects)})
    )
    for i, s in enumerate(subjects):
        for j, p in enumerate(platforms):
            write_scan(root / s / p["name"], p["voxel_size"], p["n_directions"], seed=10 * i + j)
    return root
