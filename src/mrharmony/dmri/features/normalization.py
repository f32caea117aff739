"""Per-scan, per-channel normalization of features to mean 0 / std 1 inside the brain mask.

This is the normalization of the MSP paper ("on each acquisition, per channel"). The statistics
are saved with the features so that predictions made in normalized space can be mapped back to
the scale of the target platform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChannelStats:
    """Mean and standard deviation of each channel (last axis) inside a mask."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray, mask: np.ndarray) -> "ChannelStats":
        vals = data[mask].astype(np.float64)
        if vals.shape[0] == 0:
            raise ValueError("cannot compute channel statistics on an empty mask")
        std = vals.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)  # a constant channel is centred, not divided by 0
        return cls(vals.mean(axis=0).astype(np.float32), std.astype(np.float32))

    def apply(self, data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Normalized copy of ``data``; voxels outside ``mask`` (when given) become 0."""
        out = ((data - self.mean) / self.std).astype(np.float32)
        if mask is not None:
            out[~mask] = 0.0
        return out

    def invert(self, data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Map normalized values back to the original scale."""
        out = (np.asarray(data, np.float32) * self.std + self.mean).astype(np.float32)
        if mask is not None:
            out[~mask] = 0.0
        return out

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "ChannelStats":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))
