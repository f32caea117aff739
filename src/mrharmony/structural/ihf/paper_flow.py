"""IHF-Harmony's hierarchy flow as the paper's public code builds it (``ihf``, ``flow: hierarchy``):
:class:`HierarchyFlow`, the paper's name for it.

Read from the paper (arXiv 2602.21536) and its public code, written anew here:

* **No squeeze** (the code's default): the flow works on the image's own grid, padded by
  reflection (``pad``, 10 pixels) and cropped back after, so nothing depends on pixel parity.
* **Lifting by subtracted deltas.** Block b takes a tensor of C channels and a small network
  (two 3x3 convolutions with instance normalization and leaky ReLU, then a 3x3 convolution)
  predicts n deltas ``d_1 .. d_n`` of C channels each from it; the states ``s_k = s_{k-1} - d_k``
  (``s_0`` the block's input) are stacked into n C channels. Three blocks lift a grey image
  1 -> 10 -> 40 -> 160 channels (``chunks`` 10, 4, 4; the code's 3 -> 30 -> 120 -> 480 on colour
  images).
* **Decoding with the target's style**, blocks in reverse: artefact-aware normalization (AAN) of
  the lifted tensor, instance-normalized, then scaled by ``1 + a`` and shifted by ``b``, both
  linear in the concatenation of a code of the tensor's own channel means (the anatomy) and of
  the target's style code, starting at zero; then each state gets its block's delta back,
  ``c_k = s'_k + d_k``, and the states are fused from the last to the first,
  ``r = c_n; r = w c_k + (1 - w) r`` with a learned weight ``w`` per block (0.5 at the start).
* **Style code**: a 7x7 convolution to 32 channels, two strided 4x4 convolutions to 64 and 128
  and a 3x3 one (instance normalization, leaky ReLU), the mean over the image, a linear map to
  ``style_dim`` (64).

The decode uses the deltas that the encode of the same image computed, so an image goes through
``forward`` whole. It is not a bijection of images: the fusion mixes states (a weight of 0.5 keeps
half of each), and even the decode of the untouched lifted tensor is not the input. The inverse
exists only in the lifted space, given the deltas: :meth:`HierarchyFlow.inverse_lifted`
undoes the AAN of a decoded-but-not-fused tensor (what the paper's "lossless" rests on). An
output written to disk does not carry 160 channels of deltas per pixel, so this model's
harmonized images are not restored (``structural restore`` refuses them); the exactly
invertible design is the variant ``ihf_squeeze`` (``flow: squeeze``,
:mod:`mrharmony.structural.ihf.squeeze_flow`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mrharmony.structural.blocks import (
    StyleConditioned,
    as_one_sample,
    channel_stats,
    conv_class,
    mask_at,
)

#: the paper's code: how many deltas each block predicts (channel growth per block)
PAPER_CHUNKS = (10, 4, 4)


def _norm(channels: int, dims: int) -> nn.Module:
    return (nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d)(channels, affine=True)


def conv_block(cin: int, cout: int, kernel: int, dims: int, *, stride: int = 1) -> nn.Sequential:
    """Convolution (reflection-free, zero padding ``kernel // 2``), instance norm, leaky ReLU 0.2."""
    conv = conv_class(dims)
    pad = (kernel - 1) // 2 if stride == 1 else 1
    return nn.Sequential(
        conv(cin, cout, kernel, stride=stride, padding=pad), _norm(cout, dims), nn.LeakyReLU(0.2, inplace=True)
    )


class StyleEncoder(nn.Module):
    """The target's style code: 7x7 conv (32), strided 4x4 convs (64, 128), a 3x3 conv (128),
    the mean over the image (inside ``mask`` when given), a linear map to ``style_dim``."""

    def __init__(self, style_dim: int = 64, dims: int = 2):
        super().__init__()
        conv = conv_class(dims)
        self.net = nn.Sequential(
            conv(1, 32, 7, padding=3),
            nn.LeakyReLU(0.2, inplace=True),
            conv_block(32, 64, 4, dims, stride=2),
            conv_block(64, 128, 4, dims, stride=2),
            conv_block(128, 128, 3, dims),
        )
        self.fc = nn.Linear(128, style_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, pool_batch: bool = False) -> torch.Tensor:
        f = self.net(x)
        m = mask_at(mask, f)
        if pool_batch:  # one code for the whole batch (the slices of one volume)
            f, m = as_one_sample(f, m)
        mean, _ = channel_stats(f, m)  # the mean inside the mask
        return self.fc(mean.flatten(1))


class ConditionedAAN(nn.Module):
    """Artefact-aware normalization of a lifted tensor: instance-normalized, then
    ``* (1 + scale(z)) + shift(z)`` where ``z`` joins a code of the tensor's channel means
    (its anatomy) and the style code; scale and shift start at zero."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        hid = max(style_dim, min(channels, 256))
        self.anatomy = nn.Linear(channels, hid)
        self.style = nn.Linear(style_dim, hid)
        self.scale = nn.Linear(2 * hid, channels)
        self.shift = nn.Linear(2 * hid, channels)
        for lin in (self.scale, self.shift):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def modulation(self, h: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``h``'s instance mean and std, and the scale and shift it gets (each broadcastable to ``h``)."""
        dims = tuple(range(2, h.dim()))
        mean = h.mean(dim=dims, keepdim=True)
        std = torch.sqrt(h.var(dim=dims, keepdim=True, unbiased=False) + 1e-5)
        z = torch.cat([F.relu(self.anatomy(mean.flatten(1))), F.relu(self.style(s))], dim=1)
        shape = (h.shape[0], -1) + (1,) * len(dims)
        return mean, std, self.scale(z).view(shape), self.shift(z).view(shape)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        mean, std, scale, shift = self.modulation(h, s)
        return (h - mean) / std * (1 + scale) + shift


class LiftBlock(nn.Module):
    """One level of the hierarchy: C channels lifted to ``chunks`` C by subtracted deltas, and
    decoded back to C with the style (see the module docstring)."""

    def __init__(self, channels: int, chunks: int, hidden: int, style_dim: int, dims: int):
        super().__init__()
        self.channels, self.chunks = channels, chunks
        conv = conv_class(dims)
        self.delta = nn.Sequential(
            conv_block(channels, hidden, 3, dims),
            conv_block(hidden, hidden, 3, dims),
            conv(hidden, chunks * channels, 3, padding=1),
        )
        self.aan = ConditionedAAN(chunks * channels, style_dim)
        self.fuse_logit = nn.Parameter(torch.zeros(()))  # sigmoid(0) = 0.5, as the code starts

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the lifted tensor [s_1 .. s_n], the deltas [d_1 .. d_n]), each (N, n C, ...)."""
        d = self.delta(x)
        steps = d.unflatten(1, (self.chunks, self.channels))
        states = x.unsqueeze(1) - torch.cumsum(steps, dim=1)
        return states.flatten(1, 2), d

    def unfused(self, lifted: torch.Tensor, deltas: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The states after AAN with each delta added back, ``c_k``, (N, n, C, ...)."""
        return (self.aan(lifted, s) + deltas).unflatten(1, (self.chunks, self.channels))

    def fuse(self, c: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fuse_logit)
        r = c[:, -1]
        for k in range(self.chunks - 2, -1, -1):
            r = w * c[:, k] + (1 - w) * r
        return r


class HierarchyFlow(StyleConditioned):
    """The paper's flow with its style encoder: ``forward(x, code)`` harmonizes a batch of
    images (N, 1, ...) to the style ``code`` (N or 1, style_dim)."""

    def __init__(self, dims: int = 2, chunks=PAPER_CHUNKS, hidden: int = 64, style_dim: int = 64, pad: int = 10):
        super().__init__()
        self.dims, self.pad = dims, pad
        self.style = StyleEncoder(style_dim, dims)
        blocks, c = [], 1
        for n in chunks:
            blocks.append(LiftBlock(c, n, hidden, style_dim, dims))
            c *= n
        self.blocks = nn.ModuleList(blocks)

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this (any size: there is no squeeze)."""
        return 1

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pad:
            return x
        p = min(self.pad, *(n - 1 for n in x.shape[2:]))  # reflection needs the pad below the size
        return F.pad(x, (p,) * (2 * self.dims), mode="reflect") if p > 0 else x

    def _cropped(self, y: torch.Tensor, shape) -> torch.Tensor:
        offs = [(a - b) // 2 for a, b in zip(y.shape[2:], shape[2:])]
        return y[(slice(None), slice(None), *(slice(o, o + n) for o, n in zip(offs, shape[2:])))]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The lifted tensor of a (padded) batch and every block's deltas."""
        deltas = []
        for block in self.blocks:
            x, d = block.encode(x)
            deltas.append(d)
        return x, deltas

    def decode(self, lifted: torch.Tensor, deltas: list[torch.Tensor], code: torch.Tensor) -> torch.Tensor:
        s = code.expand(lifted.shape[0], -1)
        for block, d in zip(reversed(self.blocks), reversed(deltas)):
            lifted = block.fuse(block.unfused(lifted, d, s))
        return lifted

    def forward(self, x: torch.Tensor, code: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid`` is accepted for the harmonizer's common path and unused (no padding to leave out)."""
        lifted, deltas = self.encode(self._padded(x))
        return self._cropped(self.decode(lifted, deltas, code), x.shape)

    def inverse(self, y, code, valid=None):
        raise ValueError(
            "the paper's hierarchy flow has no inverse of its images: it fuses the lifted states "
            "(see mrharmony.structural.ihf.paper_flow)"
        )

    def inverse_lifted(
        self, block: int, c: torch.Tensor, lifted_like: torch.Tensor, deltas: torch.Tensor, code: torch.Tensor
    ) -> torch.Tensor:
        """The lifted tensor of ``block`` back from its unfused states ``c`` (the AAN undone, given
        the block's deltas and the instance statistics of ``lifted_like``, the tensor that went in):
        the invertibility the paper's design has before the fusion."""
        mean, std, scale, shift = self.blocks[block].aan.modulation(lifted_like, code.expand(c.shape[0], -1))
        return (c.flatten(1, 2) - deltas - shift) / (1 + scale) * std + mean
