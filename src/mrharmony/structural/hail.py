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

Choices the paper leaves open, made here: levels of 3x3x3 convolutions with ReLU, stride-2
convolutions between levels, no normalization layers in the encoder, whose statistics are what
AdaIN transfers; two levels by default (16 and 32 channels, the deepest at half resolution: with
a third level of 64 channels at quarter resolution, the paper's decoder, which sees the deepest
features only, reconstructed the demo data's validation crops clearly worse after as many
autoencoder steps: docs/history.md); the decoder
upsamples trilinearly (no checkerboard artefacts); images enter divided by the 99th percentile of their
brain, and the prediction is returned on the target's scale; statistics are taken inside the
brain mask, brought down to each level. The encoder and decoder also come in 2D (``dims=2``),
which IHF-Harmony uses as its feature encoder.

A variant that is not the paper's model, named ``hail_unet`` in every row, sidecar and report
(``skips: true``): AdaIN restyles the features of every depth and the decoder is a U-Net that
receives all of them, so detail finer than the deepest level (8 mm at 2 mm voxels) is kept, and
the content loss covers every restyled depth. The default (``skips: false``) is the paper's:
AdaIN on the deepest features, then the decoder.

:class:`HAILHarmonizer` is a trained HAIL as an
:class:`~mrharmony.structural.harmonizer.ImageHarmonizer` (``load``, ``transform``; trained by
:func:`mrharmony.structural.training.train_harmonizer`).
The blocks it shares with IHF-Harmony (convolutions of either dimensionality, masked channel
statistics, the style loss) are in :mod:`mrharmony.structural.blocks`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from mrharmony.structural.base import ImageMethodConfig, brain_scale
from mrharmony.structural.blocks import channel_stats, conv_class, resize, style_loss
from mrharmony.structural.harmonizer import HarmonizedImage, TrainedImageHarmonizer

WIDTHS = (16, 32)


def _block(cin: int, cout: int, stride: int = 1, dims: int = 3) -> nn.Sequential:
    conv = conv_class(dims)
    return nn.Sequential(
        conv(cin, cout, 3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        conv(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """Features at each depth: full resolution, then halved per level (3D volumes, or 2D slices
    with ``dims=2``)."""

    def __init__(self, widths=WIDTHS, dims: int = 3):
        super().__init__()
        self.levels = nn.ModuleList(
            [_block(1, widths[0], dims=dims)]
            + [_block(widths[i - 1], widths[i], stride=2, dims=dims) for i in range(1, len(widths))]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    """From the encoder's features back to an image of the input's size.

    Without ``skips`` only the deepest features are decoded (the classic AdaIN decoder); with
    them, each level also receives the encoder's features of its depth (a U-Net), which AdaIN
    has given the target's statistics too.
    """

    def __init__(self, widths=WIDTHS, skips: bool = False, dims: int = 3):
        super().__init__()
        rev = list(widths)[::-1]
        self.skips = skips
        self.levels = nn.ModuleList(
            [_block(rev[i] + (rev[i + 1] if skips else 0), rev[i + 1], dims=dims) for i in range(len(rev) - 1)]
        )
        self.out = conv_class(dims)(rev[-1], 1, 3, padding=1)

    def forward(self, feats: list[torch.Tensor], size) -> torch.Tensor:
        f = feats[-1]
        for k, level in enumerate(self.levels):
            skip = feats[-2 - k]
            f = resize(f, skip.shape[2:])
            if self.skips:
                f = torch.cat([f, skip], dim=1)
            f = level(f)
        if tuple(f.shape[2:]) != tuple(size):
            f = resize(f, size)
        return self.out(f)


def adain(
    content: torch.Tensor,
    style_mean: torch.Tensor,
    style_std: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Adaptive instance normalization: ``content`` standardized per channel (inside ``mask``)
    and given ``style_mean`` and ``style_std``."""
    mean, std = channel_stats(content, mask, eps)
    return (content - mean) / std * style_std + style_mean


class HAIL(nn.Module):
    """Encoder + AdaIN + decoder; ``forward(x, target)`` is the harmonized image (normalized scale).

    With ``residual`` the prediction is the input plus what the restyling changes in the decoded
    image, ``x + D(AdaIN(E(x))) - D(E(x))``: what the decoder cannot reproduce of the input (fine
    detail, a person's own anatomy) is taken from the input itself, and an image restyled to its
    own statistics comes back unchanged.
    """

    def __init__(self, widths=WIDTHS, skips: bool = False, dims: int = 3, residual: bool = False):
        super().__init__()
        self.encoder = Encoder(widths, dims)
        self.decoder = Decoder(widths, skips, dims)
        self.residual = residual

    @property
    def styled_levels(self) -> int:
        """How many depths (from the deepest) AdaIN restyles: all with skips, else the deepest."""
        return len(self.encoder.levels) if self.decoder.skips else 1

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x), x.shape[2:])

    def transfer(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(prediction, AdaIN features of the restyled depths, target features at every depth)."""
        fc = self.encoder(x)
        ft = self.encoder(target)
        n = len(fc) - self.styled_levels
        styled = [adain(f, *channel_stats(g, target_mask), mask) for f, g in zip(fc[n:], ft[n:])]
        pred = self.decoder(fc[:n] + styled, x.shape[2:])
        if self.residual:
            pred = x + pred - self.decoder(fc, x.shape[2:])
        return pred, styled, ft

    def forward(self, x, target, mask=None, target_mask=None):
        return self.transfer(x, target, mask, target_mask)[0]


def content_loss(pred_feats: list[torch.Tensor], styled: list[torch.Tensor]) -> torch.Tensor:
    """Sum over the restyled depths (the deepest ones) of the MSE between the prediction's
    features and the AdaIN output."""
    n = len(pred_feats) - len(styled)
    return sum(F.mse_loss(p, a) for p, a in zip(pred_feats[n:], styled))


def consistency_loss(pred_same_site: torch.Tensor, x: torch.Tensor, mask=None) -> torch.Tensor:
    """L1 between an image harmonized to its own site and itself (inside the mask)."""
    if mask is None:
        return (pred_same_site - x).abs().mean()
    m = mask.float()
    return ((pred_same_site - x).abs() * m).sum() / m.sum().clamp_min(1.0)


def as_volume(a: np.ndarray, device="cpu", multiple: int = 1) -> torch.Tensor:
    """(X, Y, Z) -> (1, 1, X', Y', Z') float32 on ``device``, zero-padded at the end of each axis
    up to a multiple of ``multiple``."""
    v = np.pad(a, [(0, (-n) % multiple) for n in a.shape]) if multiple > 1 else a
    return torch.from_numpy(np.ascontiguousarray(v, np.float32))[None, None].to(device)


def harmonize(
    net: HAIL,
    image: np.ndarray,
    mask: np.ndarray,
    target: np.ndarray,
    target_mask: np.ndarray,
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``image`` (3D) with the appearance of the one ``target`` image (any grid), as float32 on the
    target's intensity scale; negative values (none expected) are set to 0.

    The whole volumes go through the networks at once, so the channel statistics AdaIN transfers
    are those of the whole brains. (:class:`HAILHarmonizer` is this as an
    :class:`~mrharmony.structural.harmonizer.ImageHarmonizer`.)
    """
    net = net.to(device).eval()
    s_in, s_t = brain_scale(image, mask), brain_scale(target, target_mask)
    with torch.no_grad():
        pred = net(
            as_volume(image / s_in, device),
            as_volume(target / s_t, device),
            as_volume(mask, device),
            as_volume(target_mask, device),
        )
    out = pred[0, 0].float().cpu().numpy() * s_t
    return np.maximum(out, 0).astype(np.float32)


#: the row name of HAIL with the U-Net decoder (``skips: true``), a variant of the paper's model
UNET_NAME = "hail_unet"
#: the suffix of the row name of HAIL with the input's residual (``residual: true``), a variant
RESIDUAL_SUFFIX = "_residual"


def hail_row_name(skips: bool, residual: bool) -> str:
    """The row name of a HAIL model: ``hail``, ``hail_unet``, and either with ``_residual``."""
    return (UNET_NAME if skips else "hail") + (RESIDUAL_SUFFIX if residual else "")


class HAILHarmonizer(TrainedImageHarmonizer):
    """HAIL as an :class:`~mrharmony.structural.harmonizer.ImageHarmonizer`: a trained network
    (``net``) applied by :func:`harmonize` on ``device``.

    Examples:
        >>> h = HAILHarmonizer.load("runs/hail")                               # doctest: +SKIP
        >>> pred = h.transform(image, target=target_image).image               # doctest: +SKIP
    """

    method = "hail"
    title = "HAIL"
    description = "T1-weighted image harmonized by HAIL to the site of the target image"
    #: the decoder re-synthesizes the image from its features: a trained HAIL of the demo's budget
    #: loses a cortical thinning that the input shows (its reconstruction alone loses it); the
    #: residual variant keeps it (set per model in ``__init__``)
    keeps_differences = False
    train_command = "structural train"

    def __init__(
        self,
        net: HAIL,
        *,
        meta: dict | None = None,
        model_file=None,
        name: str | None = None,
        device: str | torch.device = "cpu",
    ):
        model = (meta or {}).get("model", {})
        unet, residual = bool(model.get("skips", False)), bool(model.get("residual", False))
        row = hail_row_name(unet, residual)
        parts = [p for p, on in (("U-Net", unet), ("residual", residual)) if on]
        super().__init__(
            net,
            meta=meta,
            model_file=model_file,
            name=name,
            variant=(
                row,
                f"HAIL ({' and '.join(parts)} variant)",
                f"T1-weighted image harmonized by HAIL's {' and '.join(parts)} variant ({row}) to the site of the "
                "target image",
            )
            if parts
            else None,
        )
        self.device = device
        # measured (tests/structural/test_keeps_differences.py): re-synthesized, a briefly trained HAIL
        # loses a cortical thinning; with the input's residual it keeps it
        self.keeps_differences = residual

    @classmethod
    def build_network(cls, model: dict) -> HAIL:
        return HAIL(tuple(model["widths"]), model.get("skips", False), residual=model.get("residual", False))

    def _transform(self, image, mask, target, target_mask) -> HarmonizedImage:
        return HarmonizedImage(harmonize(self.net, image, mask, target, target_mask, device=self.device))


class HAILConfig(ImageMethodConfig):
    method: Literal["hail"]
    widths: tuple[int, ...] = Field(
        default=WIDTHS,
        min_length=2,
        description="channels per level (each level after "
        "the first halves the resolution); the U-Net variant was run with (16, 32, 64)",
    )
    skips: bool = Field(
        default=False,
        description="a variant of the paper's model, named hail_unet in every row: "
        "AdaIN at every depth and a decoder that gets each depth's restyled features (a U-Net); "
        "default the paper's (AdaIN on the deepest features, then the decoder)",
    )
    residual: bool = Field(
        default=False,
        description="a variant of this project, named with _residual in every row: the prediction is the input "
        "plus what the restyling changes in the decoded image, so that what the decoder cannot reproduce "
        "(detail, a person's own anatomy) is kept; default the paper's (the decoded image itself)",
    )
    content_weight: float = Field(default=100.0, ge=0)
    style_weight: float = Field(default=100.0, ge=0)
    consistency_weight: float = Field(default=1.0, ge=0)

    def row_name(self) -> str:
        return hail_row_name(self.skips, self.residual)

    def build(self):
        return HAIL(tuple(self.widths), self.skips, residual=self.residual)

    def phase2_modules(self, net) -> tuple:
        return net.decoder, net.encoder

    def transfer_losses(self, net, batch: dict) -> dict:
        x, mx, t, mt, s, ms = (batch[k] for k in ("x", "mx", "t", "mt", "s", "ms"))
        pred, ada, tfeats = net.transfer(x, t, mx, mt)
        pfeats = net.encoder(pred)
        content = content_loss(pfeats, ada)
        style = style_loss(pfeats, tfeats, mx, mt)
        same, _, _ = net.transfer(x, s, mx, ms)
        consistency = consistency_loss(same, x, mx)
        total = self.content_weight * content + self.style_weight * style + self.consistency_weight * consistency
        return {"loss": total, "content": content, "style": style, "consistency": consistency}

    @classmethod
    def harmonizer(cls):
        return HAILHarmonizer
