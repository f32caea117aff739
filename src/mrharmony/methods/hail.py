"""HAIL's networks and losses: one-shot structural harmonization by style transfer.

HAIL (arXiv 2308.11047) harmonizes an input image to a new site from one image of that site:

* a 3D feature extractor (:class:`Encoder`, with :class:`Decoder` its mirror) is first trained
  to reconstruct images of the training sites (an autoencoder);
* the input's deepest features (content) and the target image's (style) meet in adaptive
  instance normalization (:func:`adain`): the content features, standardized per channel, take
  the target's channel means and standard deviations; the decoder turns the result into the
  prediction;
* the decoder is then trained with a content loss (the prediction's deepest features against
  the AdaIN output), a style loss (channel means and standard deviations of the prediction's
  features at every depth against the target's) and a consistency loss (an image harmonized to
  an image of its own site stays as it was), weighted in the config.

Choices the paper leaves open, made here: three levels of 3x3x3 convolutions with ReLU (16, 32
and 64 channels, stride-2 convolutions between levels, no normalization layers in the encoder,
whose statistics are what AdaIN transfers); the decoder upsamples trilinearly (no checkerboard
artefacts); images enter divided by the 99th percentile of their brain, and the prediction is
returned on the target's scale; statistics are taken inside the brain mask, brought down to
each level.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

WIDTHS = (16, 32, 64)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True),
                         nn.Conv3d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """Features at three depths: full, half and quarter resolution."""

    def __init__(self, widths=WIDTHS):
        super().__init__()
        self.levels = nn.ModuleList([_block(1, widths[0])] +
                                    [_block(widths[i - 1], widths[i], stride=2) for i in range(1, len(widths))])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    """From the deepest features back to an image of the input's size."""

    def __init__(self, widths=WIDTHS):
        super().__init__()
        rev = list(widths)[::-1]
        self.levels = nn.ModuleList([_block(rev[i], rev[i + 1]) for i in range(len(rev) - 1)])
        self.out = nn.Conv3d(rev[-1], 1, 3, padding=1)

    def forward(self, f: torch.Tensor, size) -> torch.Tensor:
        for level in self.levels:
            f = F.interpolate(f, scale_factor=2, mode="trilinear", align_corners=False)
            f = level(f)
        f = F.interpolate(f, size=tuple(size), mode="trilinear", align_corners=False)
        return self.out(f)


def _mask_at(mask: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    return (F.interpolate(mask.float(), size=f.shape[2:], mode="trilinear", align_corners=False) > 0.5).float()


def channel_stats(f: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5):
    """Per-sample, per-channel mean and standard deviation of features (N, C, ...) inside ``mask``
    (N, 1, ...; brought to the features' size), each (N, C, 1, 1, 1)."""
    m = _mask_at(mask, f)
    dims = tuple(range(2, f.dim()))
    if m is None:
        mean = f.mean(dim=dims, keepdim=True)
        var = f.var(dim=dims, keepdim=True, unbiased=False)
    else:
        n = m.sum(dim=dims, keepdim=True).clamp_min(1.0)
        mean = (f * m).sum(dim=dims, keepdim=True) / n
        var = (((f - mean) * m) ** 2).sum(dim=dims, keepdim=True) / n
    return mean, torch.sqrt(var + eps)


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          mask: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalization: ``content`` standardized per channel (inside ``mask``)
    and given ``style_mean`` and ``style_std``."""
    mean, std = channel_stats(content, mask, eps)
    return (content - mean) / std * style_std + style_mean


class HAIL(nn.Module):
    """Encoder + AdaIN + decoder; ``forward(x, target)`` is the harmonized image (normalized scale)."""

    def __init__(self, widths=WIDTHS):
        super().__init__()
        self.encoder = Encoder(widths)
        self.decoder = Decoder(widths)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)[-1], x.shape[2:])

    def transfer(self, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                 target_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(prediction, AdaIN features, target features at every depth)."""
        fc = self.encoder(x)[-1]
        ft = self.encoder(target)
        mean, std = channel_stats(ft[-1], target_mask)
        t = adain(fc, mean, std, mask)
        return self.decoder(t, x.shape[2:]), t, ft

    def forward(self, x, target, mask=None, target_mask=None):
        return self.transfer(x, target, mask, target_mask)[0]


def style_loss(pred_feats: list[torch.Tensor], target_feats: list[torch.Tensor], mask=None, target_mask=None):
    """Sum over depths of the distances between channel means and between channel stds."""
    loss = pred_feats[0].new_zeros(())
    for fp, ft in zip(pred_feats, target_feats):
        mp, sp = channel_stats(fp, mask)
        mt, st = channel_stats(ft, target_mask)
        loss = loss + F.mse_loss(mp, mt) + F.mse_loss(sp, st)
    return loss


def content_loss(pred_deepest: torch.Tensor, adain_out: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred_deepest, adain_out)


def consistency_loss(pred_same_site: torch.Tensor, x: torch.Tensor, mask=None) -> torch.Tensor:
    """L1 between an image harmonized to its own site and itself (inside the mask)."""
    if mask is None:
        return (pred_same_site - x).abs().mean()
    m = mask.float()
    return ((pred_same_site - x).abs() * m).sum() / m.sum().clamp_min(1.0)
