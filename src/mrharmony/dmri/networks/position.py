"""Any dMRI network with its outputs modulated by where the voxel is in the head
(``training.inputs: sh+position``, a named variant; the channels are made by
:mod:`mrharmony.dmri.features.position`)."""

from __future__ import annotations

import torch
from torch import nn

from mrharmony.dmri.features.position import N_CHANNELS
from mrharmony.dmri.networks.blocks import under_output


class PositionModulated(nn.Module):
    """A network whose every output is scaled and shifted, per channel, by smooth functions of
    the output voxel's position: ``y * (1 + a(p)) + b(p)``, with ``a`` and ``b`` from a small
    1x1x1 MLP of the position channels, one per target, whose last layer starts at zero (the
    module starts as the network it wraps). Its input is the SH features followed by the
    position channels; the wrapped network sees the SH features only. Made for what varies
    smoothly over the head: an effective b that changes with the distance from the isocentre
    scales each SH coefficient of the signal by a function of position."""

    def __init__(self, net: nn.Module, targets: dict[str, int], sh_channels: int, *, hidden: int = 32):
        super().__init__()
        self.net, self.ratios, self.sh_channels = net, dict(targets), sh_channels
        self.modulation = nn.ModuleDict()
        for t in targets:
            last = nn.Conv3d(hidden, 2 * sh_channels, 1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.modulation[t] = nn.Sequential(nn.Conv3d(N_CHANNELS, hidden, 1), nn.ReLU(inplace=True), last)

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        sh, pos = x[:, : self.sh_channels], x[:, self.sh_channels :]
        out = {}
        for t, ys in self.net(sh).items():
            r, mod = self.ratios[t], self.modulation[t]
            res = []
            for y in ys:
                p = under_output(pos, y.shape[-3:], r)  # each target voxel takes its input voxel's position
                a, b = torch.chunk(mod(p.to(y.dtype)), 2, dim=1)
                res.append(y * (1 + a) + b)
            out[t] = res
        return out
