"""IHF-Harmony's residual variant (``flow: residual``, named ``ihf_residual`` in every row): a flow
of this project that is exactly invertible without any squeeze, so nothing in it depends on pixel
parity.

* **Subtractive blocks on the image's own grid**: each block maps ``x`` to ``x - g(x, s)``, where
  ``g`` is a small convolutional network conditioned on the style code ``s``. Its convolutions are
  scaled so that ``g`` is a contraction in ``x`` (Lipschitz constant at most :data:`LIPSCHITZ`),
  which makes the block a bijection (as in invertible residual networks, Behrmann et al. 2019):
  its inverse is the fixed point of ``x = y + g(x, s)``, reached by iterating from ``y``.
* **A hierarchy of scales without a grid**: the blocks of level ``l`` use convolutions dilated by
  ``2 ** l``, so deeper levels see further without any stride; every operation is a convolution
  on the full grid, the same at every voxel.
* **Artefact-aware modulation** (:class:`StyleModulation`): the hidden features are scaled by
  ``1 + tanh(a(s)) / 2`` and shifted by ``b(s)``, both linear in the target's style code
  (:class:`~mrharmony.structural.ihf.squeeze_flow.ArtefactEncoder`), starting at zero. Unlike the
  paper's AAN it normalizes nothing by the image's own statistics, which would let ``g`` expand.

The Lipschitz bound: a convolution's operator norm is at most the sum over its kernel offsets of
each offset's matrix norm, which is at most ``sqrt(K) ||W||_F`` for ``K`` offsets; each convolution
is scaled below its share of :data:`LIPSCHITZ` by that bound, the leaky ReLUs are 1-Lipschitz and
the modulation at most 1.5. The last convolution of every ``g`` starts at zero: the flow starts as
the identity.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from mrharmony.structural.blocks import StyleConditioned, conv_class
from mrharmony.structural.ihf.squeeze_flow import ArtefactEncoder

#: the largest Lipschitz constant of each block's ``g``: the inverse's iterations shrink the error by it
LIPSCHITZ = 0.7
#: the inverse stops when an iteration moves no voxel by more than this share of the image's largest value
INVERSE_TOLERANCE = 1e-7
#: or at the floor of the arithmetic's rounding: where the largest move, already below this many units
#: in the last place of the image's largest value, has not shrunk for two iterations (rounding alone
#: can move a voxel by a unit in the last place back and forth, about 1e-7 of its value in single
#: precision, just above INVERSE_TOLERANCE)
ROUNDING_FLOOR_ULPS = 8
INVERSE_MAX_ITERATIONS = 200


class BoundedConv(nn.Module):
    """A 3^d convolution (zero padding, dilation ``dilation``) whose operator norm is at most ``bound``."""

    def __init__(self, cin: int, cout: int, dims: int, *, dilation: int = 1, bound: float = 1.0, zero: bool = False):
        super().__init__()
        init = cast(nn.Conv2d, conv_class(dims)(cin, cout, 3))  # PyTorch's own initialization of such a convolution
        weight, bias = init.weight.detach().clone(), cast(torch.Tensor, init.bias).detach().clone()
        self.raw_weight = nn.Parameter(torch.zeros_like(weight) if zero else weight)
        self.bias = nn.Parameter(torch.zeros_like(bias) if zero else bias)
        self.dims, self.dilation, self.bound = dims, dilation, bound

    def weight(self) -> torch.Tensor:
        w = self.raw_weight
        norm = math.sqrt(w[0, 0].numel()) * torch.linalg.vector_norm(w)
        return w * torch.clamp(self.bound / (norm + 1e-12), max=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = F.conv3d if self.dims == 3 else F.conv2d
        return fn(x, self.weight(), self.bias, padding=self.dilation, dilation=self.dilation)


class StyleModulation(nn.Module):
    """``h * (1 + tanh(a(s)) / 2) + b(s)``: at most 1.5-Lipschitz in ``h``; the identity at the start."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.scale = nn.Linear(style_dim, channels)
        self.shift = nn.Linear(style_dim, channels)
        for lin in (self.scale, self.shift):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        shape = (s.shape[0], -1) + (1,) * (h.dim() - 2)
        return h * (1 + 0.5 * torch.tanh(self.scale(s).view(shape))) + self.shift(s).view(shape)


class ResidualBlock(nn.Module):
    """``x -> x - g(x, s)`` with ``g`` a contraction in ``x``; :meth:`inverse` by fixed-point iteration."""

    def __init__(self, hidden: int, style_dim: int, dims: int, dilation: int):
        super().__init__()
        # bounds whose product with the two modulations' 1.5 is LIPSCHITZ
        self.c1 = BoundedConv(1, hidden, dims, dilation=dilation)
        self.c2 = BoundedConv(hidden, hidden, dims, dilation=dilation)
        self.out = BoundedConv(hidden, 1, dims, dilation=dilation, bound=LIPSCHITZ / 2.25, zero=True)
        self.m1, self.m2 = StyleModulation(hidden, style_dim), StyleModulation(hidden, style_dim)

    def g(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.m1(self.c1(x), s), 0.2)
        h = F.leaky_relu(self.m2(self.c2(h), s), 0.2)
        return self.out(h)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return x - self.g(x, s)

    def inverse(self, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        scale = float(y.abs().max()) or 1.0
        floor = ROUNDING_FLOOR_ULPS * torch.finfo(y.dtype).eps * scale
        x, last, stalled = y, math.inf, 0
        for _ in range(INVERSE_MAX_ITERATIONS):
            nxt = y + self.g(x, s)
            step = float((nxt - x).abs().max())
            x = nxt
            stalled = stalled + 1 if step <= floor and step >= last else 0
            if step <= INVERSE_TOLERANCE * scale or stalled >= 2:
                return x
            last = min(last, step)
        raise RuntimeError(f"the residual flow's inverse did not converge in {INVERSE_MAX_ITERATIONS} iterations")


class ResidualIHF(StyleConditioned):
    """The residual variant's whole network, the artefact encoder (``style``) and the blocks:
    ``forward(x, code)`` harmonizes ``x`` (N, 1, ...) to the style ``code`` of a target
    (:meth:`style_code`); :meth:`inverse` takes the harmonized image back to ``x``, at any size.

    Parameters
    ----------
    dims : int
        2 for slices, 3 for volumes.
    levels : int
        Levels of the hierarchy: the blocks of level ``l`` are dilated by ``2 ** l``.
    blocks : int
        Blocks per level.
    hidden : int
        Hidden channels of each ``g``.
    style_dim : int
        Length of the style code.

    Examples
    --------
    >>> net = ResidualIHF(dims=2)
    >>> x = torch.rand(1, 1, 15, 13)
    >>> code = net.style_code(torch.rand(1, 1, 16, 16))
    >>> bool(torch.allclose(net.inverse(net(x, code), code), x, atol=1e-5))
    True
    """

    def __init__(self, dims: int = 2, levels: int = 2, blocks: int = 3, hidden: int = 32, style_dim: int = 32):
        super().__init__()
        self.dims = dims
        self.style = ArtefactEncoder(style_dim, dims=dims)
        self.blocks = nn.ModuleList(
            [ResidualBlock(hidden, style_dim, dims, 2**level) for level in range(levels) for _ in range(blocks)]
        )

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this (any size: there is no squeeze)."""
        return 1

    def forward(self, x: torch.Tensor, code: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid`` is accepted for the harmonizer's common path and unused (no padding)."""
        s = code.expand(x.shape[0], -1)
        for block in self.blocks:
            x = block(x, s)
        return x

    def inverse(self, y: torch.Tensor, code: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        s = code.expand(y.shape[0], -1)
        blocks = cast(list[ResidualBlock], list(self.blocks))
        with torch.no_grad():
            for block in reversed(blocks):
                y = block.inverse(y, s)
        return y
