"""The deep harmonizers (DIQT, CNN-RISH, SHResNet, CPM, HNED, MSP) behind the Harmonizer contract."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from mrharmony.dmri.harmonizer import Harmonizer


class DeepHarmonizer(Harmonizer):
    """A trained network of :mod:`mrharmony.dmri.models`, applied with tiled whole-volume inference."""

    def __init__(self, net, meta: dict, *, source: Path | None = None, tile: int = 48, device: str | None = None):
        super().__init__(targets=meta["targets"], ratios=meta["ratios"],
                         reference={k: meta.get(k) for k in ("target_stats", "target_gradients", "sh", "voxel_sizes")},
                         name=meta["model"]["method"])
        self.method = meta["model"]["method"]
        self.net, self.meta, self.source = net, meta, source
        self.tile = tile
        self.device = device

    @classmethod
    def fit(cls, config, out: str | os.PathLike, **kwargs) -> "DeepHarmonizer":
        """Train with the training engine (``config``: a run config or its YAML) into ``out``."""
        from mrharmony.dmri.training import train

        return cls.load(train(config, out, **kwargs))

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> "DeepHarmonizer":
        from mrharmony.dmri.models import load_model

        path = Path(path)
        net, meta = load_model(path)
        return cls(net, meta, source=path if path.is_dir() else path.parent, **kwargs)

    def save(self, directory: str | os.PathLike) -> Path:
        from mrharmony.engine.checkpoint import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.source is not None and (self.source / "model.pt").is_file():
            shutil.copy2(self.source / "model.pt", directory / "model.pt")
        else:
            save_model(directory / "model.pt", self.net, self.meta)
        return directory

    @property
    def parameter_count(self) -> int:
        return int(self.meta["parameter_count"])

    def predict(self, scan) -> dict[str, np.ndarray]:
        import torch

        from mrharmony.dmri.inference import predict_volume

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        sizes = {t: v[-1] for t, v in self.meta["output_sizes"].items()}
        features, mask = scan.data, scan.mask
        out = predict_volume(self.net, features, output_sizes=sizes, ratios=self.ratios,
                             patch=self.meta["patch_size"], tile=self.tile, device=device)
        for t, y in out.items():
            y[~self.target_mask(mask, t)] = 0.0
        return out
