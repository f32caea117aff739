"""Off-the-shelf multi-task networks of the MSP paper (its supplementary Fig. 4), for all targets.

Both use valid convolutions and predict every target from one input patch; every output in
their lists is supervised (deep supervision, as in the networks that inspired them).

* **CPM** (after Convolutional Pose Machines): a shared trunk (two 3^3 convs to 64), then a
  sequence of ``stages``; stage 1 predicts all targets from the trunk's features, each later
  stage refines all of them from the trunk's features and the previous stage's predictions
  (2x targets are brought back to the input grid by 2x average pooling), through a 3^3 conv.
  Outputs shrink by two voxels per stage: 7^3 then 5^3 for an 11^3 input (x2 for 2x targets).
* **HNED** (after Holistically-Nested Edge Detection): one stream of convolutions with a side
  output per target at a different depth, in the order the targets are given: a 3^3 stem to
  64, then one block per target (3^3 convs for the first two, 1^3 after, so that outputs stay
  at least 5^3) followed by that target's side output (1^3 conv; a deconvolution first for a 2x
  target). The paper adapted HNED this way, which is why it notes that such networks process
  the tasks in an order that harmonization does not have.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mrharmony.dmri.networks.base import NetworkConfig
from mrharmony.dmri.networks.blocks import Conv, Upsample2, center_crop


def _head(cin: int, features: int, channels: int, ratio: int) -> nn.Module:
    if ratio == 2:
        return nn.Sequential(Conv(cin, features, 1), Upsample2(features, features), nn.Conv3d(features, channels, 1))
    return nn.Sequential(Conv(cin, features, 1), nn.Conv3d(features, channels, 1))


class MultiTaskNet(nn.Module):
    """Base of the networks that predict every target: ``forward(x) -> {target: [outputs]}``."""

    name = "mtl"

    def __init__(self, targets: dict[str, int], in_channels: int):
        super().__init__()
        bad = {t: r for t, r in targets.items() if r not in (1, 2)}
        if bad:
            raise ValueError(f"only 1x and 2x voxel ratios are supported, got {bad}")
        self.targets = list(targets)
        self.ratios = dict(targets)
        self.in_channels = in_channels


class CPM(MultiTaskNet):
    name = "cpm"

    def __init__(self, targets: dict[str, int], in_channels: int, *, features: int = 64, stages: int = 2):
        super().__init__(targets, in_channels)
        if stages < 1:
            raise ValueError("CPM needs at least one stage")
        f, c = features, in_channels
        self.trunk = nn.Sequential(Conv(c, f, 3), Conv(f, f, 3))
        self.refine = nn.ModuleList(Conv(f + c * len(targets), f, 3) for _ in range(stages - 1))
        self.heads = nn.ModuleList(
            nn.ModuleDict({t: _head(f, f, c, r) for t, r in targets.items()}) for _ in range(stages)
        )

    def forward(self, x):
        feats = self.trunk(x)
        outs = {t: [] for t in self.targets}
        h = feats
        for s, heads in enumerate(self.heads):
            if s > 0:
                prev = []
                for t in self.targets:
                    y = outs[t][-1]
                    prev.append(F.avg_pool3d(y, 2) if self.ratios[t] == 2 else y)
                h = self.refine[s - 1](torch.cat([center_crop(feats, prev[0].shape[-3:]), *prev], dim=1))
            for t in self.targets:
                outs[t].append(heads[t](h))
        return outs


class HNED(MultiTaskNet):
    name = "hned"

    def __init__(self, targets: dict[str, int], in_channels: int, *, features: int = 64):
        super().__init__(targets, in_channels)
        f, c = features, in_channels
        self.stem = Conv(c, f, 3)
        self.blocks = nn.ModuleList(Conv(f, f, 3 if k < 2 else 1) for k in range(len(targets)))
        self.sides = nn.ModuleDict({t: _head(f, f, c, r) for t, r in targets.items()})

    def forward(self, x):
        h = self.stem(x)
        outs = {}
        for block, t in zip(self.blocks, self.targets):
            h = block(h)
            outs[t] = [self.sides[t](h)]
        return outs


MTL_NETS = {cls.name: cls for cls in (CPM, HNED)}


class CPMConfig(NetworkConfig):
    method: Literal["cpm"]
    stages: int = Field(default=2, ge=1, le=3, description="prediction stages")

    def build(self, targets: dict[str, int], in_channels: int, *, patch_size: int = 11) -> CPM:
        return CPM(targets, in_channels, **self.width(), stages=self.stages)


class HNEDConfig(NetworkConfig):
    method: Literal["hned"]

    def build(self, targets: dict[str, int], in_channels: int, *, patch_size: int = 11) -> HNED:
        return HNED(targets, in_channels, **self.width())
