"""The VGG-19 feature encoder that IHF-Harmony's losses can use instead of a self-trained one
(``vgg_weights``, 2D only): :class:`VGGFeatures` and :func:`load_vgg_weights`, which reads a
torchvision-style weights file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from mrharmony.errors import InputError

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
            raise InputError(
                f"holds 'features.{k}' of shape {tuple(picked[k].shape)}, not the VGG-19's {tuple(own[k].shape)}.", path
            )
    net.features.load_state_dict(picked)
    return net.eval()
