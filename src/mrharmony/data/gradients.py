"""Gradient tables in FSL's text format: ``.bval`` (one row of b-values, s/mm^2) and ``.bvec``
(three rows: the x, y and z components of each volume's direction).

:func:`read_gradients` reads and checks a table (one b-value and one direction per volume, all
finite, a b=0 volume, unit directions); :func:`write_gradients` is the one writer of the format
(the simulator, ``prepare --register`` and ``apply`` all write through it).

Examples:
    >>> bvals, bvecs = read_gradients("dwi.bval", "dwi.bvec", n_volumes=64)   # doctest: +SKIP
    >>> write_gradients("out.bval", "out.bvec", bvals, bvecs)               # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError

B0_THRESHOLD = 50.0  # s/mm^2: volumes at or below it are b=0 volumes
BVEC_NORM_TOL = 0.01  # dipy's tolerance on the length of a direction
SHELL_TOLERANCE = 100.0  # s/mm^2: b-values less than this above the previous one belong to its shell


def shells_of(bvals, b0_threshold: float = B0_THRESHOLD) -> tuple[list[float], np.ndarray]:
    """The non-zero shells of a gradient table and the shell of each volume.

    Sorted b-values less than :data:`SHELL_TOLERANCE` above the previous one belong to its shell.

    Returns
    -------
    list of float
        Each shell's mean b-value, ascending.
    numpy.ndarray
        The index of each volume's shell in that list (N,); -1 for b=0 volumes.
    """
    bvals = np.asarray(bvals, float)
    labels = np.full(bvals.shape, -1, int)
    dw = np.flatnonzero(bvals > b0_threshold)
    order = dw[np.argsort(bvals[dw], kind="stable")]
    k, prev = -1, None
    for i in order:
        if prev is None or bvals[i] - prev > SHELL_TOLERANCE:
            k += 1
        labels[i], prev = k, bvals[i]
    return [float(np.round(bvals[labels == j].mean())) for j in range(k + 1)], labels


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

    The ``.bvec`` file may hold three rows (FSL) or three columns, as dipy reads it; directions
    of b=0 volumes may be anything, NaN included (written out as zero).

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
    # a b=0 volume's direction carries no information: some converters write NaN there
    broken = ~np.all(np.isfinite(bvecs), axis=1) & ~b0
    if broken.any():
        i = int(np.flatnonzero(broken)[0])
        raise InputError(
            f"holds NaN or infinite components in the direction of volume {i}, which is "
            f"diffusion-weighted (b={bvals[i]:g}).",
            bvec_path,
        )
    bvecs = np.where(b0[:, None], 0.0, bvecs)
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


def write_gradients(bval_path: str | os.PathLike, bvec_path: str | os.PathLike, bvals, bvecs) -> None:
    """Write a gradient table as FSL text files, each atomically.

    Args:
        bval_path: the ``.bval`` file: one row, each b-value written with ``%g``.
        bvec_path: the ``.bvec`` file: three rows (x, y, z), six decimals.
        bvals: (N,) b-values in s/mm^2.
        bvecs: (N, 3) directions, one row per volume.
    """
    from mrharmony.io import write_text

    bvecs = np.asarray(bvecs)
    if bvecs.ndim != 2 or bvecs.shape[1] != 3 or len(bvecs) != len(bvals):
        raise ValueError(f"bvecs must be ({len(bvals)}, 3), one direction per b-value; got {bvecs.shape}")
    write_text(bval_path, " ".join(f"{b:g}" for b in bvals) + "\n")
    write_text(bvec_path, "\n".join(" ".join(f"{x:.6f}" for x in row) for row in bvecs.T) + "\n")
