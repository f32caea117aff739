"""MSP: the Multi-Stage Prediction network (Blumberg et al., MICCAI 2019, equation 1).

First stage: one trained single network ``N_i`` per target i (they may differ in
architecture). Connection networks ``N_iT`` take the last feature map ``z_i`` of every other
target's network and inform the prediction of target T. Second stage, for every target T::

    y2_T = (1 - a) * y1_T + a / (P - 1) * (sum_{i != T} N_iT(z_i) + y1_T)

where P - 1 is the number of targets and ``a`` is ramped from 0 to 1 during training so that the
pretrained networks are blended with the new ones. The loss sums the first-stage losses of every
target and the second-stage ones; the network returns ``{T: [y1_T, y2_T]}``.

A connection network is a stack of two 3D convolutions (3^3 conv to ``features`` + ReLU, 1^3
conv to the output channels); where ``z_i`` is on the input grid and T is 2x finer, the first
becomes a deconvolution (and the second a 3^3 conv); where ``z_i`` is finer than T, the first is
a strided convolution (kernel 2, stride 2). The 3^3 convolution becomes 1^3 where ``z_i`` is
too small for its output to cover ``y1_T`` at the configured patch size (networks of different
architectures have outputs of different sizes). The terms of the sum are cropped to the largest
size they all cover, centred; at ``a = 0``, y2_T equals y1_T on that region exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from mrharmony.dmri.networks.base import NetworkConfig
from mrharmony.dmri.networks.blocks import Upsample2, center_crop
from mrharmony.dmri.networks.single import SINGLE_CONFIGS, SINGLE_NETS, SingleNet
from mrharmony.errors import InputError


def connection(
    z_channels: int, z_ratio: int, target_ratio: int, out_channels: int, features: int = 64, *, kernel: int = 3
) -> nn.Module:
    """``N_iT``; ``kernel`` is that of its 3^3 convolution (1 where ``z_i`` is too small for 3)."""
    if z_ratio == target_ratio:
        return nn.Sequential(nn.Conv3d(z_channels, features, kernel), nn.ReLU(), nn.Conv3d(features, out_channels, 1))
    if z_ratio == 1 and target_ratio == 2:
        return nn.Sequential(Upsample2(z_channels, features), nn.Conv3d(features, out_channels, kernel))
    if z_ratio == 2 and target_ratio == 1:
        return nn.Sequential(
            nn.Conv3d(z_channels, features, 2, stride=2), nn.ReLU(), nn.Conv3d(features, out_channels, 1)
        )
    raise ValueError(f"cannot connect features at ratio {z_ratio} to a target at ratio {target_ratio}")


class MSP(nn.Module):
    name = "msp"

    def __init__(self, first_stage: dict[str, SingleNet], *, features: int = 64, patch_size: int = 11):
        super().__init__()
        if len(first_stage) < 2:
            raise ValueError("MSP combines at least two targets")
        for t, net in first_stage.items():
            if net.target != t:
                raise ValueError(f"first-stage network for {t!r} predicts {net.target!r}")
        self.targets = list(first_stage)
        self.first = nn.ModuleDict(first_stage)
        self.in_channels = next(iter(first_stage.values())).in_channels
        self.ratios = {t: n.ratio for t, n in first_stage.items()}
        sizes = {}
        with torch.no_grad():
            probe = torch.zeros(1, self.in_channels, patch_size, patch_size, patch_size)
            for t, net in first_stage.items():
                y, z = net.forward_features(probe)
                sizes[t] = (y.shape[-1], z.shape[-1])
        conns = {}
        for t in self.targets:
            for i in self.targets:
                if i == t:
                    continue
                zi, zr, tr = sizes[i][1], first_stage[i].z_ratio, first_stage[t].ratio
                reach = {(1, 1): zi - 2, (2, 2): zi - 2, (1, 2): 2 * zi - 2, (2, 1): zi // 2}[(zr, tr)]
                kernel = 3 if reach >= sizes[t][0] or (zr, tr) == (2, 1) else 1
                conns[f"{i}__{t}"] = connection(
                    first_stage[i].z_channels, zr, tr, self.in_channels, features, kernel=kernel
                )
        self.connections = nn.ModuleDict(conns)
        self.register_buffer("alpha", torch.zeros(()))

    def set_alpha(self, a: float) -> None:
        self.alpha.fill_(float(min(1.0, max(0.0, a))))

    def forward(self, x):
        y1, z = {}, {}
        for t, net in self.first.items():
            y1[t], z[t] = net.forward_features(x)
        p_minus_1 = len(self.targets)
        out = {}
        for t in self.targets:
            terms = [self.connections[f"{i}__{t}"](z[i]) for i in self.targets if i != t]
            size = tuple(min(y.shape[a] for y in [y1[t], *terms]) for a in (-3, -2, -1))
            first = center_crop(y1[t], size)
            total = first + sum(center_crop(term, size) for term in terms)
            a = self.alpha.to(first.dtype)
            out[t] = [y1[t], (1 - a) * first + a / p_minus_1 * total]
        return out


class MSPConfig(NetworkConfig):
    """MSP's settings: its first stage (trained single networks, per target the run given in
    ``first_stage``, else the one of ``first_stage_runs`` with the lowest validation loss, else a
    new ``first_stage_default`` network) and the ramp of alpha from 0 to 1 over the epochs
    ``alpha_start_epoch`` to ``alpha_end_epoch``."""

    builds_on_single_networks = True
    meta_paths = ("first_stage_runs",)

    method: Literal["msp"]
    first_stage: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={"path": True},
        description="target -> run directory of a trained single network",
    )
    first_stage_runs: list[str] = Field(
        default_factory=list,
        json_schema_extra={"path": True},
        description="runs to choose from, per target the lowest validation loss",
    )
    first_stage_default: Literal["diqt", "cnn_rish", "shresnet"] = "diqt"
    alpha_start_epoch: float = Field(default=0.0, ge=0)
    alpha_end_epoch: float = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _ramp(self) -> MSPConfig:
        if self.alpha_end_epoch < self.alpha_start_epoch:
            raise ValueError("alpha_end_epoch must not come before alpha_start_epoch")
        return self

    def build(
        self,
        targets: dict[str, int],
        in_channels: int,
        *,
        patch_size: int = 11,
        first: dict[str, SingleNet] | None = None,
    ) -> MSP:
        """MSP on the first-stage networks ``first`` (per target; a new ``first_stage_default``
        network for a target without one)."""
        first = dict(first or {})
        for t, r in targets.items():
            if t not in first:
                first[t] = SINGLE_NETS[self.first_stage_default](t, in_channels, r)
        return MSP({t: first[t] for t in targets}, patch_size=patch_size, **self.width())

    def build_for_training(
        self, targets: dict[str, int], in_channels: int, *, patch_size: int, data, run_dir: Path
    ) -> tuple[MSP, dict]:
        """MSP on its trained first stage (per target the run of ``first_stage``, else the one of
        ``first_stage_runs`` with the lowest validation loss); records each first-stage network's
        model section and run, which rebuild it (:meth:`build_saved`)."""
        from mrharmony.config import relative_path
        from mrharmony.dmri.config import check_same_data

        runs = select_first_stage(self.first_stage_runs, list(targets), data)
        runs.update(self.first_stage)
        nets, models = {}, {}
        for t, run in runs.items():
            net, meta = load_single_network(run)
            if meta["targets"] != [t]:
                raise InputError(f"predicts {meta['targets']}, not {t!r}.", run)
            check_same_data(run, meta, data)
            nets[t], models[t] = net, meta["model"]
        for t in targets:
            models.setdefault(t, {"method": self.first_stage_default})
        record = {
            "first_stage_runs": {t: relative_path(r, run_dir) for t, r in runs.items()},
            "first_stage_models": models,
        }
        return self.build(targets, in_channels, patch_size=patch_size, first=nets), record

    def build_saved(self, meta: dict) -> MSP:
        """MSP of a saved model: its first stage rebuilt from the model sections it records."""
        first = {
            t: SINGLE_CONFIGS[m["method"]](**m).build({t: meta["ratios"][t]}, meta["in_channels"])
            for t, m in meta.get("first_stage_models", {}).items()
        }
        return self.build(meta["ratios"], meta["in_channels"], patch_size=meta["patch_size"], first=first)

    def on_progress(self, net, epoch: float) -> None:
        net.set_alpha(self.alpha(epoch))

    def columns(self, net) -> dict:
        return {"alpha": float(net.alpha)}

    def alpha(self, epoch: float) -> float:
        """The blend of the second stage at a (fractional) epoch: 0 before the ramp, 1 after."""
        span = self.alpha_end_epoch - self.alpha_start_epoch
        if span <= 0:
            return 1.0 if epoch >= self.alpha_end_epoch else 0.0
        return min(1.0, max(0.0, (epoch - self.alpha_start_epoch) / span))


def select_first_stage(runs: list[str], targets: list[str], data) -> dict[str, str]:
    """Per target, the single-network run with the lowest best validation loss (never test data).

    The runs must have been trained on the same dataset with the same split, so that no test
    patch of this run was a training patch of its first stage.
    """
    from mrharmony.dmri.config import absolute_paths, check_same_data
    from mrharmony.engine.checkpoint import read_checkpoint

    best: dict[str, tuple[float, str]] = {}
    for run in runs:
        meta = absolute_paths(read_checkpoint(Path(run) / "model.pt")["meta"], run)
        if meta["model"]["method"] not in SINGLE_NETS:
            raise InputError(f"is a {meta['model']['method']} run; MSP's first stage takes single networks.", run)
        refuse_position_channels(meta, run)
        check_same_data(run, meta, data)
        (t,) = meta["targets"]
        loss = meta["best_validation_loss"][t]
        if t in targets and (t not in best or loss < best[t][0]):
            best[t] = (loss, run)
    return {t: r for t, (_, r) in best.items()}


def load_single_network(run) -> tuple[SingleNet, dict]:
    """A trained single network (a run directory or its ``model.pt``) and its metadata, for MSP's
    first stage: built from the single networks' own config models, so MSP needs no other method."""
    from mrharmony.dmri.config import absolute_paths
    from mrharmony.engine.checkpoint import load_weights, model_file, read_checkpoint

    path = model_file(run)
    obj = read_checkpoint(path)
    meta = absolute_paths(obj["meta"], path.parent)
    method = meta["model"]["method"]
    if method not in SINGLE_CONFIGS:
        raise InputError(f"is a {method} run; MSP's first stage takes single networks.", run)
    refuse_position_channels(meta, run)
    net = SINGLE_CONFIGS[method](**meta["model"]).build(
        meta["ratios"], meta["in_channels"], patch_size=meta["patch_size"]
    )
    load_weights(net, obj, path)
    return net, meta


def refuse_position_channels(meta: dict, run) -> None:
    """Refuse a first-stage run trained with ``training.inputs: sh+position``: MSP's first stage
    takes networks of the SH features alone."""
    if meta.get("position_channels"):
        raise InputError(
            "was trained with the position channels; MSP's first stage takes networks of the SH features alone.", run
        )
