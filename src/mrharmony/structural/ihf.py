"""IHF-Harmony's networks: the squeeze variant of the flow (``ihf_squeeze``), the parts both flows
share (artefact-aware normalization, the loss features, applying and restoring), the config and
the harmonizer.

IHF-Harmony (arXiv 2602.21536) harmonizes images of any modality between sites from unpaired
data. The paper's flow (``flow: hierarchy``, the default, named ``ihf``) is built in
:mod:`mrharmony.structural.ihf_hierarchy`. This module's own flow (``flow: squeeze``, named
``ihf_squeeze`` in every row, a variant of this project) is invertible by construction:

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
runs the same blocks backwards (:meth:`HierarchyFlow.inverse`). Nothing is blended after the
flow, so the harmonized image always decodes back to its source.

Choices made here: two levels of three blocks each, 32 hidden channels in ``f``, a
32-dimensional style code, images divided by their brain's 99th percentile on the way in and
multiplied by the target's on the way out (both flows); at apply time, sizes that the squeezes
cannot halve are padded by reflection to a multiple of ``2 ** levels``, the normalizations'
statistics leave the padding out (at a squeezed level, every position that holds padding), and
the flow's values on the padding are kept with the result (:func:`harmonize_flow`), so that the
inverse is exact at any size.

:class:`IHFHarmonizer` is a trained IHF-Harmony as an
:class:`~mrharmony.structural.harmonizer.ImageHarmonizer` (``load``, ``train``, ``transform``,
``restore``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from mrharmony.errors import InputError
from mrharmony.structural.base import ImageMethodConfig, brain_scale
from mrharmony.structural.hail import as_one_sample, channel_stats, conv_class, mask_at
from mrharmony.structural.harmonizer import HarmonizedImage, TrainedImageHarmonizer


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
        self.net = nn.Sequential(conv(1, width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                 conv(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                 conv(2 * width, 2 * width, 3, padding=1), nn.ReLU(inplace=True))
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
        a, b = x[:, : self.na], x[:, self.na:]
        return torch.cat([b - self.f(a, s, valid), a], dim=1)

    def inverse(self, y: torch.Tensor, s: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        nb = y.shape[1] - self.na
        c, a = y[:, :nb], y[:, nb:]
        return torch.cat([a, c + self.f(a, s, valid)], dim=1)


class HierarchyFlow(nn.Module):
    """Levels of (squeeze, flow blocks); then every squeeze undone. Image in, image out."""

    def __init__(self, levels: int = 2, blocks: int = 3, hidden: int = 32, style_dim: int = 32, dims: int = 3):
        super().__init__()
        self.levels = nn.ModuleList()
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


class IHF(nn.Module):
    """The artefact encoder and the flow: ``forward(x, target)`` harmonizes ``x`` to the style
    of ``target``; :meth:`inverse` takes the harmonized image back to ``x``."""

    def __init__(self, dims: int = 3, levels: int = 2, blocks: int = 3, hidden: int = 32, style_dim: int = 32):
        super().__init__()
        self.dims = dims
        self.style = ArtefactEncoder(style_dim, dims=dims)
        self.flow = HierarchyFlow(levels, blocks, hidden, style_dim, dims)

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this (the squeezes halve them)."""
        return self.flow.multiple

    def style_code(self, target: torch.Tensor, mask: torch.Tensor | None = None, *, pool_batch: bool = False):
        return self.style(target, mask, pool_batch=pool_batch)

    def forward(self, x: torch.Tensor, code: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.flow(x, code.expand(x.shape[0], -1), valid)

    def inverse(self, y: torch.Tensor, code: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.flow.inverse(y, code.expand(y.shape[0], -1), valid)


def self_similarity_loss(fo: torch.Tensor, fs: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
    """Anatomy consistency: L1 between the cosine self-similarity matrices of the output's and the
    source's features at the flattened positions ``idx`` (the same positions in both; default
    every position, as the paper's code measures it)."""
    a, b = fo.flatten(2), fs.flatten(2)
    if idx is not None:
        a, b = a[..., idx], b[..., idx]
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return (a.transpose(1, 2) @ a - b.transpose(1, 2) @ b).abs().mean()


# A torchvision-style VGG-19 feature stack: numbers are 3x3 convolutions (each followed by ReLU),
# "M" max pooling. Its modules are numbered as torchvision numbers them ("features.0.weight" ...),
# so a state dict saved from torchvision's vgg19().features loads as it is.
VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
VGG_LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """The first layers of a VGG-19 (up to ``relu4_1``) as a fixed 2D feature encoder: grey
    images (N, 1, H, W) on a 0..1 scale are repeated to three channels and ImageNet-normalized;
    ``forward`` returns the features after relu1_1, relu2_1, relu3_1 and relu4_1."""

    def __init__(self, last: str = "relu4_1"):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG19:
            if len(layers) > VGG_LAYERS[last]:
                break
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers[: VGG_LAYERS[last] + 1])
        self.taps = [i for i in VGG_LAYERS.values() if i <= VGG_LAYERS[last]]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x.expand(-1, 3, *x.shape[2:]) - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h)
        return out


def load_vgg_weights(path: str | os.PathLike) -> VGGFeatures:
    """:class:`VGGFeatures` with the weights of a torchvision-style VGG-19 file (the state dict of
    ``vgg19()`` or of its ``features``; extra keys such as the classifier are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("is missing.", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any unreadable file is the user's input)
        raise InputError(f"could not be read as a PyTorch state dict ({type(exc).__name__}).", path) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError("is not a state dict of a VGG-19.", path)
    net = VGGFeatures()
    own = net.features.state_dict()
    picked = {}
    for k in own:
        for name in (f"features.{k}", k):
            if name in state:
                picked[k] = state[name]
                break
        else:
            raise InputError(f"has no weights for the VGG-19 layer 'features.{k}'.", path)
        if tuple(picked[k].shape) != tuple(own[k].shape):
            raise InputError(f"holds 'features.{k}' of shape {tuple(picked[k].shape)}, not the VGG-19's "
                             f"{tuple(own[k].shape)}.", path)
    net.features.load_state_dict(picked)
    return net.eval()


class IHFTrainee(nn.Module):
    """What an IHF-Harmony run trains: the flow with its artefact encoder (``ihf``) and the fixed
    feature encoder of its losses (``features``: a self-trained autoencoder, trained in phase 1,
    or a VGG-19 from a weights file)."""

    def __init__(self, flow: nn.Module, dims: int = 2, widths=(16, 32, 64), vgg: VGGFeatures | None = None):
        super().__init__()
        from mrharmony.structural.hail import HAIL

        self.ihf = flow
        self.features = vgg if vgg is not None else HAIL(tuple(widths), skips=False, dims=dims)

    @property
    def uses_vgg(self) -> bool:
        return isinstance(self.features, VGGFeatures)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Phase 1: the feature autoencoder's reconstruction."""
        return self.features.reconstruct(x)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x) if self.uses_vgg else self.features.encoder(x)


SIMILARITY_POSITIONS = 256


def _flow_features(net: IHFTrainee, batch: dict) -> tuple:
    """Phase 2's features: the output's (with gradients), the input's and the target's; and the masks."""
    x, mx, t, mt = (batch[k] for k in ("x", "mx", "t", "mt"))
    out = net.ihf(x, net.ihf.style_code(t, mt))
    fo = net.feature_maps(out)
    with torch.no_grad():
        fx, ft = net.feature_maps(x), net.feature_maps(t)
    return fo, fx, ft, mx, mt


def ihf_losses(net: IHFTrainee, batch: dict, *, anatomy_weight: float, artefact_weight: float,
               artefact_levels: int | None = None) -> dict:
    """Phase 2 of the squeeze variant: anatomy consistency (self-similarity of every feature
    level, output against input, at fixed evenly spread positions) and artefact consistency
    (channel means and stds of the ``artefact_levels`` deepest feature levels, all by default,
    output against target, inside the brain masks)."""
    from mrharmony.structural.hail import style_loss

    fo, fx, ft, mx, mt = _flow_features(net, batch)
    anatomy = fo[0].new_zeros(())
    for a, b in zip(fo, fx):
        n = a[0, 0].numel()
        idx = torch.linspace(0, n - 1, min(n, SIMILARITY_POSITIONS), device=a.device).long()
        anatomy = anatomy + self_similarity_loss(a, b, idx)
    k = len(fo) - (artefact_levels or len(fo))
    artefact = style_loss(fo[k:], ft[k:], mx, mt)
    return {"loss": anatomy_weight * anatomy + artefact_weight * artefact, "anatomy": anatomy, "artefact": artefact}


def hierarchy_losses(net: IHFTrainee, batch: dict, *, anatomy_weight: float, artefact_weight: float) -> dict:
    """Phase 2 of the paper's flow, as its code weighs them: anatomy consistency, the dense
    self-similarity of the deepest features (output against input, every position), and artefact
    consistency, the channel means and stds of the shallower levels (output against target,
    inside the brain masks, the 90% of channels whose means differ least)."""
    from mrharmony.structural.hail import style_loss

    fo, fx, ft, mx, mt = _flow_features(net, batch)
    anatomy = self_similarity_loss(fo[-1], fx[-1])
    artefact = style_loss(fo[:-1], ft[:-1], mx, mt, keep=0.9)
    return {"loss": anatomy_weight * anatomy + artefact_weight * artefact, "anatomy": anatomy, "artefact": artefact}


def load_ihf(path: str | os.PathLike) -> tuple[IHF, dict]:
    """A trained IHF-Harmony model: ``(network, meta)``; ``path`` is ``model.pt`` or its run
    directory (:meth:`IHFHarmonizer.load` gives it as a harmonizer)."""
    h = IHFHarmonizer.load(path)
    return h.net, h.meta


def _layout(volume: np.ndarray, dims: int) -> np.ndarray:
    """(X, Y, Z) -> the networks' layout: slices (Z, 1, X, Y) in 2D, (1, 1, X, Y, Z) in 3D."""
    v = np.asarray(volume, np.float32)
    return np.ascontiguousarray(np.moveaxis(v, 2, 0)[:, None] if dims == 2 else v[None, None])


def _volume(a: np.ndarray, dims: int) -> np.ndarray:
    """The inverse of :func:`_layout`."""
    return np.moveaxis(a[:, 0], 0, 2) if dims == 2 else a[0, 0]


def _run_flow(net: IHF, image_n: np.ndarray, code: torch.Tensor, *, inverse: bool,
              margin: np.ndarray | None = None, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The flow (or its inverse) on a normalized volume, slice by slice (2D) or whole (3D):
    ``(result on the volume's grid, margin)``.

    The squeezes need sizes that are multiples of ``2 ** levels``; other sizes are padded at the
    end of each axis, by reflection, and the instance statistics of every normalization are those
    of the image's positions only. The flow's values on the padding (``margin``, flat, float32)
    are part of its output: the inverse needs them back (empty when nothing was padded)."""
    x = _layout(image_n, net.dims)
    shape = x.shape  # the image's, before any padding
    m = net.multiple
    pads = [(-n) % m for n in x.shape[2:]]
    inside = None
    if any(pads):
        inside = np.zeros(x.shape[:2] + tuple(n + p for n, p in zip(x.shape[2:], pads)), bool)
        inside[(slice(None), slice(None), *(slice(0, n) for n in x.shape[2:]))] = True
        if inverse:
            if margin is None or margin.size != (~inside).sum():
                raise ValueError(f"restoring an image of shape {image_n.shape} needs the flow's {(~inside).sum()} "
                                 "values on its padding")
            full = np.zeros(inside.shape, np.float32)
            full[inside] = x.ravel()
            full[~inside] = margin
            x = full
        else:
            x = np.pad(x, [(0, 0), (0, 0)] + [(0, p) for p in pads], mode="reflect")
    fn = net.inverse if inverse else net.forward
    n = x.shape[0] if net.dims == 2 else 1
    step = chunk if net.dims == 2 else 1
    outs = []
    with torch.no_grad():
        for i in range(0, n, step):
            valid = None if inside is None else torch.from_numpy(inside[i:i + step].astype(np.float32))
            outs.append(fn(torch.from_numpy(x[i:i + step]), code, valid).numpy())
    out = np.concatenate(outs)
    if inside is None:
        return _volume(out, net.dims), np.zeros(0, np.float32)
    crop = out[inside].reshape(shape)
    return _volume(crop, net.dims), out[~inside].astype(np.float32)


def margin_size(net: IHF, shape: tuple[int, ...]) -> int:
    """How many values of the flow's output lie on the padding of an image of ``shape``."""
    m = net.multiple
    size = tuple(shape[:2]) if net.dims == 2 else tuple(shape)
    padded = tuple(n + (-n) % m for n in size)
    per = int(np.prod(padded) - np.prod(size))
    return per * (shape[2] if net.dims == 2 else 1)


def target_code(net: IHF, target: np.ndarray, target_mask: np.ndarray) -> torch.Tensor:
    """The style code (1, style_dim) of a target image (normalized), over its whole brain."""
    with torch.no_grad():
        t = torch.from_numpy(_layout(target, net.dims))
        m = torch.from_numpy(_layout(target_mask.astype(np.float32), net.dims))
        return net.style_code(t, m, pool_batch=net.dims == 2)


def harmonize_flow(net: IHF, image: np.ndarray, mask: np.ndarray, target: np.ndarray,
                   target_mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """``image`` with the appearance of ``target`` (float32, the target's intensity scale), and
    the record with which :func:`restore_flow` gives the input back without the target image:
    ``InputScale`` and ``TargetScale`` (the brains' 99th percentiles), ``StyleCode`` and
    ``FlowMargin`` (the flow's values on the padding of a size the squeezes cannot halve; empty
    otherwise). The output is the flow's as it is (not clipped), so that it stays invertible."""
    net = net.eval()
    s_in, s_t = brain_scale(image, mask), brain_scale(target, target_mask)
    code = target_code(net, target / s_t, target_mask)
    out, margin = _run_flow(net, image / s_in, code, inverse=False)
    record = {"InputScale": s_in, "TargetScale": s_t, "StyleCode": [float(v) for v in code[0]],
              "FlowMargin": margin}
    return (out * s_t).astype(np.float32), record


def restore_flow(net: IHF, harmonized: np.ndarray, record: dict) -> np.ndarray:
    """The inverse of :func:`harmonize_flow`: the input image back from its harmonized image and
    the record :func:`harmonize_flow` gave with it."""
    net = net.eval()
    code = torch.tensor([record["StyleCode"]], dtype=torch.float32)
    margin = record.get("FlowMargin")
    back, _ = _run_flow(net, harmonized / record["TargetScale"], code, inverse=True,
                        margin=None if margin is None else np.asarray(margin, np.float32))
    return (back * record["InputScale"]).astype(np.float32)


#: the row name of the squeeze design (``flow: squeeze``), a variant of the paper's flow
SQUEEZE_NAME = "ihf_squeeze"


def build_flow(model: dict) -> nn.Module:
    """The flow of a saved or configured ``model`` section: the paper's hierarchy flow, or the
    squeeze variant (models saved before the ``flow`` key existed are the squeeze design)."""
    from mrharmony.structural.ihf_hierarchy import HierarchyFlowNet

    flow = model.get("flow", "squeeze")
    style_dim = model.get("style_dim") or (64 if flow == "hierarchy" else 32)
    hidden = model.get("hidden") or (64 if flow == "hierarchy" else 32)
    if flow == "hierarchy":
        return HierarchyFlowNet(model["dims"], tuple(model["chunks"]), hidden, style_dim, model["pad"])
    return IHF(model["dims"], model["levels"], model["blocks"], hidden, style_dim)


class IHFHarmonizer(TrainedImageHarmonizer):
    """IHF-Harmony as an :class:`~mrharmony.structural.harmonizer.ImageHarmonizer`: the trained
    flow and style encoder (``net``) applied by :func:`harmonize_flow`. The paper's hierarchy flow
    (``ihf``) is not invertible from its output (see :mod:`mrharmony.structural.ihf_hierarchy`);
    the squeeze variant (``ihf_squeeze``) is: its result's sidecar holds ``InputScale``,
    ``TargetScale`` and ``StyleCode`` (and its arrays the ``FlowMargin`` of a padded size), with
    which :meth:`restore` (:func:`restore_flow`) gives the input back from the prediction alone.

    Examples:
        >>> h = IHFHarmonizer.load("runs/ihf_squeeze")                         # doctest: +SKIP
        >>> result = h.transform(image, target=target_image)                   # doctest: +SKIP
        >>> back = h.restore(result)                                           # doctest: +SKIP
    """

    method = "ihf"
    title = "IHF-Harmony"
    array_keys = ("FlowMargin",)
    description = "image harmonized by IHF-Harmony to the site of the target image"
    train_command = "structural train"

    def __init__(self, net, *, meta: dict | None = None, model_file=None, name: str | None = None):
        squeeze = isinstance(net, IHF)  # the squeeze design; the paper's flow is a HierarchyFlowNet
        super().__init__(net, meta=meta, model_file=model_file, name=name, variant=(
            SQUEEZE_NAME, "IHF-Harmony (squeeze variant)",
            ("image harmonized by IHF-Harmony's squeeze variant (ihf_squeeze, exactly invertible) to the site of the "
             "target image")) if squeeze else None)
        self.invertible = squeeze

    @classmethod
    def build_network(cls, model: dict) -> nn.Module:
        return build_flow(model)

    def _transform(self, image, mask, target, target_mask) -> HarmonizedImage:
        out, record = harmonize_flow(self.net, image, mask, target, target_mask)
        margin = record.pop("FlowMargin")
        return HarmonizedImage(out, record, {"FlowMargin": margin} if margin.size else {})

    def _restore(self, result: HarmonizedImage, target, target_mask) -> np.ndarray:
        record = {**result.sidecar, **result.arrays}
        if "InputScale" not in record:
            raise ValueError("an IHF-Harmony prediction is restored with its InputScale, which this result lacks")
        if "StyleCode" not in record:  # written before the record held the code: the target image gives it
            if target is None:
                raise ValueError("this IHF-Harmony prediction records no style code: restoring it needs the target "
                                 "image it was harmonized to")
            s_t = brain_scale(target, target_mask)
            record["TargetScale"] = s_t
            record["StyleCode"] = [float(v) for v in target_code(self.net.eval(), target / s_t, target_mask)[0]]
        return restore_flow(self.net, result.image, record)


class IHFConfig(ImageMethodConfig):
    method: Literal["ihf"]
    flow: Literal["hierarchy", "squeeze"] = Field(
        default="hierarchy", description="hierarchy: the paper's flow (lifting by subtracted deltas, no squeeze; "
        "mrharmony.structural.ihf_hierarchy); squeeze: a variant of this project, named ihf_squeeze in every row "
        "(space-to-channel squeezes and subtractive coupling, exactly invertible from its output)")
    dims: Literal[2, 3] = 2
    chunks: tuple[int, ...] = Field(default=(10, 4, 4), min_length=1, description="hierarchy: deltas per block")
    pad: int = Field(default=10, ge=0, description="hierarchy: reflection padding around the image")
    levels: int = Field(default=2, ge=1, le=4, description="squeeze: levels of squeezes")
    blocks: int = Field(default=3, ge=1, description="squeeze: coupling blocks per level")
    hidden: int | None = Field(default=None, ge=4, description="hidden channels of the coupling networks "
                               "(default 64 for hierarchy, 32 for squeeze)")
    style_dim: int | None = Field(default=None, ge=2, description="style code (default 64 for hierarchy, as the "
                                  "paper's code, 32 for squeeze)")
    anatomy_weight: float | None = Field(default=None, ge=0, description="default 1 (both flows)")
    artefact_weight: float | None = Field(default=None, ge=0, description="default 2 for hierarchy (the paper's "
                                          "code), 10 for squeeze")
    artefact_levels: int | None = Field(default=1, ge=1, description="squeeze: deepest feature levels of the "
                                        "artefact loss (None: all); hierarchy: every level but the deepest")
    widths: tuple[int, ...] = Field(default=(16, 32, 64), min_length=2,
                                    description="the self-trained feature encoder of the losses")
    vgg_weights: str | None = Field(default=None, description="a torchvision-style VGG-19 file (2D): the losses' "
                                                              "feature encoder instead of a self-trained one")

    @model_validator(mode="after")
    def _vgg_is_2d(self) -> "IHFConfig":
        if self.vgg_weights and self.dims != 2:
            raise ValueError("vgg_weights needs dims: 2 (VGG-19 is a 2D network)")
        if self.flow == "hierarchy" and self.dims == 3:
            raise ValueError("flow: hierarchy is the paper's 2D flow (its 160 lifted channels at full resolution do "
                             "not fit a whole volume); dims: 3 needs flow: squeeze")
        other = {"hierarchy": ("levels", "blocks", "artefact_levels"), "squeeze": ("chunks", "pad")}[self.flow]
        unused = sorted(k for k in other  # a resolved config writes every key at its default: those pass
                        if getattr(self, k) != type(self).model_fields[k].default)
        if unused:
            raise ValueError(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not a setting of flow: "
                             f"{self.flow}")
        return self

    def build(self):
        vgg = load_vgg_weights(self.vgg_weights) if self.vgg_weights else None
        return IHFTrainee(build_flow(self.model_dump()), self.dims, tuple(self.widths), vgg)

    def spatial_dims(self) -> int:
        return self.dims

    def pretrains(self) -> bool:
        return not self.vgg_weights  # a VGG-19 from a file needs no phase 1

    def crop_multiple(self) -> int:
        return 2**self.levels if self.flow == "squeeze" else 1

    def check_crop(self, crop_size: int, source) -> None:
        if crop_size % self.crop_multiple():
            raise InputError(f"sets crop_size {crop_size}, which the flow's {self.levels} squeezes cannot halve; "
                             f"use a multiple of {self.crop_multiple()}.", source)

    def phase2_modules(self, net) -> tuple:
        return net.ihf, net.features

    def transfer_losses(self, net, batch: dict) -> dict:
        anatomy = 1.0 if self.anatomy_weight is None else self.anatomy_weight
        if self.flow == "hierarchy":
            artefact = 2.0 if self.artefact_weight is None else self.artefact_weight
            return hierarchy_losses(net, batch, anatomy_weight=anatomy, artefact_weight=artefact)
        artefact = 10.0 if self.artefact_weight is None else self.artefact_weight
        return ihf_losses(net, batch, anatomy_weight=anatomy, artefact_weight=artefact,
                          artefact_levels=self.artefact_levels)

    def deployed(self, net):
        return net.ihf

    @classmethod
    def harmonizer(cls):
        return IHFHarmonizer
