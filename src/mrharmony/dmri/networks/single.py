"""Single networks of the MSP paper's Table 1: one network per target platform.

All three map normalized SH coefficients of the input platform (C = 28 channels per shell for order 6)
to those of one target, with valid convolutions (no padding: see :mod:`mrharmony.dmri.networks.blocks`).
Each exposes its last feature map ``z`` (before the output layer) through
:meth:`SingleNet.forward_features`, because MSP feeds it to its connection networks.

Choices where the papers are silent, for an 11^3 input patch:

* **DIQT** (Deeper Image Quality Transfer; ESPCN-style): 3^3 conv to 50, 1^3 conv to 100, 3^3
  conv to C r^3, ReLU between; output 7^3 (14^3 after the sub-voxel shuffle for r = 2).
  ``features`` (50) sets the widths (f and 2f), for capacity-matched comparisons.
  ``revnet_blocks`` reversible blocks may go before each convolution (on the C, 50 and 100
  channels) to train deeper with memory independent of depth, as in that paper; their
  residual functions use 1^3 convolutions so that no padding enters and tiled inference stays
  exact. ``z`` is the 100-channel map (at the input's resolution). ``skip`` (not the paper's, a
  named option) adds the input's centre to the output, the output layer starting at zero.
* **CNN-RISH**: five layers, 3^3 conv to 64 three times, then 1^3 conv to 64 (``z``) and 1^3
  conv to C; output 5^3. For a 2x target the fourth layer, a standard convolution, is replaced
  by a deconvolution (the paper's rule, see :class:`~mrharmony.dmri.networks.blocks.Upsample2`), so ``z``
  and the output are 10^3 at the target's grid.
* **SHResNet**: the SH coefficients of each order l = 0, 2, 4, 6 (of every shell, for multi-shell
  features) go through their own branch of
  seven layers: 3^3 conv to 32, two residual blocks (3^3 conv, ReLU, 1^3 conv, with the skip
  connection cropped to match), a 1^3 mixing conv, and a 1^3 output conv back to the order's
  channels; the branch adds its (cropped) input, so each branch learns a correction. Output
  5^3. For a 2x target the mixing conv is a deconvolution (output 10^3) and the skip is the
  input repeated 2x. ``z`` is the concatenation of the four branches' mixing outputs.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from mrharmony.dmri.networks.base import NetworkConfig
from mrharmony.dmri.networks.blocks import (
    Conv,
    ReversibleSequence,
    Upsample2,
    center_crop,
    crop_margin,
    shuffle3d,
    under_output,
)
from mrharmony.errors import InputError


class SingleNet(nn.Module):
    """A network predicting one target from the input patch.

    Attributes:
        target: name of the target platform.
        ratio: voxels of the target per input voxel along each axis (1 or 2).
        z_channels, z_ratio: channels and resolution (1: input grid, 2: 2x) of ``z``.
    """

    name = "single"

    def __init__(self, target: str, in_channels: int, ratio: int):
        super().__init__()
        if ratio not in (1, 2):
            raise ValueError(f"target {target!r}: only 1x and 2x voxel ratios are supported, got {ratio}")
        self.target = target
        self.targets = [target]
        self.in_channels = in_channels
        self.ratio = ratio

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Predictions per target: ``{target: [y]}`` (the last of each list is the final one)."""
        y, _ = self.forward_features(x)
        return {self.target: [y]}


class DIQT(SingleNet):
    name = "diqt"

    def __init__(
        self,
        target: str,
        in_channels: int,
        ratio: int,
        *,
        features: int = 50,
        revnet_blocks: int = 0,
        memory_saving: bool = True,
        skip: bool = False,
    ):
        super().__init__(target, in_channels, ratio)
        c, f = in_channels, features

        def rev(ch):
            return ReversibleSequence(ch, revnet_blocks, memory_saving=memory_saving)

        self.rev0, self.conv1 = rev(c), Conv(c, f, 3)
        self.rev1, self.conv2 = rev(f), Conv(f, 2 * f, 1)
        self.rev2, self.out = rev(2 * f), nn.Conv3d(2 * f, c * ratio**3, 3)
        self.z_channels, self.z_ratio = 2 * f, 1
        self.skip = skip
        if skip:  # start as the identity in normalized space (meanvar_global) and learn the correction
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward_features(self, x):
        z = self.conv2(self.rev1(self.conv1(self.rev0(x))))
        z = self.rev2(z)
        y = shuffle3d(self.out(z), self.ratio)
        if self.skip:
            y = y + under_output(x, y.shape[-3:], self.ratio)
        return y, z


class CNNRISH(SingleNet):
    name = "cnn_rish"

    def __init__(self, target: str, in_channels: int, ratio: int, *, features: int = 64):
        super().__init__(target, in_channels, ratio)
        f = features
        self.body = nn.Sequential(Conv(in_channels, f, 3), Conv(f, f, 3), Conv(f, f, 3))
        self.fourth = Upsample2(f, f) if ratio == 2 else Conv(f, f, 1)
        self.out = nn.Conv3d(f, in_channels, 1)
        self.z_channels, self.z_ratio = f, ratio

    def forward_features(self, x):
        z = self.fourth(self.body(x))
        return self.out(z), z


class _OrderBranch(nn.Module):
    def __init__(self, channels: int, features: int, ratio: int):
        super().__init__()
        f = features
        self.ratio = ratio
        self.inp = Conv(channels, f, 3)
        self.res1 = nn.Sequential(Conv(f, f, 3), nn.Conv3d(f, f, 1))
        self.res2 = nn.Sequential(Conv(f, f, 3), nn.Conv3d(f, f, 1))
        self.relu = nn.ReLU()
        self.mix = Upsample2(f, f) if ratio == 2 else Conv(f, f, 1)
        self.out = nn.Conv3d(f, channels, 1)

    def forward(self, x):
        h = self.inp(x)
        h = self.relu(self.res1(h) + crop_margin(h, 1))
        h = self.relu(self.res2(h) + crop_margin(h, 1))
        z = self.mix(h)
        skip = center_crop(x, h.shape[-3:])
        if self.ratio == 2:
            skip = skip.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
        return self.out(z) + skip, z


class SHResNet(SingleNet):
    name = "shresnet"

    def __init__(self, target: str, in_channels: int, ratio: int, *, features: int = 32):
        super().__init__(target, in_channels, ratio)
        from mrharmony.dmri.features.sh import channel_orders, order_and_shells

        order_max, shells = order_and_shells(in_channels)
        orders = channel_orders(in_channels, order_max)  # a branch per order takes it from every shell
        self.groups = [[i for i, l in enumerate(orders) if l == order] for order in sorted(set(orders.tolist()))]
        self.branches = nn.ModuleList(_OrderBranch(len(g), features, ratio) for g in self.groups)
        for i, g in enumerate(self.groups):
            self.register_buffer(f"index{i}", torch.tensor(g), persistent=False)
        self.z_channels, self.z_ratio = features * len(self.groups), ratio

    def forward_features(self, x):
        outs, zs = [], []
        for i, branch in enumerate(self.branches):
            y, z = branch(x.index_select(1, getattr(self, f"index{i}")))
            outs.append(y)
            zs.append(z)
        y = torch.empty((x.shape[0], x.shape[1], *outs[0].shape[2:]), dtype=outs[0].dtype, device=x.device)
        for i, o in enumerate(outs):
            y[:, getattr(self, f"index{i}")] = o
        return y, torch.cat(zs, dim=1)


SINGLE_NETS = {cls.name: cls for cls in (DIQT, CNNRISH, SHResNet)}


class SingleNetConfig(NetworkConfig):
    """A single network: one target per run."""

    single_target = True

    def build(self, targets: dict[str, int], in_channels: int, *, patch_size: int = 11) -> SingleNet:
        if len(targets) != 1:
            raise InputError(f"method {self.method} predicts one target; the config names {len(targets)}.")
        ((t, r),) = targets.items()
        return SINGLE_NETS[self.method](t, in_channels, r, **self.width(), **self.network_options())

    def network_options(self) -> dict:
        return {}


class DIQTConfig(SingleNetConfig):
    method: Literal["diqt"]
    revnet_blocks: int = Field(default=0, ge=0, description="reversible blocks before each convolution")
    skip: bool = Field(
        default=False,
        description="a departure from the paper: add the input's centre (repeated "
        "for a 2x target) to the output, whose last layer starts at zero, so that the network starts "
        "as the per-channel standardization (meanvar_global) and learns the correction",
    )

    def network_options(self) -> dict:
        return {"revnet_blocks": self.revnet_blocks, "skip": self.skip}


class CNNRISHConfig(SingleNetConfig):
    method: Literal["cnn_rish"]


class SHResNetConfig(SingleNetConfig):
    method: Literal["shresnet"]


#: the single networks' config models by method name (MSP's first stage is built from them)
SINGLE_CONFIGS = {
    cls.model_fields["method"].annotation.__args__[0]: cls for cls in (DIQTConfig, CNNRISHConfig, SHResNetConfig)
}
