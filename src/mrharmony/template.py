"""Group templates: the average anatomy of several images and each image's map to it (dipy).

The usual iteration of template construction (as ``antsMultivariateTemplateConstruction``,
which the RISH reference pipeline runs with SyN), kept coarse and cheap:

1. every image is registered linearly (:func:`~mrharmony.registration.register`, ``prealign``)
   to the ``reference`` one; their mean on the reference's grid, in the frame of the average
   linear map (the images' average size, shape and orientation about the reference's centre of
   mass), is the first template;
2. ``rounds`` times: every image is registered to the current template by SyN
   (:func:`~mrharmony.registration.register_syn`, after its linear pre-alignment), and the images
   brought into template space are averaged. Between rounds the template's shape moves
   (``shape_step``) towards the average anatomy: the images' average displacement from the
   template (linear pre-alignment included, its average translation left out) is inverted and
   applied to the mean image, so that the template does not keep the reference image's shape,
   size or pose.

The template lives on the reference image's grid (its voxels and field of view). The last
round's maps bring every image into the frame of the returned template (its image is their
average there). Everything is deterministic: no random draws anywhere.

Used for the voxelwise statistical harmonizers' common space (``registration: syn``); any set of
3D images of one contrast with their affines will do (e.g. per-site templates of controls).

Examples:
    >>> import numpy as np
    >>> from mrharmony.template import build_template
    >>> img = np.zeros((12, 12, 12), np.float32); img[4:8, 3:9, 4:8] = 1
    >>> t = build_template([img, img], [np.eye(4), np.eye(4)], rounds=0, prealign="none")
    >>> bool(np.array_equal(t.image, img)), len(t.warps)
    (True, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mrharmony.registration import SYN_LEVEL_ITERS, Kind, Warp, register, register_syn


@dataclass
class Template:
    """A template image on its grid, and each input image's map to it.

    ``warps[i]`` maps template space onto image ``i``'s space: ``warps[i].to_static(data,
    data_affine, template.image.shape, template.affine)`` brings data of image ``i``'s space
    into the template, ``warps[i].to_moving(...)`` takes template data back.
    """

    image: np.ndarray  # (X, Y, Z) float32
    affine: np.ndarray
    mask: np.ndarray | None  # where at least half of the images' masks land; None without masks
    warps: list[Warp]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape[:3])

    def to_template(self, i: int, data: np.ndarray, data_affine: np.ndarray) -> np.ndarray:
        """Data of image ``i``'s space (3D or 4D, any grid of that space) on the template's grid."""
        return self.warps[i].to_static(data, data_affine, self.shape, self.affine)

    def from_template(self, i: int, data: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
        """Template-space data on the grid ``(shape, affine)`` of image ``i``'s space."""
        return self.warps[i].to_moving(data, self.affine, shape, affine)


def build_template(
    images: Sequence[np.ndarray],
    affines: Sequence[np.ndarray],
    *,
    masks: Sequence[np.ndarray] | None = None,
    rounds: int = 2,
    level_iters: tuple[int, ...] = SYN_LEVEL_ITERS,
    radius: int = 2,
    prealign: Kind = "affine",
    shape_step: float = 1.0,
    reference: int = 0,
    progress=None,
) -> Template:
    """The template of ``images`` (3D, one contrast) and each one's map to it (see the module).

    Args:
        images, affines: the images and their voxel-to-world affines.
        masks: optional brain masks of the images; the template's mask is where at least half of
            them land.
        rounds: SyN rounds; 0 gives the linearly aligned mean and linear maps.
        level_iters, radius: SyN's iterations per pyramid level (coarsest first) and the
            half-width of its correlation window, in voxels.
        prealign: the linear pre-alignment to the reference image (``affine``, ``rigid``, or
            ``none`` where world coordinates are already aligned).
        shape_step: the fraction of the average displacement by which the template's shape moves
            between rounds (0: the template keeps the reference image's shape).
        reference: the image whose grid (and position) the template takes.
        progress: anything with ``update(n)``, told of each registration done
            (``len(images) * (1 + rounds)`` in all).
    """
    n = len(images)
    if n == 0 or len(affines) != n or (masks is not None and len(masks) != n):
        raise ValueError("a template needs one affine (and one mask, where masks are given) per image")
    if any(np.ndim(im) != 3 for im in images):
        raise ValueError("template images must be 3D")
    if rounds < 0 or not 0.0 <= shape_step <= 1.0:
        raise ValueError("rounds must be >= 0 and shape_step within [0, 1]")
    images = [np.asarray(im, np.float32) for im in images]
    affines = [np.asarray(a, np.float64) for a in affines]
    shape, affine = images[reference].shape, affines[reference]
    matrices = []
    for i in range(n):
        matrices.append(
            np.eye(4) if i == reference else register(images[reference], affine, images[i], affines[i], kind=prealign)
        )
        _tick(progress)
    matrices = _average_frame(matrices, images[reference], affine)
    warps = [Warp(m) for m in matrices]
    template = _mean_in_template(images, affines, warps, shape, affine)
    for k in range(rounds):
        warps = []
        for i in range(n):
            warps.append(
                register_syn(
                    template,
                    affine,
                    images[i],
                    affines[i],
                    prealign=matrices[i],
                    level_iters=level_iters,
                    radius=radius,
                )
            )
            _tick(progress)
        mean = _mean_in_template(images, affines, warps, shape, affine)
        if k == rounds - 1 or shape_step == 0:
            template = mean
        else:
            template, linear = _reshaped(mean, affine, warps, shape_step)
            # the next round starts from the pre-alignment to the moved template: a template
            # point y was the point linear^-1 y of the old one
            matrices = [m @ np.linalg.inv(linear) for m in matrices]
    mask = None
    if masks is not None:
        mask = _mean_in_template([np.asarray(m, np.float32) for m in masks], affines, warps, shape, affine) >= 0.5
    return Template(image=template.astype(np.float32), affine=affine, mask=mask, warps=warps)


def _tick(progress) -> None:
    if progress is not None:
        progress.update(1)


def _average_frame(matrices: list[np.ndarray], image: np.ndarray, affine: np.ndarray) -> list[np.ndarray]:
    """The matrices re-expressed from the frame of the average linear map: ``M_i @ inv(B)``, with
    ``B`` the mean of the linear parts of the ``M_i`` about the centre of mass ``c`` of ``image``
    (``B x = c + mean_i(L_i) (x - c)``: the average size, shape and orientation, the reference's
    position), so that the first template is not biased towards the reference image."""
    from scipy import ndimage

    weight = np.clip(image, 0, None)
    c = affine[:3, 3].copy()
    if weight.sum() > 0:
        c = affine[:3, :3] @ np.asarray(ndimage.center_of_mass(weight)) + affine[:3, 3]
    b = np.eye(4)
    b[:3, :3] = np.mean([m[:3, :3] for m in matrices], axis=0)
    b[:3, 3] = c - b[:3, :3] @ c
    b_inv = np.linalg.inv(b)
    return [m @ b_inv for m in matrices]


def _mean_in_template(images, affines, warps, shape, affine) -> np.ndarray:
    total = np.zeros(shape, np.float64)
    for im, a, w in zip(images, affines, warps):
        total += w.to_static(im, a, shape, affine)
    return (total / len(images)).astype(np.float32)


def _reshaped(mean: np.ndarray, affine: np.ndarray, warps: list[Warp], step: float) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` moved by the inverse of ``step`` times the images' average displacement.

    A template point ``x`` lies at ``x + u_i(x)`` in image ``i`` (its linear pre-alignment
    included, so that the template takes the images' average size and pose, not the reference's);
    the average anatomy has it at ``x + step * (mean_i u_i(x) - t)`` (the map ``psi``; ``t``, the
    average of that displacement weighted by the template's intensity, is left out, so that the
    anatomy's centre of mass stays where the reference's grid holds it, whatever the images'
    world origins), and the new template at ``y`` is ``mean`` at ``psi^-1(y)`` (dipy's
    fixed-point inversion of the displacement). Returns it and the linear part of ``psi`` (its
    least-squares fit, weighted as ``t``).
    """
    from dipy.align.imwarp import DiffeomorphicMap
    from dipy.align.vector_fields import invert_vector_field_fixed_point_3d

    affine = np.asarray(affine, np.float64)

    shape = mean.shape
    x = np.indices(shape, dtype=np.float64).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    u = np.zeros_like(x)
    for w in warps:
        u += w.points(x) - x
    u /= len(warps)
    weight = np.clip(mean, 0, None).reshape(-1)  # the template's anatomy keeps its centre of mass
    t = (weight @ u) / weight.sum() if weight.sum() > 0 else u.mean(0)
    u = step * (u - t)
    # the linear part of psi: weighted least squares of x + u(x) on (x, 1)
    design = np.c_[x, np.ones(len(x))] * np.sqrt(weight)[:, None]
    fit = np.linalg.lstsq(design, (x + u) * np.sqrt(weight)[:, None], rcond=None)[0]
    linear = np.eye(4)
    linear[:3, :] = fit.T
    u = u.reshape(*shape, 3).astype(np.float32)
    world2grid = np.linalg.inv(affine)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    psi = DiffeomorphicMap(
        3,
        shape,
        disp_grid2world=affine,
        domain_shape=shape,
        domain_grid2world=affine,
        codomain_shape=shape,
        codomain_grid2world=affine,
    )
    psi.forward = u
    psi.backward = np.asarray(invert_vector_field_fixed_point_3d(u, world2grid, spacing, 20, 1e-3), np.float32)
    return Warp(np.eye(4), psi).to_moving(mean, affine, shape, affine), linear
