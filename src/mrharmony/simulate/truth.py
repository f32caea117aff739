"""The simulator's truth of a subject on a platform's grid (what scoring needs of the anatomy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrharmony.errors import InputError


def truth_masks(root, subject: str, voxel_mm: float, shape, *, region: bool = True):
    """(the cohort's region in white matter, or None without ``region``; the white matter) of a
    simulated subject on the grid of ``voxel_mm``: voxels at least half in the region and half
    white matter (channel 0 of ``truth/<subject>/tissue.nii.gz``), averaged over each platform
    voxel from the 1.2 mm simulation grid."""
    import nibabel as nib

    from mrharmony.registration import block_mean
    from mrharmony.simulate.params import FINE_VOXEL_MM

    truth = Path(root) / "truth" / subject
    k = int(round(voxel_mm / FINE_VOXEL_MM))
    wm = block_mean(np.asanyarray(nib.load(truth / "tissue.nii.gz").dataobj)[..., 0].astype(np.float32), k) >= 0.5
    if wm.shape != tuple(shape):
        raise InputError(f"subject {subject}: the truth's grid does not match the {voxel_mm:g} mm scans.", truth)
    if not region:
        return None, wm
    inside = block_mean(np.asanyarray(nib.load(truth / "region.nii.gz").dataobj).astype(np.float32), k) >= 0.5
    return inside & wm, wm


def white_matter_regions(root, subject: str, voxel_mm: float, shape) -> dict[str, np.ndarray]:
    """The named white-matter regions of a simulated subject on the grid of ``voxel_mm``
    (:func:`mrharmony.simulate.generator.white_matter_regions`): per region with voxels there, the
    voxels at least half in the region and half white matter."""
    from mrharmony.registration import block_mean
    from mrharmony.simulate.generator import white_matter_regions as fine_regions
    from mrharmony.simulate.params import FINE_VOXEL_MM

    labels, _, names = fine_regions(root, subject)
    _, wm = truth_masks(root, subject, voxel_mm, shape, region=False)
    k = int(round(voxel_mm / FINE_VOXEL_MM))
    out = {}
    for i, name in enumerate(names):
        m = (block_mean((labels == i + 1).astype(np.float32), k) >= 0.5) & wm
        if m.any():
            out[name] = m
    return out
