"""Changes of the person made on a diffusion scan: what harmonization must keep.

Each change acts on the b0-normalized signal E = S / S0 of every brain voxel, so the scanner's
part of the scan (its S0, bias field, noise level) stays as it was:

* ``md``: E -> E^1.15, MD 15% higher everywhere and FA unchanged (what oedema or ageing does);
* ``fa``: 30% of each voxel's signal made isotropic (its mean over each shell's directions), FA
  lower and MD nearly unchanged;
* ``csf``: 10% more free water (D = 3e-3 mm^2/s) in every voxel, the tissue unchanged.

:data:`CHANGES` names the measure each change moves most, which tests and benchmarks compare
before and after harmonization.
"""

from __future__ import annotations

import numpy as np

#: each change -> the DTI measure it moves most
CHANGES = {"md": "md", "fa": "fa", "csf": "md"}
#: free water's diffusivity (mm^2/s)
FREE_WATER_D = 3e-3


def change_scan(
    dwi: np.ndarray, bvals: np.ndarray, mask: np.ndarray, kind: str, *, b0_threshold: float = 50.0
) -> np.ndarray:
    """``dwi`` (X, Y, Z, N) with the person changed by ``kind`` (see the module docstring) inside
    ``mask``; float32, voxels outside the mask and b=0 volumes unchanged."""
    if kind not in CHANGES:
        raise ValueError(f"unknown change {kind!r}; one of {', '.join(CHANGES)}")
    bvals = np.asarray(bvals, float)
    b0 = bvals <= b0_threshold
    s0 = dwi[..., b0].mean(-1, keepdims=True)
    inside = (np.asarray(mask, bool) & (s0[..., 0] > 0))[..., None]
    e = np.clip(dwi[..., ~b0] / np.maximum(s0, 1e-6), 1e-6, None)
    if kind == "md":
        e = e**1.15
    elif kind == "fa":
        from mrharmony.data.gradients import shells_of

        _, labels = shells_of(bvals[~b0], b0_threshold)
        for k in np.unique(labels):
            e[..., labels == k] = 0.7 * e[..., labels == k] + 0.3 * e[..., labels == k].mean(-1, keepdims=True)
    else:
        e = 0.9 * e + 0.1 * np.exp(-bvals[~b0] * FREE_WATER_D)
    out = np.array(dwi, np.float32)
    out[..., ~b0] = np.where(inside, s0 * e, dwi[..., ~b0])
    return out
