"""Building blocks of the deep harmonizers: 3D sub-voxel shuffle, centred crops, reversible blocks.

Every network of mrharmony uses valid (unpadded) convolutions, so that an output voxel depends
only on input voxels of its own patch: tiled whole-volume inference then gives exactly the
values of patch-by-patch inference. Outputs are smaller than inputs and are compared with the
centred part of the target patch (:func:`center_crop`).
"""

from __future__ import annotations

import torch
from torch import nn


def shuffle3d(x: torch.Tensor, r: int) -> torch.Tensor:
    """3D sub-voxel shuffle (ESPCN): (B, C r^3, D, H, W) -> (B, C, D r, H r, W r).

    Channel group ``c * r^3 + (i r^2 + j r + k)`` becomes voxel offset (i, j, k) of channel c.
    """
    if r == 1:
        return x
    b, cr3, d, h, w = x.shape
    c = cr3 // r**3
    if c * r**3 != cr3:
        raise ValueError(f"{cr3} channels are not a multiple of r^3 = {r**3}")
    x = x.reshape(b, c, r, r, r, d, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c, d * r, h * r, w * r)


def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    """The centred part of the last three axes: ``size`` is an int (a cube) or three ints.

    The margins removed on each axis must be even (the same on both sides).
    """
    sizes = (size,) * 3 if isinstance(size, int) else tuple(int(v) for v in size)
    slices = []
    for n, s in zip(x.shape[-3:], sizes):
        if s > n or (n - s) % 2:
            raise ValueError(f"cannot crop {n} voxels to a centred {s}")
        m = (n - s) // 2
        slices.append(slice(m, m + s))
    return x[(..., *slices)]


def crop_margin(x: torch.Tensor, m: int) -> torch.Tensor:
    """Remove ``m`` voxels from both sides of each of the last three axes."""
    return x[..., m : x.shape[-3] - m, m : x.shape[-2] - m, m : x.shape[-1] - m] if m else x


def under_output(x: torch.Tensor, out_size, ratio: int) -> torch.Tensor:
    """The input voxels under an output of ``out_size`` (its last three axes) on a grid ``ratio``
    times finer, centred, each repeated ``ratio`` times along every axis: what each output voxel
    sits in."""
    sizes = (out_size,) * 3 if isinstance(out_size, int) else tuple(int(v) for v in out_size)
    x = center_crop(x, tuple(n // ratio for n in sizes))
    for axis in (-3, -2, -1):
        x = x.repeat_interleave(ratio, dim=axis)
    return x


class Conv(nn.Sequential):
    """A valid 3D convolution followed by ReLU (``relu=False`` for output layers)."""

    def __init__(self, cin: int, cout: int, k: int, *, relu: bool = True):
        layers: list[nn.Module] = [nn.Conv3d(cin, cout, k)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Upsample2(nn.Sequential):
    """A deconvolution to 2x resolution: transposed convolution with kernel 2 and stride 2.

    Each coarse voxel i becomes fine voxels 2i and 2i + 1 along each axis, so the grids stay
    aligned, n voxels become exactly 2n, and every output voxel depends on the input alone (as
    with valid convolutions; a kernel-4 deconvolution would let the outermost outputs depend
    on voxels beyond the patch). It equals a 1^3 convolution to 8x the channels followed by a
    sub-voxel shuffle; the convolutions after it provide the smoothing.
    """

    def __init__(self, cin: int, cout: int, *, relu: bool = True):
        layers: list[nn.Module] = [nn.ConvTranspose3d(cin, cout, 2, stride=2)]
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class _Residual(nn.Module):
    """F or G of a reversible block: conv + ReLU + conv, shape-preserving.

    With ``kernel`` 1 (the default) no padding enters, so the valid-convolution property of the
    network holds; a larger odd kernel uses zero padding and so sees the patch border.
    """

    def __init__(self, channels: int, kernel: int = 1):
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, kernel, padding=pad),
            nn.ReLU(),
            nn.Conv3d(channels, channels, kernel, padding=pad),
        )

    def forward(self, x):
        return self.body(x)


class _ReversibleFunction(torch.autograd.Function):
    """Runs reversible blocks without storing their activations; backward recomputes them.

    The parameters are inputs of the function so that autograd (and DDP's gradient hooks) see
    their gradients.
    """

    @staticmethod
    def forward(ctx, x, blocks, *params):
        ctx.blocks = blocks
        ctx.n_params = [sum(1 for _ in blk.parameters()) for blk in blocks]
        with torch.no_grad():
            for blk in blocks:
                x = blk.forward_plain(x)
        ctx.save_for_backward(x.detach())
        return x

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        per_block = []
        for blk in reversed(ctx.blocks):
            with torch.no_grad():
                x = blk.inverse(y)
            x = x.detach().requires_grad_(True)
            params = list(blk.parameters())
            with torch.enable_grad():
                out = blk.forward_plain(x)
            grads = torch.autograd.grad(out, [x, *params], grad_y, allow_unused=True)
            grad_y = grads[0]
            per_block.append(grads[1:])
            y = x.detach()
        param_grads = [g for block_grads in reversed(per_block) for g in block_grads]
        return (grad_y, None, *param_grads)


class ReversibleBlock(nn.Module):
    """Additive coupling (RevNet): y1 = x1 + F(x2), y2 = x2 + G(y1); exactly invertible.

    The channels are split in two halves; ``channels`` must be even. Spatial size is kept.
    """

    def __init__(self, channels: int, kernel: int = 1):
        super().__init__()
        if channels % 2:
            raise ValueError("a reversible block needs an even number of channels")
        self.f = _Residual(channels // 2, kernel)
        self.g = _Residual(channels // 2, kernel)

    def forward_plain(self, x):
        x1, x2 = torch.chunk(x, 2, dim=1)
        y1 = x1 + self.f(x2)
        y2 = x2 + self.g(y1)
        return torch.cat([y1, y2], dim=1)

    def inverse(self, y):
        y1, y2 = torch.chunk(y, 2, dim=1)
        x2 = y2 - self.g(y1)
        x1 = y1 - self.f(x2)
        return torch.cat([x1, x2], dim=1)

    def forward(self, x):
        return self.forward_plain(x)


class ReversibleSequence(nn.Module):
    """Reversible blocks trained with memory independent of their number (Gomez et al. 2017).

    With ``memory_saving`` (default), activations inside the blocks are not kept for backward;
    they are recomputed from the output through the exact inverse, as in the low-memory
    training of Deeper Image Quality Transfer.
    """

    def __init__(self, channels: int, n_blocks: int, *, kernel: int = 1, memory_saving: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(ReversibleBlock(channels, kernel) for _ in range(n_blocks))
        self.memory_saving = memory_saving

    def forward(self, x):
        if not self.blocks:
            return x
        params = list(self.parameters())
        if self.memory_saving and torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
            return _ReversibleFunction.apply(x, list(self.blocks), *params)
        for blk in self.blocks:
            x = blk.forward_plain(x)
        return x
