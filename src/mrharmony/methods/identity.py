"""No harmonization: the input scan's normalized features taken as the target's.

The reference row of every evaluation table: a method that does not beat it does harm. For a
2x target each input voxel's features are repeated over its r^3 target voxels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrharmony.methods.base import Harmonizer


class IdentityHarmonizer(Harmonizer):
    method = "none"

    def predict(self, features: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for t in self.targets:
            r = self.ratios[t]
            y = np.asarray(features, np.float32)
            if r > 1:
                y = y.repeat(r, 0).repeat(r, 1).repeat(r, 2)
            y = y.copy()
            y[~self.target_mask(mask, t)] = 0.0
            out[t] = y
        return out

    def save(self, directory: str | os.PathLike) -> Path:
        from mrharmony import FORMAT_VERSION
        from mrharmony.io import write_json

        directory = Path(directory)
        write_json(directory / "harmonizer.json", {"format_version": FORMAT_VERSION, "method": self.method,
                                                    "targets": self.targets, "ratios": self.ratios,
                                                    "reference": self.reference})
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "IdentityHarmonizer":
        import json

        d = json.loads((Path(directory) / "harmonizer.json").read_text())
        return cls(targets=d["targets"], ratios=d["ratios"], reference=d["reference"])
