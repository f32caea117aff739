"""IHF-Harmony's squeeze variant (``flow: squeeze``, named ``ihf_squeeze`` in every row): a flow
of this project, invertible by construction.

* **squeeze**: space to channels (2 x 2 in 2D, 2 x 2 x 2 in 3D), one per level of the hierarchy;
* **flow blocks with subtractive coupling**: the channels are split in two halves ``a, b`` and
  ``b - f(a, style)`` replaces ``b``; the halves then swap places, so the next block changes the
  other one. The inverse adds ``f(a, style)`` back: the same function, evaluated on the same
  ``a``, so inverting needs no inverse of ``f``;
* after the last level, every squeeze is undone: the output is an image on the input's grid.

``f`` is a small convolutional network whose hidden features pass through **artefact-aware
normalization** (:class:`AAN`): instance-normalized, then scaled and shifted by amounts that a
linear map predicts from the target's style code, with the anatomy (the features' spatial
pattern) left as it is. The style code comes from the **artefact encoder**
(:class:`ArtefactEncoder`) on the target image. The style maps and the last convolution of
every ``f`` start at zero, so the flow starts as the identity. Because the channel split of
every block is the same at every 2 x 2 (x 2) block of pixels, the transform depends on pixel
parity, which can leave a texture at the squeeze's period.

Invertibility is exact up to float rounding, whatever the weights: ``inverse(forward(x, s), s)``
runs the same blocks backwards (:meth:`SqueezeFlow.inverse`). Nothing is blended after the
flow, so the harmonized image always decodes back to its source.

Defaults: two levels of three blocks each, 32 hidden channels in ``f``, a 32-dimensional style
code. The normalizations take a ``valid`` mask (1 on the image, 0 on padding) so that an image
padded to a multiple of ``2 ** levels`` keeps the statistics of its own positions
(:mod:`mrharmony.structural.ihf.inference`).
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


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Space to channels: (N, C, 2H, 2W[, 2D]) -> (N, C * 2**dims, H, W[, D]); a permutation."""
    dims = x.dim() - 2
    n, c, *size = x.shape
    if any(s % 2 for s in size):
        raise ValueError(f"squeeze needs even sizes, got {tuple(size)}")
    shape = [n, c]
    for s in size:
        shape += [s // 2, 2]
    x = x.reshape(shape)
    spatial = [2 + 2 * i for i in range(dims)]
    factors = [3 + 2 * i for i in range(dims)]
    return x.permute(0, 1, *factors, *spatial).reshape(n, c * 2**dims, *[s // 2 for s in size])


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze`."""
    dims = x.dim() - 2
    n, c, *size = x.shape
    c0 = c // 2**dims
    x = x.reshape(n, c0, *([2] * dims), *size)
    order = [0, 1]
    for i in range(dims):
        order += [2 + dims + i, 2 + i]
    return x.permute(*order).reshape(n, c0, *[s * 2 for s in size])


class ArtefactEncoder(nn.Module):
    """The style code of an image: strided convolutions, then the mean of the last features over
    the brain (over every slice of a volume in 2D), then a linear map."""

    def __init__(self, style_dim: int = 32, width: int = 16, dims: int = 3):
        super().__init__()
        conv = conv_class(dims)
        self.net = nn.Sequential(
            conv(1, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            conv(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            conv(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(4 * width, style_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, pool_batch: bool = False) -> torch.Tensor:
        """(N, style_dim) from the channel means and stds of the features inside ``mask``; with
        ``pool_batch`` one code (1, style_dim) for the whole batch (the slices of one volume)."""
        f = self.net(x)
        m = None if mask is None else mask_at(mask, f)
        if pool_batch:  # statistics over every slice together
            f, m = as_one_sample(f, m)
        mean, std = channel_stats(f, m)
        return self.fc(torch.cat([mean.flatten(1), std.flatten(1)], dim=1))


class AAN(nn.Module):
    """Artefact-aware normalization: ``IN(h) * (1 + scale(s)) + shift(s)``; the maps from the
    style code start at zero (plain instance normalization)."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.scale = nn.Linear(style_dim, channels)
        self.shift = nn.Linear(style_dim, channels)
        for lin in (self.scale, self.shift):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, h: torch.Tensor, s: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid`` (N, 1, ...; 1 inside the image, 0 on padding): the instance statistics are
        those of the image's positions only (default: every position)."""
        dims = tuple(range(2, h.dim()))
        if valid is None:
            mean = h.mean(dim=dims, keepdim=True)
            std = torch.sqrt(h.var(dim=dims, keepdim=True, unbiased=False) + 1e-5)
        else:
            n = valid.sum(dim=dims, keepdim=True).clamp_min(1.0)
            mean = (h * valid).sum(dim=dims, keepdim=True) / n
            std = torch.sqrt((((h - mean) ** 2) * valid).sum(dim=dims, keepdim=True) / n + 1e-5)
        shape = (s.shape[0], -1) + (1,) * len(dims)
        return (h - mean) / std * (1 + self.scale(s).view(shape)) + self.shift(s).view(shape)


class Coupling(nn.Module):
    """``f(a, s)`` of one flow block: conv, AAN, ReLU, conv, AAN, ReLU, conv (zero-initialized)."""

    def __init__(self, cin: int, cout: int, hidden: int, style_dim: int, dims: int):
        super().__init__()
        conv = conv_class(dims)
        self.c1, self.c2 = conv(cin, hidden, 3, padding=1), conv(hidden, hidden, 3, padding=1)
        self.n1, self.n2 = AAN(hidden, style_dim), AAN(hidden, style_dim)
        self.out = conv(hidden, cout, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, a: torch.Tensor, s: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.n1(self.c1(a), s, valid))
        h = F.relu(self.n2(self.c2(h), s, valid))
        return self.out(h)


class FlowBlock(nn.Module):
    """Subtractive coupling: ``(a, b) -> (b - f(a, s), a)``; inverse ``(c, a) -> (a, c + f(a, s))``."""

    def __init__(self, channels: int, hidden: int, style_dim: int, dims: int):
        super().__init__()
        self.na = channels // 2
        self.f = Coupling(self.na, channels - self.na, hidden, style_dim, dims)

    def forward(self, x: torch.Tensor, s: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        a, b = x[:, : self.na], x[:, self.na :]
        return torch.cat([b - self.f(a, s, valid), a], dim=1)

    def inverse(self, y: torch.Tensor, s: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        nb = y.shape[1] - self.na
        c, a = y[:, :nb], y[:, nb:]
        return torch.cat([a, c + self.f(a, s, valid)], dim=1)


class SqueezeFlow(nn.Module):
    """Levels of (squeeze, flow blocks); then every squeeze undone. Image in, image out.

    Parameters
    ----------
    levels : int
        Levels of squeezes; spatial sizes must be multiples of ``2 ** levels``.
    blocks : int
        Coupling blocks per level.
    hidden : int
        Hidden channels of each coupling network.
    style_dim : int
        Length of the style code.
    dims : int
        2 for slices, 3 for volumes.
    """

    def __init__(self, levels: int = 2, blocks: int = 3, hidden: int = 32, style_dim: int = 32, dims: int = 3):
        super().__init__()
        self.levels = nn.ModuleList()  # state-dict keys "levels.*": kept as saved models name them
        channels = 1
        for _ in range(levels):
            channels *= 2**dims
            self.levels.append(nn.ModuleList([FlowBlock(channels, hidden, style_dim, dims) for _ in range(blocks)]))

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this."""
        return 2 ** len(self.levels)

    def valid_levels(self, valid: torch.Tensor | None) -> list:
        """The image's positions at each level: a squeezed position is the image's when all its
        sub-positions are (None: no padding, every position)."""
        out = []
        for _ in self.levels:
            valid = None if valid is None else squeeze(valid).amin(dim=1, keepdim=True)
            out.append(valid)
        return out

    def forward(self, x: torch.Tensor, s: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid``: 1 on the image, 0 on its padding (see :class:`AAN`)."""
        for blocks, v in zip(self.levels, self.valid_levels(valid)):
            x = squeeze(x)
            for block in blocks:
                x = block(x, s, v)
        for _ in self.levels:
            x = unsqueeze(x)
        return x

    def inverse(self, y: torch.Tensor, s: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        for _ in self.levels:
            y = squeeze(y)
        for blocks, v in zip(reversed(self.levels), reversed(self.valid_levels(valid))):
            for block in reversed(blocks):
                y = block.inverse(y, s, v)
            y = unsqueeze(y)
        return y


class SqueezeIHF(StyleConditioned):
    """The squeeze variant's whole network, the artefact encoder (``style``) and the flow
    (``flow``): ``forward(x, code)`` harmonizes ``x`` to the style ``code`` of a target
    (:meth:`style_code`); :meth:`inverse` takes the harmonized image back to ``x``.

    Parameters
    ----------
    dims : int
        2 for slices, 3 for volumes.
    levels, blocks, hidden, style_dim : int
        The settings of :class:`SqueezeFlow` (``style_dim`` also sizes the encoder's code).

    Examples
    --------
    >>> net = SqueezeIHF(dims=2)
    >>> x = torch.rand(1, 1, 16, 16)
    >>> code = net.style_code(torch.rand(1, 1, 16, 16))
    >>> bool(torch.allclose(net.inverse(net(x, code), code), x, atol=1e-5))
    True
    """

    def __init__(self, dims: int = 3, levels: int = 2, blocks: int = 3, hidden: int = 32, style_dim: int = 32):
        super().__init__()
        self.dims = dims
        self.style = ArtefactEncoder(style_dim, dims=dims)  # state-dict keys "style.*", "flow.*"
        self.flow = SqueezeFlow(levels, blocks, hidden, style_dim, dims)

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this (the squeezes halve them)."""
        return self.flow.multiple

    def forward(self, x: torch.Tensor, code: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.flow(x, code.expand(x.shape[0], -1), valid)

    def inverse(self, y: torch.Tensor, code: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.flow.inverse(y, code.expand(y.shape[0], -1), valid)
