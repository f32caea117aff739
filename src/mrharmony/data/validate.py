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
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError

B0_THRESHOLD = 50.0
BVEC_NORM_TOL = 0.01
VOXEL_SIZE_RTOL = 0.01
MIN_MASK_DICE = 0.8
MIN_MASK_DICE_COMPUTED = 0.6  # where a mask is computed (automatic_mask), not given
REGISTER_HINT = "; register it to the input first (mrharmony prepare --register)"


def read_image(path: str | os.PathLike):
    """Open a NIfTI image (header only), with a clear error for a missing or unreadable file."""
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise InputError("is missing.", path)
    if not path.is_file():
        raise InputError("is not a file.", path)
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"could not be read as NIfTI ({_reason(exc)}).", path) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"is a {type(img).__name__}, not a NIfTI image.", path)
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-9:
        raise InputError("has an invalid (singular or non-finite) affine in its header.", path)
    return img


def read_float32(img, path: str | os.PathLike) -> np.ndarray:
    """The voxel data of an opened image as float32, with a clear error for corrupt data."""
    try:
        return np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
    except Exception as exc:  # truncated or corrupt compressed data fails only here
        raise InputError(f"could not be read as NIfTI ({_reason(exc)}).", path) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


def _read_numbers(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError("is missing.", path)
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        if not rows:
            raise InputError("is empty.", path)
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise InputError("has rows of different lengths.", path)
        return np.array(rows, dtype=np.float64)
    except ValueError:
        raise InputError("holds something that is not a number.", path) from None
    except UnicodeDecodeError:
        raise InputError("is not a text file.", path) from None


def read_gradients(
    bval_path: str | os.PathLike, bvec_path: str | os.PathLike, *, n_volumes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read FSL-style b-values and b-vectors and check them.

    Returns:
        bvals (N,) in s/mm^2 and bvecs (N, 3), unit length for non-b0 volumes and zero for b0.
    """
    bval_path, bvec_path = Path(bval_path), Path(bvec_path)
    bvals = _read_numbers(bval_path)
    if bvals.ndim == 2 and min(bvals.shape) != 1:
        raise InputError(f"must hold one row of b-values, found {bvals.shape[0]} rows.", bval_path)
    bvals = bvals.ravel()
    bvecs = _read_numbers(bvec_path)
    if bvecs.shape[0] == 3:
        bvecs = bvecs.T
    elif bvecs.shape[1] != 3:
        raise InputError(f"must hold three rows (x, y, z), found {bvecs.shape[0]} rows of {bvecs.shape[1]}.", bvec_path)
    if not np.all(np.isfinite(bvals)):
        raise InputError("holds NaN or infinite b-values.", bval_path)
    if not np.all(np.isfinite(bvecs)):
        raise InputError("holds NaN or infinite components.", bvec_path)
    if np.any(bvals < 0):
        raise InputError("holds negative b-values.", bval_path)
    if n_volumes is not None:
        if len(bvals) != n_volumes:
            raise InputError(f"has {len(bvals)} b-values but the DWI series has {n_volumes} volumes.", bval_path)
        if len(bvecs) != n_volumes:
            raise InputError(f"has {len(bvecs)} directions but the DWI series has {n_volumes} volumes.", bvec_path)
    elif len(bvals) != len(bvecs):
        raise InputError(f"has {len(bvecs)} directions but {bval_path.name} has {len(bvals)} b-values.", bvec_path)
    b0 = bvals <= B0_THRESHOLD
    if not b0.any():
        raise InputError(f"has no b=0 volume (none at or below {B0_THRESHOLD:g} s/mm^2).", bval_path)
    norms = np.linalg.norm(bvecs[~b0], axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > BVEC_NORM_TOL)
    if bad.size:
        i = int(np.flatnonzero(~b0)[bad[0]])
        raise InputError(
            f"direction of volume {i} has length {norms[bad[0]]:.3f}, not 1 "
            f"({bad.size} diffusion-weighted volume{'s' if bad.size > 1 else ''} affected).",
            bvec_path,
        )
    out = np.zeros_like(bvecs)
    out[~b0] = bvecs[~b0] / norms[:, None]
    return bvals, out


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
        raise InputError(
            f"has shape {mshape} but {scan.dwi.name} has spatial shape {tuple(dwi.shape[:3])}.", scan.mask
        )
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
    for subject in ds.subjects:
        if ds.spec.layout != "bids":  # (the BIDS index already names what is missing)
            subject_dir = ds.data_root / subject
            if not subject_dir.is_dir():
                raise InputError("is missing (listed as a subject in dataset.yaml).", subject_dir)
            for name in ds.platforms:
                folder = ds.scan(subject, name).folder
                if not folder.is_dir():
                    raise InputError(f"is missing: subject {subject} has no scan on platform {name}.", folder)
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
