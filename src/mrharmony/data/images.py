"""Reading NIfTI images with one-sentence errors naming the file.

Every reader of scans (datasets, ``apply``, the statistical methods, the structural wing) opens
images here, so that a missing, unreadable, non-NIfTI or corrupt file is always reported the
same way: an :class:`~mrharmony.errors.InputError` naming the file and what is wrong.

Examples:
    >>> img = read_image("sub-01/ge_st/dwi.nii.gz")      # doctest: +SKIP
    >>> data = read_float32(img, "sub-01/ge_st/dwi.nii.gz")   # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError


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


def voxel_size(affine) -> np.ndarray:
    """Voxel edge lengths (mm) of an affine."""
    return np.linalg.norm(np.asarray(affine, np.float64)[:3, :3], axis=0)
