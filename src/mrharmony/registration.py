"""Registration (dipy) and resampling between voxel grids in world coordinates.

Used where scans of different subjects must meet in one space (the voxelwise statistical
harmonizers learn their maps in a common space) and where a subject's platforms are not
co-registered. A linear transform is a 4x4 matrix ``M`` in world (mm) coordinates, in dipy's
convention: a point ``x`` of the static (reference) space corresponds to ``M @ x`` in the moving
image's space. A nonlinear one (:func:`register_syn`) is a :class:`Warp`: that matrix as the
pre-alignment, then dipy's symmetric diffeomorphic registration (SyN) with the local
cross-correlation metric.

Registration is deterministic: mutual information on every voxel (no random sampling), centre
of mass, then translation, rigid and (for ``kind="affine"``) affine stages, coarse to fine; SyN
has no random draws either.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Kind = Literal["rigid", "affine", "none"]

#: SyN's iterations per pyramid level, coarsest first (few: the maps are smooth and the grids coarse).
SYN_LEVEL_ITERS = (10, 5)


def register(
    static: np.ndarray,
    static_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    *,
    kind: Kind = "affine",
    level_iters: tuple[int, ...] = (200, 100, 50),
) -> np.ndarray:
    """The world transform ``M`` that maps ``static``'s space onto ``moving``'s (3D images).

    ``kind="none"`` returns the identity: the images are taken as already aligned in world
    coordinates. The pyramid (``level_iters``, coarsest first, at 4, 2 and 1 times the voxel
    size) keeps only the levels at which the thinnest axis still spans 8 voxels.
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
    # no pyramid level coarser than 8 voxels along the thinnest axis (a thin slab registers at
    # full resolution only: coarser, its few slices let the optimizer wander off)
    n = min(len(level_iters), 3)
    while n > 1 and min(static.shape[:3] + moving.shape[:3]) / [4, 2, 1][-n] < 8:
        n -= 1
    reg = AffineRegistration(
        metric=MutualInformationMetric(nbins=32, sampling_proportion=None),
        level_iters=list(level_iters)[-n:],
        sigmas=[3.0, 1.0, 0.0][-n:],
        factors=[4, 2, 1][-n:],
        verbosity=0,
    )
    matrix = transform_centers_of_mass(static, static_affine, moving, moving_affine).affine
    stages = [TranslationTransform3D(), RigidTransform3D()] + ([AffineTransform3D()] if kind == "affine" else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dipy's notes on its own optimizer settings
        for transform in stages:
            matrix = reg.optimize(
                static,
                moving,
                transform,
                None,
                static_grid2world=static_affine,
                moving_grid2world=moving_affine,
                starting_affine=matrix,
            ).affine
    return np.asarray(matrix, np.float64)


def resample(
    data: np.ndarray,
    data_affine: np.ndarray,
    out_shape: tuple[int, int, int],
    out_affine: np.ndarray,
    matrix: np.ndarray | None = None,
    *,
    order: int = 1,
) -> np.ndarray:
    """``data`` (3D or 4D, channels last) sampled on the grid ``(out_shape, out_affine)``.

    Each output voxel at world point ``x`` takes the value of ``data`` at ``matrix @ x``
    (identity when ``matrix`` is None). Linear interpolation by default; a point within half a
    voxel beyond ``data``'s outer voxel centres takes the edge voxel's value (a voxel covers its
    cube: a thin slab shifted by a fraction of a voxel keeps its edge slices), points further out
    get 0.
    """
    m = np.eye(4) if matrix is None else np.asarray(matrix, np.float64)
    vox = np.linalg.inv(data_affine) @ m @ out_affine  # output voxel -> data voxel
    out_shape = tuple(int(s) for s in out_shape[:3])
    return _sample(data, lambda v, o: _affine_transform(v, vox, out_shape, o), order=order)


def _affine_transform(volume: np.ndarray, vox: np.ndarray, out_shape, order: int) -> np.ndarray:
    from scipy import ndimage

    # the volume is padded by one voxel on each side: its voxel i is the data's voxel i - 1
    return ndimage.affine_transform(
        volume, vox[:3, :3], vox[:3, 3] + 1, output_shape=out_shape, order=order, mode="constant", cval=0.0
    )


def _sample(data: np.ndarray, interpolate, *, order: int = 1) -> np.ndarray:
    """``data`` (3D or 4D, channels last) sampled by ``interpolate(volume, order)``, a function
    that samples one 3D float32 volume padded by one voxel on each side at the wanted points
    (zero outside the padded volume): the edge held within half a voxel, 0 further out (as
    :func:`resample` describes)."""
    data = np.asarray(data)
    inside = np.zeros(tuple(s + 2 for s in data.shape[:3]), np.float32)
    inside[1:-1, 1:-1, 1:-1] = 1.0
    keep = np.asarray(interpolate(inside, 0)) > 0.5  # the nearest voxel of the padded grid is the data's

    def one(v):
        out = np.asarray(interpolate(np.pad(np.asarray(v, np.float32), 1, mode="edge"), order), np.float32)
        out[~keep] = 0.0
        return out

    if data.ndim == 3:
        return one(data)
    out = np.empty((*keep.shape, data.shape[3]), np.float32)
    for c in range(data.shape[3]):
        out[..., c] = one(data[..., c])
    return out


class Warp:
    """A map from a static space to a moving one: a world matrix ``M`` (static -> moving, as
    :func:`register` returns it), optionally followed by a diffeomorphic map (dipy's
    ``DiffeomorphicMap`` from SyN, ``M`` as its pre-alignment).

    ``to_static`` brings data of the moving space onto a grid of the static space, ``to_moving``
    the other way; any grid of either space will do (the data carry their own affine). Data are
    3D or 4D (channels last, warped one channel at a time); interpolation is linear, and points
    beyond the data are treated as :func:`resample` treats them.

    Examples:
        >>> w = Warp(np.eye(4))
        >>> w.to_static(np.ones((2, 2, 2)), np.eye(4), (3, 2, 2), np.eye(4))[:, 0, 0].tolist()
        [1.0, 1.0, 0.0]
    """

    def __init__(self, matrix: np.ndarray, diffeo=None):
        self.matrix = np.asarray(matrix, np.float64)
        self.diffeo = diffeo

    @property
    def linear(self) -> bool:
        return self.diffeo is None

    def to_static(self, data: np.ndarray, data_affine: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
        """``data`` (moving space) sampled on the static-space grid ``(shape, affine)``."""
        if self.diffeo is None:
            return resample(data, data_affine, shape, affine, self.matrix)
        return _warped(data, data_affine, shape, affine, self.diffeo.transform_points)

    def to_moving(self, data: np.ndarray, data_affine: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
        """``data`` (static space) sampled on the moving-space grid ``(shape, affine)``."""
        if self.diffeo is None:
            return resample(data, data_affine, shape, affine, np.linalg.inv(self.matrix))
        return _warped(data, data_affine, shape, affine, self.diffeo.transform_points_inverse)

    def points(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) of the static space mapped into the moving space."""
        points = np.asarray(points, np.float64)
        if self.diffeo is None:
            return points @ self.matrix[:3, :3].T + self.matrix[:3, 3]
        return np.asarray(self.diffeo.transform_points(points), np.float64)


def _warped(data, data_affine, shape, affine, transform_points) -> np.ndarray:
    """``data`` sampled where dipy's map (``transform_points``) sends the voxel centres of the grid
    ``(shape, affine)``: the values of the map's own ``transform``, with :func:`resample`'s
    treatment of the volume's edge."""
    from scipy import ndimage

    shape = tuple(int(s) for s in shape[:3])
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    world = np.asarray(transform_points(grid, coord2world=np.asarray(affine, np.float64)), np.float64)
    inv = np.linalg.inv(data_affine)
    coords = (world @ inv[:3, :3].T + inv[:3, 3] + 1).T  # in the volume padded by one voxel
    return _sample(
        data, lambda v, o: ndimage.map_coordinates(v, coords, order=o, mode="constant", cval=0.0).reshape(shape)
    )


def register_syn(
    static: np.ndarray,
    static_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    *,
    prealign: np.ndarray | None = None,
    kind: Kind = "affine",
    level_iters: tuple[int, ...] = SYN_LEVEL_ITERS,
    radius: int = 2,
) -> Warp:
    """The nonlinear :class:`Warp` from ``static``'s space to ``moving``'s (3D images).

    A linear pre-alignment (``prealign``, or :func:`register` of kind ``kind``), then dipy's
    ``SymmetricDiffeomorphicRegistration`` with the local cross-correlation metric (``CCMetric``,
    window of ``2 * radius + 1`` voxels), ``level_iters`` iterations per pyramid level, coarsest
    first (fewer levels and a smaller window where ``static`` is too small a volume for them, see
    :func:`syn_plan`). The displacement fields live on ``static``'s grid.
    """
    from dipy.align.imwarp import SymmetricDiffeomorphicRegistration
    from dipy.align.metrics import CCMetric

    static = np.asarray(static, np.float64)
    moving = np.asarray(moving, np.float64)
    if prealign is None:
        prealign = register(static, static_affine, moving, moving_affine, kind=kind)
    level_iters, radius = syn_plan(static.shape, level_iters, radius)
    syn = SymmetricDiffeomorphicRegistration(CCMetric(3, radius=radius), level_iters=list(level_iters))
    syn.verbosity = 0  # dipy reports every pyramid level otherwise
    diffeo = syn.optimize(
        static,
        moving,
        static_grid2world=np.asarray(static_affine, np.float64),
        moving_grid2world=np.asarray(moving_affine, np.float64),
        prealign=np.asarray(prealign, np.float64),
    )
    return Warp(prealign, diffeo)


def syn_plan(shape, level_iters: tuple[int, ...], radius: int) -> tuple[tuple[int, ...], int]:
    """The pyramid levels and correlation window SyN can use on a volume of ``shape``.

    dipy halves the grid at each coarser level and needs every axis of the coarsest one longer
    than the window (``2 * radius + 1``): the window shrinks (to 1 at least), then the coarsest
    levels are dropped, until it fits.

    Examples:
        >>> syn_plan((64, 64, 64), (10, 5), 2)
        ((10, 5), 2)
        >>> syn_plan((12, 12, 8), (10, 5), 2)
        ((10, 5), 1)
        >>> syn_plan((12, 12, 4), (10, 5), 2)
        ((5,), 1)
    """
    levels = tuple(int(n) for n in level_iters)
    while True:
        coarsest = min(int(np.floor(s / 2 ** (len(levels) - 1) + 0.5)) for s in shape[:3])
        r = min(int(radius), (coarsest - 2) // 2)
        if r >= 1:
            return levels, r
        if len(levels) == 1:
            raise ValueError(f"a volume of shape {tuple(shape[:3])} is too small for nonlinear registration")
        levels = levels[1:]


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
        v = upsample_linear(np.where(m[..., None], data[..., c : c + 4], 0).astype(np.float32), r)
        out[..., c : c + 4][ok] = v[ok] / w
    return out
