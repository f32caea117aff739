"""Building the deep harmonizers' networks from their config, and saving / loading them.

A saved network (``model.pt`` of a run directory, :mod:`mrharmony.engine.checkpoint`) records
what rebuilds it: the method and its settings, the targets and their voxel ratios, the input
channels, the patch size and the parameter count (for capacity-matched comparisons).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mrharmony.config import StrictModel
from mrharmony.engine.checkpoint import load_weights, read_checkpoint
from mrharmony.errors import InputError

SINGLE = ("diqt", "cnn_rish", "shresnet")
MULTI = ("cpm", "hned")
METHODS = SINGLE + MULTI + ("msp",)
STATISTICAL = ("none", "meanvar_global", "meanvar_voxel", "rish", "combat")  # mrharmony.dmri.statistical
_DEEP = set(METHODS)
_VOXELWISE = {"meanvar_voxel", "rish"}

_APPLIES = {
    "revnet_blocks": {"diqt"},
    "features": _DEEP,
    "stages": {"cpm"},
    "first_stage": {"msp"},
    "first_stage_runs": {"msp"},
    "first_stage_default": {"msp"},
    "alpha_start_epoch": {"msp"},
    "alpha_end_epoch": {"msp"},
    "registration": _VOXELWISE | {"combat"},
    "smoothing_fwhm_mm": _VOXELWISE,
}


class ModelConfig(StrictModel):
    """The method of a run (a network or a statistical harmonizer); keys that do not apply to the
    chosen method are errors."""

    method: Literal["diqt", "cnn_rish", "shresnet", "cpm", "hned", "msp",
                    "none", "meanvar_global", "meanvar_voxel", "rish", "combat"]
    revnet_blocks: int = Field(default=0, ge=0)
    features: int | None = Field(default=None, ge=2)
    stages: int = Field(default=2, ge=1, le=3)
    first_stage: dict[str, str] = Field(default_factory=dict,
                                        description="MSP: target -> run directory of a trained single network")
    first_stage_runs: list[str] = Field(default_factory=list,
                                        description="MSP: runs to choose from, per target the lowest validation loss")
    first_stage_default: Literal["diqt", "cnn_rish", "shresnet"] = "diqt"
    alpha_start_epoch: float = Field(default=0.0, ge=0)
    alpha_end_epoch: float = Field(default=5.0, ge=0)
    registration: Literal["affine", "rigid", "none"] = Field(
        default="affine", description="voxelwise statistical methods: how subjects meet in the reference space")
    smoothing_fwhm_mm: float = Field(default=6.0, ge=0, description="voxelwise statistical methods: map smoothing")

    @model_validator(mode="after")
    def _applicable(self) -> "ModelConfig":
        for key in sorted(self.model_fields_set):
            if key in _APPLIES and self.method not in _APPLIES[key]:
                raise ValueError(f"'{key}' does not apply to method {self.method}")
        if self.alpha_end_epoch < self.alpha_start_epoch:
            raise ValueError("alpha_end_epoch must not come before alpha_start_epoch")
        return self


def build_network(cfg: ModelConfig, targets: dict[str, int], in_channels: int, *, patch_size: int = 11,
                  first_stage_nets: dict | None = None):
    """The torch module of a config, for ``targets`` (name -> voxel ratio)."""
    from mrharmony.dmri.networks.msp import MSP
    from mrharmony.dmri.networks.mtl import MTL_NETS
    from mrharmony.dmri.networks.single import SINGLE_NETS

    kw = {} if cfg.features is None else {"features": cfg.features}
    if cfg.method in SINGLE:
        if len(targets) != 1:
            raise InputError(f"method {cfg.method} predicts one target; the config names {len(targets)}.")
        (t, r), = targets.items()
        if cfg.method == "diqt":
            kw["revnet_blocks"] = cfg.revnet_blocks
        return SINGLE_NETS[cfg.method](t, in_channels, r, **kw)
    if cfg.method in MULTI:
        if cfg.method == "cpm":
            kw["stages"] = cfg.stages
        return MTL_NETS[cfg.method](targets, in_channels, **kw)
    first = dict(first_stage_nets or {})
    for t, r in targets.items():
        if t not in first:
            first[t] = SINGLE_NETS[cfg.first_stage_default](t, in_channels, r)
    return MSP({t: first[t] for t in targets}, patch_size=patch_size, **kw)


def absolute_paths(meta: dict, run_dir: str | os.PathLike) -> dict:
    """``meta`` with the paths a run records relative to its directory made absolute.

    Runs record their dataset and first-stage runs relative to the run directory, so a folder
    holding both the data and the runs can be moved or copied as a whole.
    """
    base = Path(run_dir).resolve()

    def fix(p):
        return str((base / p).resolve()) if isinstance(p, str) else p

    meta = dict(meta)
    if "data" in meta:
        meta["data"] = {**meta["data"], "dataset": fix(meta["data"]["dataset"])}
    if meta.get("first_stage_runs"):
        meta["first_stage_runs"] = {t: fix(r) for t, r in meta["first_stage_runs"].items()}
    return meta


def load_model(path: str | os.PathLike):
    """Rebuild a saved network: ``(module, meta)``; ``path`` is ``model.pt`` or its run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    obj = read_checkpoint(path)
    meta = absolute_paths(obj["meta"], path.parent)
    cfg = ModelConfig(**meta["model"])
    first = None
    if cfg.method == "msp":
        first = {t: build_network(ModelConfig(**m), {t: meta["ratios"][t]}, meta["in_channels"])
                 for t, m in meta["first_stage_models"].items()}
    net = build_network(cfg, meta["ratios"], meta["in_channels"], patch_size=meta["patch_size"],
                        first_stage_nets=first)
    load_weights(net, obj, path)
    return net, meta
