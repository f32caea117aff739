"""Denoising of diffusion scans before their SH fit, as studies run it (dipy).

* ``mppca``: Marchenko-Pastur PCA on local patches (Veraart et al. 2016;
  :func:`dipy.denoise.localpca.mppca`, patch radius 2), the default of most pipelines.

Only the scans being harmonized (the input platform's) are denoised: the targets are the truth
a method is scored against, as they were acquired. (dipy's Patch2Self is not offered: on the
simulator's scans its third version gave a different result on every call and its first one
returned images at a different scale.)
"""

from __future__ import annotations

import numpy as np

DENOISERS: tuple[str, ...] = ("none", "mppca")


def denoise_dwi(dwi: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """``dwi`` (X, Y, Z, N) denoised by ``method`` (``none`` returns it as float32); voxels outside
    ``mask`` are left as they were. Deterministic."""
    if method not in DENOISERS:
        raise ValueError(f"unknown denoising {method!r}; one of {', '.join(DENOISERS)}")
    data = np.asarray(dwi, np.float32)
    if method == "none":
        return data
    from dipy.denoise.localpca import mppca

    mask = np.asarray(mask, bool)
    out = np.asarray(mppca(data, mask=mask, patch_radius=2, suppress_warning=True), np.float32)
    out[~mask] = data[~mask]
    return out
