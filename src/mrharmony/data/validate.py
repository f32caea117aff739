"""Validation of traveling-heads data: every problem is one sentence naming the file.

The checks, in the order they run for each scan:

* the four files exist;
* each image reads as NIfTI; the DWI is 4D, the mask 3D, on the same grid (shape and affine);
* the voxel size agrees with the platform's declared one (within 1%);
* ``dwi.bval`` has one value per volume, ``dwi.bvec`` three per volume, all finite;
* at least one b=0 volume (b <= 50 s/mm^2); gradient directions of the other volumes have unit
  length (within 0.01, dipy's tolerance);
* with ``check_data``: no NaN or Inf voxels in the DWI, and a mask with at least one voxel.

And for each subject, across platforms: the scans cover the same field of view in the same
orientation. A target whose voxels are r times finer than the input's (r a whole number) must
have its grid aligned with the input's: every input voxel holds exactly r^3 target voxels. With
``check_data``, the brain masks of a subject's platforms must overlap (Dice of at least
``MIN_MASK_DICE`` on the input's grid, ``MIN_MASK_DICE_COMPUTED`` where a mask is computed from
the scan), or the anatomy is taken as not co-registered. Both
co-registration problems name ``prepare --register``, which registers such scans first.

Images are read by :mod:`mrharmony.data.images`, gradient tables by
:mod:`mrharmony.data.gradients`; the folder checks that come before the headers are the
layout's (:meth:`mrharmony.data.layouts.Layout.check_subject`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrharmony.data.gradients import read_gradients
from mrharmony.data.images import read_image
from mrharmony.data.layouts import layout_named
from mrharmony.errors import InputError

VOXEL_SIZE_RTOL = 0.01
MIN_MASK_DICE = 0.8
MIN_MASK_DICE_COMPUTED = 0.6  # where a mask is computed (automatic_mask), not given
REGISTER_HINT = "; register it to the input first (mrharmony dmri prepare --register)"


@dataclass(frozen=True)
class ScanHeader:
    """What the header checks learned about one scan."""

    shape: tuple[int, int, int]
    n_volumes: int
    affine: np.ndarray
    zooms: tuple[float, float, float]
    bvals: np.ndarray
    bvecs: np.ndarray


def check_scan_headers(scan) -> ScanHeader:
    """Header-level checks of one :class:`~mrharmony.data.Scan` (no voxel data read)."""
    for p in (scan.dwi, scan.bval, scan.bvec, scan.mask):
        if p is not None and not p.exists():
            raise InputError(f"is missing (subject {scan.subject}, platform {scan.platform.name}).", p)
    dwi = read_image(scan.dwi)
    if len(dwi.shape) != 4:
        raise InputError(f"is {len(dwi.shape)}D with shape {tuple(dwi.shape)}; a DWI series must be 4D.", scan.dwi)
    if scan.mask is not None:  # (None: computed from the data, see automatic_mask)
        _check_mask_header(scan, dwi)
    zooms = tuple(float(z) for z in dwi.header.get_zooms()[:3])
    declared = np.asarray(scan.platform.voxel_size)
    if not np.allclose(zooms, declared, rtol=VOXEL_SIZE_RTOL):
        raise InputError(
            f"has voxel size {_fmt(zooms)} mm but dataset.yaml declares {_fmt(declared)} mm "
            f"for platform {scan.platform.name}.",
            scan.dwi,
        )
    bvals, bvecs = read_gradients(scan.bval, scan.bvec, n_volumes=int(dwi.shape[3]))
    return ScanHeader(tuple(int(s) for s in dwi.shape[:3]), int(dwi.shape[3]), dwi.affine, zooms, bvals, bvecs)


def _check_mask_header(scan, dwi) -> None:
    mask = read_image(scan.mask)
    mshape = tuple(mask.shape)
    if len(mshape) == 4 and mshape[-1] == 1:
        mshape = mshape[:3]
    if len(mshape) != 3:
        raise InputError(f"is {len(mshape)}D with shape {tuple(mask.shape)}; a mask must be 3D.", scan.mask)
    if mshape != tuple(dwi.shape[:3]):
        raise InputError(f"has shape {mshape} but {scan.dwi.name} has spatial shape {tuple(dwi.shape[:3])}.", scan.mask)
    if not np.allclose(mask.affine, dwi.affine, atol=1e-3):
        raise InputError(f"has an affine that differs from that of {scan.dwi.name}.", scan.mask)


def check_scan_data(scan) -> None:
    """Voxel-level checks: finite DWI values and a non-empty mask."""
    dwi, _ = scan.load_dwi()
    bad = ~np.isfinite(dwi)
    if bad.any():
        n_vox = int(bad.any(axis=3).sum())
        raise InputError(f"has {n_vox} voxel{'s' if n_vox > 1 else ''} with NaN or infinite values.", scan.dwi)
    del dwi
    if scan.mask is not None and not scan.load_mask().any():
        raise InputError("is empty (no voxel inside the brain).", scan.mask)


def _fmt(v) -> str:
    return " x ".join(f"{float(x):g}" for x in v)


def check_alignment(ref_scan, ref: ScanHeader, scan, hdr: ScanHeader) -> None:
    """Check that ``scan`` covers the same field of view as ``ref`` on an aligned grid.

    ``ref`` is the input platform's scan of the same subject. The target may be r times finer
    (r a whole number): then its grid subdivides each input voxel into r^3 voxels.
    """
    where = f"(subject {scan.subject}, platform {scan.platform.name} against {ref_scan.platform.name})"
    rin = np.asarray(ref.zooms)
    rt = np.asarray(hdr.zooms)
    ratio = rin / rt
    r = np.round(ratio)
    if np.any(r < 1) or not np.allclose(ratio, r, rtol=1e-3) or len(set(r.tolist())) != 1:
        raise InputError(
            f"has voxel size {_fmt(rt)} mm, which does not divide the input's {_fmt(rin)} mm "
            f"into a whole number of voxels per axis {where}.",
            scan.dwi,
        )
    dir_in = ref.affine[:3, :3] / rin
    dir_t = hdr.affine[:3, :3] / rt
    if not np.allclose(dir_in, dir_t, atol=1e-3):
        raise InputError(f"is oriented differently from the input platform's scan {where}{REGISTER_HINT}.", scan.dwi)
    # corners of the voxel grids (centre of voxel 0 minus half a voxel) must coincide
    corner_in = ref.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    corner_t = hdr.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    shift = np.abs(corner_in[:3] - corner_t[:3]).max()
    if shift > 0.05 * rt.min():
        raise InputError(
            f"has an affine that disagrees with the input platform's scan by {shift:.2f} mm "
            f"(grids not co-registered) {where}{REGISTER_HINT}.",
            scan.dwi,
        )
    extent_in = np.asarray(ref.shape) * rin
    extent_t = np.asarray(hdr.shape) * rt
    if np.any(np.abs(extent_in - extent_t) > rin + 1e-3):
        raise InputError(
            f"covers {_fmt(extent_t)} mm but the input platform's scan covers {_fmt(extent_in)} mm {where}.",
            scan.dwi,
        )


def mask_dice(ref_mask: np.ndarray, mask: np.ndarray) -> float:
    """Dice overlap of a scan's mask with the input's, on the input's grid (a target r times
    finer on an aligned grid is averaged over each input voxel's r^3 voxels first)."""
    r = mask.shape[0] // ref_mask.shape[0]
    if r > 1:
        from mrharmony.registration import block_mean

        mask = block_mean(mask.astype(np.float32), r) > 0.5
    a, b = np.asarray(ref_mask, bool), np.asarray(mask, bool)
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def check_overlap(ref_scan, scan, ref_mask: np.ndarray | None = None) -> float:
    """The anatomy of ``scan`` lies where the input's does: brain masks overlap (Dice)."""
    ref_mask = ref_scan.load_mask() if ref_mask is None else ref_mask
    dice = mask_dice(ref_mask, scan.load_mask())
    # masks computed from each scan's own b=0 image differ between platforms more than given ones
    least = MIN_MASK_DICE if ref_scan.mask is not None and scan.mask is not None else MIN_MASK_DICE_COMPUTED
    if dice < least:
        raise InputError(
            f"is not co-registered with the input platform's scan (subject {scan.subject}, platform "
            f"{scan.platform.name}: brain masks overlap with Dice {dice:.2f}, below {least}){REGISTER_HINT}.",
            scan.dwi,
        )
    return dice


def validate_dataset(ds, *, check_data: bool = True, coregistered: bool = True) -> None:
    """Run every check on every scan of ``ds``; raise the first problem found.

    ``coregistered=False`` skips the checks that a subject's platforms are co-registered (for
    ``prepare --register``, which registers the scans that fail them).
    """
    inp = ds.input_platform.name
    layout = layout_named(ds.spec.layout)(ds.spec, ds.data_root)
    for subject in ds.subjects:
        layout.check_subject(subject, {name: ds.scan(subject, name).folder for name in ds.platforms})
        headers = {name: check_scan_headers(ds.scan(subject, name)) for name in ds.platforms}
        ref_scan = ds.scan(subject, inp)
        for name in ds.platforms:
            if name != inp and coregistered:
                check_alignment(ref_scan, headers[inp], ds.scan(subject, name), headers[name])
    if check_data:
        for scan in ds.scans():
            check_scan_data(scan)
        if coregistered:
            for subject in ds.subjects:
                ref_scan = ds.scan(subject, inp)
                ref_mask = ref_scan.load_mask()
                for name in ds.platforms:
                    if name != inp:
                        check_overlap(ref_scan, ds.scan(subject, name), ref_mask)
