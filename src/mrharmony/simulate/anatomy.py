"""Anatomy of the synthetic traveling heads: template tissue maps warped into distinct subjects.

The anatomy comes from the MNI152 2009 maps that nilearn ships (grey matter, white matter and
brain mask; CSF is the mask minus GM and WM). On the template, once per run:

* the fibre orientation of white matter is the direction of least change of the smoothed WM
  map: the eigenvector of the smallest eigenvalue of its structure tensor, which runs along
  tracts and sheets of white matter;
* grey matter gets a weak anisotropy radial to the cortex (the gradient of the smoothed WM map);
* near the midline, between the ventricles and the cingulate, the corpus callosum runs
  left-right;
* two blobs in the left and right centrum semiovale hold a second fibre population that
  crosses the first (the classic crossing of the corona radiata, corpus callosum and SLF).

Orientations are stored as tensors ``v v^T`` so that interpolation does not suffer from the sign
ambiguity of eigenvectors.

Each subject is the template under a smooth random deformation with a global size change and
a head position; each scan adds a small rigid misregistration. Orientations are reoriented with
the Jacobian of the warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Channels of the template fields, in order.
CHANNELS = ("brain", "gm", "wm", "csf", "txx", "txy", "txz", "tyy", "tyz", "tzz", "rx", "ry", "rz", "crossing")
MARGIN_MM = 20.0


@dataclass
class TemplateFields:
    """Template-space maps (channels x X x Y x Z, float32) and their affine (voxel -> MNI mm)."""

    data: np.ndarray
    affine: np.ndarray

    def channel(self, name: str) -> np.ndarray:
        return self.data[CHANNELS.index(name)]


def load_template_maps(lo_mm: np.ndarray, hi_mm: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """GM, WM, CSF, brain probability maps (1 mm MNI152 2009, from nilearn), cropped to a box."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nilearn import datasets

        gm_img = datasets.load_mni152_gm_template(resolution=1)
        wm_img = datasets.load_mni152_wm_template(resolution=1)
        mask_img = datasets.load_mni152_brain_mask(resolution=1)
    affine = gm_img.affine
    inv = np.linalg.inv(affine)
    a = np.floor(inv[:3, :3] @ (lo_mm - MARGIN_MM) + inv[:3, 3]).astype(int)
    b = np.ceil(inv[:3, :3] @ (hi_mm + MARGIN_MM) + inv[:3, 3]).astype(int) + 1
    lo_i, hi_i = np.minimum(a, b), np.maximum(a, b)
    lo_i = np.clip(lo_i, 0, np.asarray(gm_img.shape))
    hi_i = np.clip(hi_i, 0, np.asarray(gm_img.shape))
    sl = tuple(slice(int(x), int(y)) for x, y in zip(lo_i, hi_i))

    def get(img) -> np.ndarray:
        d = np.asarray(img.get_fdata(dtype=np.float32)[sl], dtype=np.float32)
        return d / 255.0 if d.max() > 1.5 else d  # probabilities, whatever the stored scaling

    gm, wm, brain = get(gm_img), get(wm_img), get(mask_img)
    brain = (brain > 0.5).astype(np.float32)
    # the probability maps leak a little outside the mask; keep tissue inside the brain
    gm *= brain
    wm *= brain
    total = gm + wm
    over = total > 1
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.clip(brain - gm - wm, 0, 1)
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ lo_i + affine[:3, 3]
    return {"gm": gm, "wm": wm, "csf": csf, "brain": brain}, crop_affine


def template_fields(lo_mm, hi_mm) -> TemplateFields:
    """Compute every template-space field needed to render subjects inside a box (MNI mm)."""
    maps, affine = load_template_maps(np.asarray(lo_mm, float), np.asarray(hi_mm, float))
    wm = maps["wm"]
    smooth = ndimage.gaussian_filter(wm, 1.5)
    grads = np.stack(np.gradient(smooth))  # (3, X, Y, Z), per mm
    # structure tensor, integrated over ~4 mm
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    st = np.stack([ndimage.gaussian_filter(grads[i] * grads[j], 4.0) for i, j in pairs])
    tensor = np.zeros_like(st)
    sel = wm > 0.02
    if sel.any():
        m = np.empty((int(sel.sum()), 3, 3), np.float64)
        for c, (i, j) in enumerate(pairs):
            m[:, i, j] = st[c][sel]
            m[:, j, i] = st[c][sel]
        _, vecs = np.linalg.eigh(m)
        v = vecs[:, :, 0]  # smallest eigenvalue: along the tract
        for c, (i, j) in enumerate(pairs):
            tensor[c][sel] = v[:, i] * v[:, j]
    # corpus callosum: near the midline, white matter runs left-right whatever the local shape
    coords = _world_coords(affine, wm.shape)
    cc = (np.exp(-0.5 * (coords[0] / 7.0) ** 2) * (coords[2] > 0) * (coords[2] < 40)).astype(np.float32)
    cc *= sel
    lr = np.array([1.0, 0, 0, 0, 0, 0], np.float32)  # e_x e_x^T in (xx, xy, xz, yy, yz, zz)
    tensor = (1 - cc) * tensor + cc * lr[:, None, None, None]
    # radial direction in cortex: normalized gradient of a more smoothed WM map
    g2 = np.stack(np.gradient(ndimage.gaussian_filter(wm, 3.0)))
    norm = np.linalg.norm(g2, axis=0)
    radial = np.where(norm > 1e-6, g2 / np.maximum(norm, 1e-6), 0).astype(np.float32)
    # crossing blobs in the centrum semiovale (MNI mm)
    crossing = np.zeros(wm.shape, np.float32)
    for cx in (-27.0, 27.0):
        d2 = ((coords[0] - cx) / 11.0) ** 2 + ((coords[1] + 12.0) / 20.0) ** 2 + ((coords[2] - 26.0) / 11.0) ** 2
        crossing = np.maximum(crossing, np.exp(-0.5 * d2 * 2.0).astype(np.float32))
    crossing *= np.clip(wm * 1.5, 0, 1)
    data = np.concatenate(
        [
            np.stack([maps["brain"], maps["gm"], maps["wm"], maps["csf"]]),
            tensor.astype(np.float32),
            radial,
            crossing[None],
        ]
    ).astype(np.float32)
    return TemplateFields(data=data, affine=affine)


def _world_coords(affine: np.ndarray, shape) -> np.ndarray:
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape((3, *shape)).astype(np.float32)


def rotation_matrix(angles_rad) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class SubjectWarp:
    """Map from a subject's scanner space (mm) to template space (MNI mm).

    ``q = centre + R (S (p - centre)) + u(p)``: a head position (rotation R), a global size
    change (S; S > 1 means a smaller head, since the template is sampled further out) and a
    smooth displacement u sampled on a coarse grid.
    """

    centre: np.ndarray
    rotation: np.ndarray
    scale: np.ndarray
    disp: np.ndarray  # (3, gx, gy, gz), mm
    disp_origin: np.ndarray
    disp_spacing: float

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        lo_mm,
        hi_mm,
        *,
        amplitude_mm: float = 3.0,
        spacing_mm: float = 8.0,
        size_sd: float = 0.05,
    ) -> SubjectWarp:
        lo = np.asarray(lo_mm, float) - MARGIN_MM
        hi = np.asarray(hi_mm, float) + MARGIN_MM
        shape = tuple(int(s) for s in np.ceil((hi - lo) / spacing_mm).astype(int) + 1)
        raw = rng.standard_normal((3, *shape))
        smooth = np.stack([ndimage.gaussian_filter(c, 1.5, mode="nearest") for c in raw])
        smooth *= amplitude_mm / max(float(smooth.std()), 1e-6)
        size = rng.normal(1.0, size_sd)
        scale = size * rng.normal(1.0, 0.02, 3)
        angles = np.deg2rad(rng.normal(0.0, 2.0, 3))
        centre = 0.5 * (np.asarray(lo_mm, float) + np.asarray(hi_mm, float))
        return cls(centre, rotation_matrix(angles), scale, smooth.astype(np.float32), lo, spacing_mm)

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """Map points (3, N) in scanner mm to template mm."""
        rel = pts - self.centre[:, None]
        out = self.centre[:, None] + self.rotation @ (self.scale[:, None] * rel)
        grid = (pts - self.disp_origin[:, None]) / self.disp_spacing
        for c in range(3):
            out[c] += ndimage.map_coordinates(self.disp[c], grid, order=1, mode="nearest")
        return out


def rigid(rng: np.random.Generator, translation_sd_mm: float, rotation_sd_deg: float):
    """A small random rigid transform (R, t), for the residual misregistration of a scan."""
    r = rotation_matrix(np.deg2rad(rng.normal(0.0, rotation_sd_deg, 3)))
    t = rng.normal(0.0, translation_sd_mm, 3)
    return r, t


def sample_anatomy(
    fields: TemplateFields, warp: SubjectWarp, affine: np.ndarray, shape, scan_rigid=None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render a subject's anatomy on a grid (the fine simulation grid of one scan).

    Args:
        fields: template fields.
        warp: the subject's warp.
        affine, shape: the grid (voxel -> scanner mm).
        scan_rigid: optional (R, t) misregistration, applied about the warp centre.

    Returns:
        A dict with ``brain, gm, wm, csf, crossing`` (X, Y, Z) maps and unit vectors ``fibre1``,
        ``fibre2``, ``radial`` (X, Y, Z, 3) in scanner space; and the (3, N) scanner-space points
        of the grid after the misregistration (where subject-space fields are to be sampled).
    """
    pts = _world_coords(affine, shape).reshape(3, -1).astype(np.float64)
    if scan_rigid is not None:
        r, t = scan_rigid
        c = warp.centre[:, None]
        pts = r @ (pts - c) + c + t[:, None]
    q = warp(pts)
    inv = np.linalg.inv(fields.affine)
    vox = inv[:3, :3] @ q + inv[:3, 3:4]
    n = vox.shape[1]
    brain = ndimage.map_coordinates(fields.channel("brain"), vox, order=1, mode="constant", cval=0.0)
    inside = np.flatnonzero(brain > 1e-3)
    out = {k: np.zeros(n, np.float32) for k in ("brain", "gm", "wm", "csf", "crossing")}
    out["brain"][:] = brain
    vec = {k: np.zeros((n, 3), np.float32) for k in ("fibre1", "fibre2", "radial")}
    if inside.size:
        vin = vox[:, inside]
        samp = np.stack(
            [
                ndimage.map_coordinates(fields.data[c], vin, order=1, mode="constant", cval=0.0)
                for c in range(1, len(CHANNELS))
            ]
        )
        for k in ("gm", "wm", "csf", "crossing"):
            out[k][inside] = samp[CHANNELS.index(k) - 1]
        jac = _jacobian(q.reshape((3, *shape)), affine)[:, inside]  # (9, M): d q / d p
        # J = dq/dp over the grid (the misregistration included); a direction in template space
        # appears in scanner space as J^-1 times it
        jinv = np.linalg.inv(jac.T.reshape(-1, 3, 3))
        t = samp[3:9]
        tens = np.empty((inside.size, 3, 3))
        for c, (i, j) in enumerate([(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]):
            tens[:, i, j] = t[c]
            tens[:, j, i] = t[c]
        tens = jinv @ tens @ np.swapaxes(jinv, 1, 2)
        f1 = principal_direction(tens)
        vec["fibre1"][inside] = f1
        # second population: the direction orthogonal to the first that is closest to left-right
        ref = np.where(np.abs(f1[:, :1]) > 0.9, np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]))
        f2 = ref - np.sum(ref * f1, axis=1, keepdims=True) * f1
        vec["fibre2"][inside] = f2 / np.linalg.norm(f2, axis=1, keepdims=True)
        rad = np.einsum("nij,jn->ni", jinv, samp[9:12])
        rn = np.linalg.norm(rad, axis=1, keepdims=True)
        rad = np.where(rn > 1e-6, rad / np.maximum(rn, 1e-6), np.array([[0.0, 0.0, 1.0]]))
        vec["radial"][inside] = rad
    result = {k: v.reshape(shape) for k, v in out.items()}
    result.update({k: v.reshape((*shape, 3)) for k, v in vec.items()})
    return result, pts


def principal_direction(tens: np.ndarray, iterations: int = 12) -> np.ndarray:
    """Unit eigenvector of the largest eigenvalue of each symmetric PSD 3x3 matrix (N, 3, 3).

    Power iteration from the column with the largest diagonal entry: the interpolated
    orientation tensors are close to rank one, so it converges in a few steps and is faster
    than a batched eigendecomposition. Zero matrices give (0, 0, 1).
    """
    n = tens.shape[0]
    start = np.argmax(np.einsum("nii->ni", tens), axis=1)
    v = tens[np.arange(n), :, start]
    for _ in range(iterations):
        v = np.einsum("nij,nj->ni", tens, v)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        v = np.where(norm > 1e-12, v / np.maximum(norm, 1e-12), np.array([[0.0, 0.0, 1.0]]))
    return v


def _jacobian(q: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """d q / d p on a grid: q (3, X, Y, Z) template mm at grid points; returns (9, N) row-major."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    rows = []
    for i in range(3):
        g = np.gradient(q[i], *spacing)  # derivatives along voxel axes, per mm
        for j in range(3):
            rows.append(g[j].ravel())
    return np.stack(rows)
