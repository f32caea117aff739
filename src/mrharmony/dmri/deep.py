"""The deep harmonizers (DIQT, CNN-RISH, SHResNet, CPM, HNED, MSP) behind the Harmonizer contract."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrharmony.dmri.harmonizer import Harmonizer


def default_name(meta: dict) -> str:
    """A saved network's row name when its run has no label (:func:`variant_name` of its method
    and normalization; models saved before the choice existed were scaled per scan)."""
    return variant_name(meta["model"]["method"], meta.get("normalization") or "scan")


def variant_name(method: str, normalization: str) -> str:
    """The row name of a method trained with a normalization of the features: the method, with the
    suffix of the paper's per-scan normalization where it was trained that way."""
    from mrharmony.dmri.features.normalization import SCAN_SUFFIX

    return method + SCAN_SUFFIX if normalization == "scan" else method


class DeepHarmonizer(Harmonizer):
    """A trained network of :mod:`mrharmony.dmri.models`, applied with tiled whole-volume inference."""

    def __init__(
        self,
        net,
        meta: dict,
        *,
        source: Path | None = None,
        tile: int = 48,
        device: str | None = None,
        output: int = -1,
        name: str | None = None,
    ):
        """``output``: which of each target's supervised outputs is the prediction (-1, the final
        one; 0, the first stage of a multi-stage network such as MSP's y1)."""
        super().__init__(
            targets=meta["targets"],
            ratios=meta["ratios"],
            reference={
                k: meta.get(k)
                for k in (
                    "normalization",
                    "denoise",
                    "input_stats",
                    "target_stats",
                    "target_gradients",
                    "sh",
                    "voxel_sizes",
                    "input_protocol",
                )
            },
            name=name or meta.get("label") or default_name(meta),
        )
        self.method = meta["model"]["method"]
        self.net, self.meta, self.source = net, meta, source
        self.tile = tile
        self.device = device
        self.output = output

    def first_stage(self) -> DeepHarmonizer | None:
        """The harmonizer of this network's first stage (``<name>_stage1``), for networks that
        build on single networks (MSP); None for the others."""
        from mrharmony.dmri.run_config import model_config

        if not model_config(self.meta["model"]).builds_on_single_networks:
            return None
        return DeepHarmonizer(
            self.net,
            self.meta,
            source=self.source,
            tile=self.tile,
            device=self.device,
            output=0,
            name=f"{self.name}_stage1",
        )

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> DeepHarmonizer:
        from mrharmony.dmri.models import load_model

        path = Path(path)
        net, meta = load_model(path)
        return cls(net, meta, source=path if path.is_dir() else path.parent, **kwargs)

    def save(self, directory: str | os.PathLike) -> Path:
        from mrharmony.engine.checkpoint import save_network

        return save_network(directory, self.net, self.meta, self.source)

    @property
    def parameter_count(self) -> int:
        if self.output == 0 and hasattr(self.net, "first"):  # a first stage: its single networks only
            return int(sum(p.numel() for p in self.net.first.parameters()))
        return int(self.meta["parameter_count"])

    def predict(self, scan, *, region: np.ndarray | None = None) -> dict[str, np.ndarray]:
        import torch

        from mrharmony.dmri.inference import predict_volume

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        sizes = {t: v[self.output] for t, v in self.meta["output_sizes"].items()}
        scan = self.scaled_input(scan)
        features, mask = scan.data, np.asarray(scan.mask, bool)
        if region is not None and np.shape(region) != mask.shape:
            raise ValueError(f"region of shape {np.shape(region)} for a scan of shape {mask.shape}")
        if self.meta.get("position_channels"):  # models made before the option have none
            from mrharmony.dmri.features.position import with_position

            features = with_position(features, mask, scan.affine)
        out = predict_volume(
            self.net,
            features,
            output_sizes=sizes,
            ratios=self.ratios,
            patch=self.meta["patch_size"],
            tile=self.tile,
            device=device,
            output=self.output,
            region=mask if region is None else mask & region,
            out_channels=self.meta["in_channels"],
        )
        for t, y in out.items():
            y[~self.target_mask(mask, t)] = 0.0
        return out
