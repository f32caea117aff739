"""Linear registration (dipy) and resampling between voxel grids in world coordinates.

Used where scans of different subjects must meet in one space (the voxelwise statistical
harmonizers learn their maps in a reference subject's space) and where a subject's platforms
are not co-registered. The transform is a 4x4 matrix ``M`` in world (mm) coordinates, in
dipy's convention: a point ``x`` of the static (reference) space corresponds to ``M @ x`` in the
moving image's space.

Registration is deterministic: mutual information on every voxel (no random sampling), centre
of mass, then translation, rigid and (for ``kind="affine"``) affine stages, coarse to fine.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Kind = Literal["rigid", "affine", "none"]


def register(static: np.ndarray, static_affine: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray,
             *, kind: Kind = "affine", level_iters: tuple[int, ...] = (200, 100, 50)) -> np.ndarray:
    """The world transform ``M`` that maps ``static``'s space onto ``moving``'s (3D images).

    ``kind="none"`` returns the identity: the images are taken as already aligned in world
    coordinates.
    """
    if kind == "none":
        return np.eye(4)
    import warnings

    from dipy.align.imaffine import (
        AffineRegistration,
        MutualInformationMetric,
        transform_centers_of_mass,
    )
    from dipy.align.transforms import (
        AffineTransform3D,
        RigidTransform3D,
        TranslationTransform3D,
    )

    static = np.asarray(static, np.float64)
    moving = np.asarray(moving, np.float64)
    reg = AffineRegistration(metric=MutualInformationMetric(nbins=32, sampling_proportion=None),
                             level_iters=list(level_iters), sigmas=[3.0, 1.0, 0.0][-len(level_iters):],
                             factors=[4, 2, 1][-len(level_iters):], verbosity=0)
    matrix = transform_centers_of_mass(static, static_affine, moving, moving_affine).affine
    stages = [TranslationTransform3D(), RigidTransform3D()] + ([AffineTransform3D()] if kind == "affine" else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dipy's notes on its own optimizer settings
        for transform in stages:
            matrix = reg.optimize(static, moving, transform, None, static_grid2world=static_affine,
                                  moving_grid2world=moving_affine, starting_affine=matrix).affine
    return np.asarray(matrix, np.float64)


def resample(data: np.ndarray, data_affine: np.ndarray, out_shape: tuple[int, int, int], out_affine: np.ndarray,
             matrix: np.ndarray | None = None, *, order: int = 1) -> np.ndarray:
    """``data`` (3D or 4D, channels last) sampled on the grid ``(out_shape, out_affine)``.

    Each output voxel at world point ``x`` takes the value of ``data`` at ``matrix @ x``
    (identity when ``matrix`` is None); points outside ``data`` get 0. Linear interpolation
    by default.
    """
    from scipy import ndimage

    m = np.eye(4) if matrix is None else np.asarray(matrix, np.float64)
    vox = np.linalg.inv(data_affine) @ m @ out_affine  # output voxel -> data voxel
    data = np.asarray(data)
    out_shape = tuple(int(s) for s in out_shape[:3])
    if data.ndim == 3:
        return ndimage.affine_transform(data.astype(np.float32), vox[:3, :3], vox[:3, 3], output_shape=out_shape,
                                        order=order, mode="constant", cval=0.0)
    out = np.empty((*out_shape, data.shape[3]), np.float32)
    for c in range(data.shape[3]):
        out[..., c] = ndimage.affine_transform(data[..., c].astype(np.float32), vox[:3, :3], vox[:3, 3],
                                               output_shape=out_shape, order=order, mode="constant", cval=0.0)
    return out


def scaled_affine(affine: np.ndarray, zoom: float) -> np.ndarray:
    """The affine of the grid whose voxels are ``zoom`` times larger and that shares ``affine``'s
    corner (``zoom = 1/r``: a 2x target's grid for r = 2; ``zoom = r``: back to the coarse grid)."""
    a = np.array(affine, float)
    if zoom == 1:
        return a
    out = a.copy()
    out[:3, :3] = a[:3, :3] * zoom
    corner = a[:3, :3] @ np.full(3, -0.5) + a[:3, 3]
    out[:3, 3] = corner - out[:3, :3] @ np.full(3, -0.5)
    return out


def finer_affine(affine: np.ndarray, r: int) -> np.ndarray:
    """The affine of the grid ``r`` times finer than ``affine``'s that shares its corner (a 2x
    target's grid for r = 2: every voxel of ``affine``'s grid holds r^3 of its voxels).

    Examples:
        >>> finer_affine(np.diag([2.4, 2.4, 2.4, 1.0]), 2)[:3, 3].tolist()
        [-0.6, -0.6, -0.6]
    """
    return scaled_affine(affine, 1.0 / r)


def block_mean(data: np.ndarray, r: int) -> np.ndarray:
    """Average of each r^3 block of a grid r times finer (the exact coarse-grid value of a shared-corner grid)."""
    if r == 1:
        return np.asarray(data)
    x, y, z = (s // r for s in data.shape[:3])
    d = np.asarray(data)[: x * r, : y * r, : z * r]
    return d.reshape(x, r, y, r, z, r, *d.shape[3:]).mean(axis=(1, 3, 5))


def upsample_linear(data: np.ndarray, r: int) -> np.ndarray:
    """Trilinear interpolation of ``data`` (3 spatial axes first) onto the grid r times finer that
    shares its corner, edge values held beyond the outer voxel centres.

    Separable: one axis at a time, each fine voxel a weighted sum of its two nearest coarse voxels
    (the result of ``scipy.ndimage.map_coordinates(order=1, mode="nearest")`` at the fine voxel
    centres, at a fraction of its cost).
    """
    out = np.asarray(data, np.float32)
    for axis in range(3):
        n = out.shape[axis]
        x = (np.arange(n * r, dtype=np.float64) + 0.5) / r - 0.5  # fine centres in coarse voxels
        i0 = np.floor(x).astype(int)
        w = (x - i0).astype(np.float32)
        lo, hi = np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1)
        shape = [1] * out.ndim
        shape[axis] = -1
        w = w.reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out


def upsample_masked(data: np.ndarray, mask: np.ndarray, r: int) -> np.ndarray:
    """Linear interpolation of ``data`` (channels last) inside ``mask`` onto the grid r times finer.

    Normalized interpolation: values outside the mask do not leak in (the interpolated data
    times mask over the interpolated mask); output voxels of input voxels outside the mask are 0.
    """
    m = np.asarray(mask, bool)
    if r == 1:
        out = np.asarray(data, np.float32).copy()
        out[~m] = 0
        return out
    weight = upsample_linear(m.astype(np.float32), r)
    fine_mask = m.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    ok = fine_mask & (weight > 1e-6)
    out = np.zeros((*weight.shape, data.shape[-1]), np.float32)
    w = weight[ok][:, None]
    for c in range(0, data.shape[-1], 4):  # a few channels at a time: memory of the output and a little more
        v = upsample_linear(np.where(m[..., None], data[..., c:c + 4], 0).astype(np.float32), r)
        out[..., c:c + 4][ok] = v[ok] / w
    return out
