"""The building blocks that HAIL and IHF-Harmony share: convolutions of either dimensionality,
masks brought to a feature grid, per-channel feature statistics inside a mask, and the style
loss that compares those statistics; :class:`StyleConditioned`, the style code of IHF-Harmony's flows.

Both methods work on 2D slices or 3D volumes (:func:`conv_class`), take the statistics of their
features inside the brain (:func:`mask_at`, :func:`channel_stats`; over all the slices of one
volume together with :func:`as_one_sample`) and train their style against the target's channel
means and standard deviations (:func:`style_loss`). The models themselves live in their own
modules (:mod:`mrharmony.structural.hail`, :mod:`mrharmony.structural.ihf`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_class(dims: int) -> type[nn.Module]:
    """The convolution of a dimensionality.

    Parameters
    ----------
    dims : int
        3 for volumes, 2 for slices.

    Returns
    -------
    type
        ``nn.Conv3d`` or ``nn.Conv2d``.
    """
    return nn.Conv3d if dims == 3 else nn.Conv2d


def resize(f: torch.Tensor, size) -> torch.Tensor:
    """Features (N, C, ...) interpolated (trilinear in 3D, bilinear in 2D) to the spatial ``size``."""
    return F.interpolate(f, size=tuple(size), mode="trilinear" if f.dim() == 5 else "bilinear", align_corners=False)


def mask_at(mask: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor | None:
    """A mask (N, 1, ...) as 0/1 floats on the grid of the features ``f`` (resized, then
    thresholded at 0.5); None stays None."""
    if mask is None:
        return None
    if tuple(mask.shape[2:]) == tuple(f.shape[2:]):
        return (mask > 0.5).float()
    return (resize(mask.float(), f.shape[2:]) > 0.5).float()


def as_one_sample(f: torch.Tensor, mask: torch.Tensor | None = None):
    """Features (N, C, ...) and their mask (N, 1, ..., on the features' grid) as one sample
    (1, C, N * ...): the slices of one volume, whose statistics are taken together."""
    f = f.transpose(0, 1).reshape(1, f.shape[1], -1)
    return f, None if mask is None else mask.transpose(0, 1).reshape(1, 1, -1)


def channel_stats(f: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5):
    """Per-sample, per-channel mean and standard deviation of features (N, C, ...) inside ``mask``
    (N, 1, ...; brought to the features' size), each (N, C, 1, 1, 1)."""
    m = mask_at(mask, f)
    dims = tuple(range(2, f.dim()))
    if m is None:
        mean = f.mean(dim=dims, keepdim=True)
        var = f.var(dim=dims, keepdim=True, unbiased=False)
    else:
        n = m.sum(dim=dims, keepdim=True).clamp_min(1.0)
        mean = (f * m).sum(dim=dims, keepdim=True) / n
        var = (((f - mean) * m) ** 2).sum(dim=dims, keepdim=True) / n
    return mean, torch.sqrt(var + eps)


def style_loss(
    pred_feats: list[torch.Tensor], target_feats: list[torch.Tensor], mask=None, target_mask=None, *, keep: float = 1.0
):
    """Sum over depths of the distances (MSE) between channel means and between channel stds,
    inside the masks. ``keep`` < 1 (IHF-Harmony's code): per depth, only that share of channels
    whose means differ least (the rest, where the two images' content differs most, left out)."""
    loss = pred_feats[0].new_zeros(())
    for fp, ft in zip(pred_feats, target_feats):
        mp, sp = channel_stats(fp, mask)
        mt, st = channel_stats(ft, target_mask)
        if keep >= 1.0:
            loss = loss + F.mse_loss(mp, mt) + F.mse_loss(sp, st)
            continue
        dm, ds = ((mp - mt) ** 2).flatten(1), ((sp - st) ** 2).flatten(1)
        k = max(1, round(keep * dm.shape[1]))
        idx = torch.topk(dm.detach(), k, dim=1, largest=False).indices
        loss = loss + dm.gather(1, idx).mean() + ds.gather(1, idx).mean()
    return loss


class StyleConditioned(nn.Module):
    """A network conditioned on a target's style code, which its encoder ``style`` (set by the
    subclass) computes from target images: IHF-Harmony's flows."""

    style: nn.Module

    def style_code(self, target: torch.Tensor, mask: torch.Tensor | None = None, *, pool_batch: bool = False):
        """The style code (N, style_dim) of ``target`` inside ``mask``; one (1, style_dim) with ``pool_batch``."""
        return self.style(target, mask, pool_batch=pool_batch)
