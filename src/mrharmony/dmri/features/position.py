"""Where a voxel is in the head, as input channels of the networks (a named variant).

The gradient coils' non-linearity makes the effective b-value and direction vary over the head,
by a different amount on each scanner (its share of the nominal gradient falls with the square
of the distance from the isocentre, several percent at 100 mm on a strong head gradient): the
scanners' MD differ by a map over the head, not by a constant. A voxelwise statistical method
learns such a map in its common space; a convolutional network sees an 11^3 neighbourhood and
cannot tell the centre of the head from its edge. ``training.inputs: sh+position`` gives it three
more input channels: the voxel's position in millimetres from the centroid of the brain mask,
along each voxel axis, divided by 100 mm. The brain's centroid stands in for the isocentre
(a head is centred in the coil), so that the channels mean the same on every scan whatever the
field of view. Axes are voxel axes, as for the gradient directions (FSL-style bvecs), so that
mirroring a sample along voxel axis a negates channel a (see ``training.augment: flips``).
"""

from __future__ import annotations

import numpy as np

#: the number of position channels, and their unit (mm)
N_CHANNELS = 3
SCALE_MM = 100.0


def position_channels(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(X, Y, Z, 3) float32: each voxel's offset from the brain mask's centroid, per voxel axis,
    in units of 100 mm (voxel sizes from ``affine``)."""
    m = np.asarray(mask, bool)
    if not m.any():
        raise ValueError("the brain mask is empty: a position relative to the brain needs brain voxels")
    sizes = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    centre = np.argwhere(m).mean(axis=0)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in m.shape], indexing="ij")
    return np.stack([(g - c) * s / SCALE_MM for g, c, s in zip(grids, centre, sizes)], -1).astype(np.float32)


def with_position(data: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Features (X, Y, Z, C) with the position channels appended (X, Y, Z, C + 3)."""
    return np.concatenate([np.asarray(data, np.float32), position_channels(mask, affine)], axis=-1)
