"""Building the deep harmonizers' networks from their config, and saving / loading them.

A saved model (``model.pt`` of a run directory) is a dict with the network's weights and the
metadata needed to rebuild it: the method and its settings, the targets and their voxel
ratios, the input channels, the patch size, the parameter count (for capacity-matched
comparisons) and the format version. Files from a newer format version are refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mrharmony.config import StrictModel
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


def parameter_count(net) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def save_model(path: str | os.PathLike, net, meta: dict) -> None:
    import torch

    from mrharmony import FORMAT_VERSION
    from mrharmony.io import atomic_path

    state = {"format_version": FORMAT_VERSION, "meta": meta, "state_dict": _cpu_state(net)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _cpu_state(net) -> dict:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` with clear errors for a missing, truncated or newer-format file."""
    import pickle
    import zipfile

    import torch

    from mrharmony import FORMAT_VERSION

    path = Path(path)
    if not path.is_file():
        raise InputError("is missing.", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"could not be read as a mrharmony model or checkpoint (truncated or corrupt: {reason}).",
                         path) from None
    if not isinstance(obj, dict) or "format_version" not in obj:
        raise InputError("is not a mrharmony model or checkpoint.", path)
    if obj["format_version"] > FORMAT_VERSION:
        raise InputError(
            f"was written by a newer mrharmony (format version {obj['format_version']}, this one reads up to "
            f"{FORMAT_VERSION}); upgrade mrharmony to use it.",
            path,
        )
    return obj


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


def load_weights(net, obj: dict, path: str | os.PathLike) -> None:
    """Put a saved model's weights into the network rebuilt from its metadata."""
    try:
        net.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"holds weights that do not fit its own description ({str(exc).splitlines()[0]}).",
                         path) from None


def read_image_model(path: str | os.PathLike, method: str, name: str, command: str) -> tuple[dict, dict, Path]:
    """A saved HAIL or IHF-Harmony model (``model.pt`` or its run directory): (file contents,
    meta, file); a model of another method is refused, naming the command that trains ``name``."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    obj = read_checkpoint(path)
    meta = obj.get("meta", {})
    found = meta.get("model", {}).get("method")
    if found != method:
        raise InputError(f"is a {found or 'non-' + name} model, not {'an' if name[0] in 'AEIOU' else 'a'} {name} "
                         f"model (train one with 'mrharmony {command}').", path)
    return obj, meta, path
